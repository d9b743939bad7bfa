"""A real ipykernel driven through jupyter_client, as a notebook frontend drives it.

Keeps every iopub message. Follows display outputs by display id as JupyterLab does:
a ``display_data`` with a display id belongs to the cell whose request it answers (its
parent header), even when it comes after that cell finished, and an
``update_display_data`` replaces that output wherever it is. So a test reads what a
non-blocking cell shows (``cell_outputs``, ``cell_text``, ``wait_for_cell``). Widgets
(the dashboard) are followed through their comm messages.
"""

from __future__ import annotations

import queue
import re
import time
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.manager import KernelManager

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STATE_PREFIX = "ipyworkers-state-"
"""The display ids of a cell's state line start with this."""


def plain(text: str) -> str:
    return ANSI.sub("", text)


@dataclass
class CellResult:
    msg_id: str
    reply: dict
    outputs: list[dict] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.reply["content"]["status"]

    @property
    def stdout(self) -> str:
        return "".join(o["text"] for o in self.outputs if o.get("name") == "stdout")

    @property
    def stderr(self) -> str:
        return "".join(o["text"] for o in self.outputs if o.get("name") == "stderr")

    @property
    def error(self) -> dict | None:
        content = self.reply["content"]
        return content if content["status"] == "error" else None

    @property
    def error_text(self) -> str:
        error = self.error
        return plain("\n".join(error["traceback"]) + f"\n{error['ename']}: {error['evalue']}") if error else ""


