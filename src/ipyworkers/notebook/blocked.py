"""A ``--block`` cell's output: written by the thread that waits, so it lands in that cell
as ordinary stream output, batched (one message per stream per ``DRAIN_SECONDS``)."""

from __future__ import annotations

import queue
import sys
import time

from ..kernel.sinks import Sink
from .segments import Prefixer

DRAIN_SECONDS = 0.1
"""How often a ``--block`` cell writes what arrived: one stream message per stream per drain."""


class QueueSink(Sink):
    """Hands output to the thread that waits on the work (a blocking cell), which
    shows it with the kernel's own machinery: it then lands in that cell. The waiting
    thread drains it every ``DRAIN_SECONDS``, one write and flush (one stream message)
    for each run of text on one stream."""

    def __init__(self) -> None:
        self.items: queue.SimpleQueue = queue.SimpleQueue()
        self._prefixer: Prefixer | None = None
        self._drained = 0.0

    def stream(self, worker, name, text):
        self.items.put(("stream", worker, name, text))

    def display(self, worker, data, metadata, transient, update):
        self.items.put(("display", worker, data, metadata))

    def clear(self, worker, wait):
        self.items.put(("clear", worker, wait))

    def note(self, worker, text):
        self.items.put(("stream", worker, "stderr", text.rstrip("\n") + "\n"))

    def drain(self, prefix_lines: bool = False, final: bool = False) -> None:
        """Show what has arrived; call from the kernel's main thread. Unless ``final``,
        does nothing if the last drain was less than ``DRAIN_SECONDS`` ago."""
        now = time.monotonic()
        if not final and now - self._drained < DRAIN_SECONDS:
            return
        self._drained = now
        if prefix_lines and self._prefixer is None:
            self._prefixer = Prefixer()
        prefixer = self._prefixer if prefix_lines else None
        run_name, run = None, []
        while True:
            try:
                item = self.items.get_nowait()
            except queue.Empty:
                break
            if item[0] == "stream":
                _, worker, name, text = item
                if prefixer is not None:
                    text = prefixer(worker, name, text)
                if name != run_name:
                    _write(run_name, run)
                    run_name, run = name, []
                run.append(text)
                continue
            _write(run_name, run)
            run_name, run = None, []
            _show(item)
        _write(run_name, run)


def _write(name: str | None, texts: list[str]) -> None:
    if not texts:
        return
    target = sys.stderr if name == "stderr" else sys.stdout
    target.write("".join(texts))
    target.flush()


def _show(item: tuple) -> None:
    kind = item[0]
    if kind == "display":
        from IPython.display import publish_display_data

        sys.stdout.flush()
        publish_display_data(item[2], item[3])
    elif kind == "clear":
        from IPython.display import clear_output

        clear_output(wait=item[2])
