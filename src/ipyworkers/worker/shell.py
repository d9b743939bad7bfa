"""The worker's IPython shell: cells run with IPython semantics, and whatever they show
(displays, the last expression's value, tracebacks) goes to the task's cell."""

from __future__ import annotations

import sys
from types import CodeType, TracebackType
from typing import Any


def make_shell(runner: Any, namespace: dict[str, Any], colors: str) -> Any:
    """An IPython shell whose displays, results and tracebacks go to the coordinator."""
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets import Instance
    from traitlets.config import Config

    from ..transforms import PlainCellTransformer

    class ForwardingDisplayPublisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
            runner.publish_display(data, metadata or {}, transient or {}, update)

        def clear_output(self, wait=False):
            runner.clear_output(wait)

    class ForwardingDisplayHook(DisplayHook):
        def write_output_prompt(self):
            pass

        def compute_format_data(self, result):
            if runner.returns_result:
                return {}, {}
            return super().compute_format_data(result)

        def write_format_data(self, format_dict, md_dict=None):
            runner.publish_display(format_dict, md_dict or {}, {"execute_result": True}, False)

        def finish_displayhook(self):
            self._is_active = False

    class WorkerShell(InteractiveShell):
        displayhook_class = ForwardingDisplayHook
        display_pub_class = ForwardingDisplayPublisher
        input_transformer_manager = Instance(PlainCellTransformer, ())

        def _showtraceback(self, etype, evalue, stb):
            runner.note_error(etype, evalue, stb)

        def showtraceback(self, exc_tuple=None, *args, **kwargs):
            etype, evalue, tb = exc_tuple or sys.exc_info()
            if etype is KeyboardInterrupt:
                _drop_innermost(tb, runner.on_sigint.__code__)
            return super().showtraceback((etype, evalue, tb), *args, **kwargs)

        def enable_gui(self, gui=None):
            pass

        def should_run_async(self, raw_cell, *, transformed_cell=None, preprocessing_exc_tuple=None):
            """Top-level ``await``, ``async for`` and ``async with`` all contain one of these
            words; any other cell skips IPython's extra compile of it."""
            if "await" not in raw_cell and "async" not in raw_cell:
                return False
            return super().should_run_async(raw_cell, transformed_cell=transformed_cell,
                                            preprocessing_exc_tuple=preprocessing_exc_tuple)

    config = Config()
    config.HistoryManager.enabled = False
    return WorkerShell.instance(config=config, user_ns=namespace, colors=colors)


def _drop_innermost(tb: TracebackType | None, code: CodeType) -> None:
    """An interrupt is raised in the runner's signal handler: the user's traceback ends
    in the user's code, not in that frame."""
    while tb is not None and tb.tb_next is not None:
        if tb.tb_next.tb_next is None and tb.tb_next.tb_frame.f_code is code:
            tb.tb_next = None
            return
        tb = tb.tb_next