class KernelSession:
    def __init__(self, kernel_name: str = "python3", extra_env: dict | None = None, cwd: str | None = None):
        self.km = KernelManager(kernel_name=kernel_name)
        env = dict(extra_env or {})
        self.km.start_kernel(env={**_os_environ(), **env}, **({"cwd": cwd} if cwd else {}))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.messages: list[dict] = []
        self.widget_state: dict[str, dict] = {}
        self.displays: dict[str, dict] = {}
        """The latest {"data", "metadata"} of each display id."""
        self._cell_displays: dict[str, list[str]] = {}
        self._by_parent: dict[str, list[dict]] = {}

    @property
    def pid(self) -> int:
        return self.km.provisioner.process.pid

    def _pump(self, timeout: float) -> bool:
        try:
            msg = self.kc.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return False
        self.messages.append(msg)
        parent = msg.get("parent_header", {}).get("msg_id")
        self._by_parent.setdefault(parent, []).append(msg)
        content = msg["content"]
        display_id = (content.get("transient") or {}).get("display_id")
        if display_id and msg["msg_type"] == "display_data":
            if display_id not in self.displays:
                self._cell_displays.setdefault(parent, []).append(display_id)
            self.displays[display_id] = {"data": content["data"], "metadata": content["metadata"]}
        elif display_id and msg["msg_type"] == "update_display_data" and display_id in self.displays:
            self.displays[display_id] = {"data": content["data"], "metadata": content["metadata"]}
        if msg["msg_type"] in ("comm_open", "comm_msg"):
            state = content.get("data", {}).get("state", {})
            self.widget_state.setdefault(content["comm_id"], {}).update(state)
        return True

    def pump_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._pump(max(0.0, min(0.05, deadline - time.monotonic())))

    def execute(self, code: str, timeout: float = 60) -> CellResult:
        msg_id = self.kc.execute(code)
        deadline = time.monotonic() + timeout
        reply = None
        while reply is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"cell did not finish within {timeout} s:\n{code}")
            try:
                reply = self.kc.get_shell_msg(timeout=min(0.1, remaining))
                if reply["parent_header"].get("msg_id") != msg_id:
                    reply = None
            except queue.Empty:
                pass
            while self._pump(0):
                pass
        self._drain_until_idle(msg_id, deadline)
        outputs = [
            {"msg_type": m["msg_type"], **m["content"]}
            for m in self._by_parent.get(msg_id, [])
            if m["msg_type"] in ("stream", "display_data", "execute_result", "error")
        ]
        return CellResult(msg_id, reply, outputs)

    def _drain_until_idle(self, msg_id: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            msgs = self._by_parent.get(msg_id, [])
            if any(m["msg_type"] == "status" and m["content"]["execution_state"] == "idle" for m in msgs):
                return
            self._pump(0.05)

    def cell_display_ids(self, cell: CellResult) -> list[str]:
        """The display ids of the outputs the cell has, in the order they appeared, but
        its state line (``cell_state``)."""
        return [d for d in self._cell_displays.get(cell.msg_id, []) if not d.startswith(STATE_PREFIX)]

    def cell_state(self, cell: CellResult) -> str:
        """The state line(s) at the top of a non-blocking cell's output, as shown now."""
        ids = [d for d in self._cell_displays.get(cell.msg_id, []) if d.startswith(STATE_PREFIX)]
        return "\n".join(self.displays[d]["data"].get("text/plain", "") for d in ids)

    def wait_for_state(self, cell: CellResult, predicate, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.cell_state(cell)
            if predicate(state):
                return state
            self._pump(0.05)
        raise TimeoutError(f"cell {cell.msg_id}'s state never matched; it shows: {self.cell_state(cell)!r}")

    def cell_outputs(self, cell: CellResult) -> list[dict]:
        """The latest {"data", "metadata"} of each display output of the cell."""
        return [self.displays[d] for d in self.cell_display_ids(cell)]

    def cell_text(self, cell: CellResult) -> str:
        """The text the cell's display outputs show now (ANSI removed), one after another."""
        parts = []
        for output in self.cell_outputs(cell):
            text = plain(output["data"].get("text/plain", ""))
            parts.append(text + ("\n" if text and not text.endswith("\n") else ""))
        return "".join(parts)

    def wait_for_cell(self, cell: CellResult, predicate, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.cell_text(cell)
            if predicate(text):
                return text
            self._pump(0.05)
        raise TimeoutError(f"cell {cell.msg_id} never matched; it shows:\n{self.cell_text(cell)}")

    def html_widgets_containing(self, marker: str) -> list[str]:
        return [v["value"] for v in self.widget_state.values()
                if isinstance(v.get("value"), str) and marker in v["value"]]

    def widget_children(self, dom_class: str) -> list[tuple[str, dict]]:
        """(comm id, state) of the children of the widget with CSS class ``dom_class`` (the
        latest such widget), as the frontend would draw them now."""
        boxes = [s for s in self.widget_state.values() if dom_class in s.get("_dom_classes", ())]
        if not boxes:
            return []
        ids = [ref.removeprefix("IPY_MODEL_") for ref in boxes[-1].get("children", [])]
        return [(i, self.widget_state.get(i, {})) for i in ids]

    def click(self, comm_id: str) -> None:
        """What a frontend sends when a user clicks a ``Button``."""
        content = {"comm_id": comm_id, "data": {"method": "custom", "content": {"event": "click"}}}
        self.kc.shell_channel.send(self.kc.session.msg("comm_msg", content))

    def wait_for(self, predicate, timeout: float = 30, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not reached within {timeout} s")
            self._pump(0.05)

    def interrupt(self) -> None:
        self.km.interrupt_kernel()

    def shutdown(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            if self.km.has_kernel:
                self.km.shutdown_kernel(now=False)
            self._close_context()

    def kill(self) -> None:
        """SIGKILL the kernel, as the OOM killer would: it gets no chance to clean up."""
        import os
        import signal

        self.kc.stop_channels()
        os.kill(self.pid, signal.SIGKILL)
        self.km.provisioner.process.wait()
        self.km.cleanup_resources()
        self._close_context()

    def _close_context(self) -> None:
        import zmq

        if self.km.context is not zmq.Context.instance():
            self.km.context.destroy(linger=0)


def _os_environ() -> dict[str, Any]:
    import os

    return dict(os.environ)
