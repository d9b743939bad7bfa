"""Where a task's output goes: a cell's widget, prefixed text, a queue, or a list.

Sinks are called from the coordinator's reader threads, in the order the worker
produced the output.
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any, TextIO


class LinePrefixer:
    """Puts ``[worker N] `` at the start of each line, across partial writes."""

    def __init__(self) -> None:
        self._at_line_start: dict[tuple[int, str], bool] = {}

    def __call__(self, worker: int, name: str, text: str) -> str:
        prefix = f"[worker {worker}] "
        at_start = self._at_line_start.get((worker, name), True)
        out = []
        for line in text.splitlines(keepends=True):
            out.append((prefix if at_start else "") + line)
            at_start = line.endswith("\n")
        self._at_line_start[(worker, name)] = at_start
        return "".join(out)


class Sink:
    """Output of one submission. Subclasses override what they can show."""

    def stream(self, worker: int, name: str, text: str) -> None:
        pass

    def display(self, worker: int, data: dict, metadata: dict, transient: dict, update: bool) -> None:
        pass

    def clear(self, worker: int, wait: bool) -> None:
        pass

    def error(self, worker: int, ename: str, evalue: str, traceback: list[str]) -> None:
        pass

    def note(self, worker: int, text: str) -> None:
        """A message from ipyworkers itself about this work (a death, a cancellation)."""


class RecordingSink(Sink):
    """Keeps everything, for tests and scripts: ``outputs`` is a list of tuples."""

    def __init__(self) -> None:
        self.outputs: list[tuple] = []
        self._lock = threading.Lock()

    def _add(self, *item: Any) -> None:
        with self._lock:
            self.outputs.append(item)

    def stream(self, worker, name, text):
        self._add("stream", worker, name, text)

    def display(self, worker, data, metadata, transient, update):
        self._add("display", worker, data)

    def error(self, worker, ename, evalue, traceback):
        self._add("error", worker, ename, evalue)

    def note(self, worker, text):
        self._add("note", worker, text)

    def text(self, name: str = "stdout") -> str:
        with self._lock:
            return "".join(o[3] for o in self.outputs if o[0] == "stream" and o[2] == name)


class PrintSink(Sink):
    """Plain text with a ``[worker N]`` prefix: for IPython without widgets, and scripts."""

    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None):
        self._stdout = stdout or sys.stdout
        self._stderr = stderr or sys.stderr
        self._prefix = LinePrefixer()
        self._lock = threading.Lock()

    def _write(self, target: TextIO, text: str) -> None:
        with self._lock:
            target.write(text)
            target.flush()

    def stream(self, worker, name, text):
        target = self._stderr if name == "stderr" else self._stdout
        self._write(target, self._prefix(worker, name, text))

    def display(self, worker, data, metadata, transient, update):
        text = data.get("text/plain", "")
        if text:
            self._write(self._stdout, self._prefix(worker, "display", text.rstrip("\n") + "\n"))

    def error(self, worker, ename, evalue, traceback):
        body = "\n".join(traceback) if traceback else f"{ename}: {evalue}"
        self._write(self._stderr, self._prefix(worker, "error", body.rstrip("\n") + "\n"))

    def note(self, worker, text):
        self._write(self._stderr, self._prefix(worker, "note", text.rstrip("\n") + "\n"))


class WidgetSink(Sink):
    """Writes into an ``ipywidgets.Output`` owned by the cell that started the work.

    Updating the widget's ``outputs`` from another thread is how ipywidgets
    documents background output; consecutive text is merged into one entry.
    """

    def __init__(self, output: Any, prefix_lines: bool = False):
        self.output = output
        self._prefix = LinePrefixer() if prefix_lines else None
        self._lock = threading.Lock()

    def _append(self, entry: dict) -> None:
        with self._lock:
            self.output.outputs = (*self.output.outputs, entry)

    def stream(self, worker, name, text):
        if self._prefix is not None:
            text = self._prefix(worker, name, text)
        with self._lock:
            outputs = self.output.outputs
            last = outputs[-1] if outputs else None
            if last is not None and last.get("output_type") == "stream" and last.get("name") == name:
                merged = {**last, "text": last["text"] + text}
                self.output.outputs = (*outputs[:-1], merged)
            else:
                self.output.outputs = (*outputs, {"output_type": "stream", "name": name, "text": text})

    def display(self, worker, data, metadata, transient, update):
        display_id = (transient or {}).get("display_id")
        entry = {"output_type": "display_data", "data": data, "metadata": metadata}
        if display_id:
            entry["transient"] = {"display_id": display_id}
        with self._lock:
            outputs = list(self.output.outputs)
            if update and display_id:
                outputs = [entry if o.get("transient", {}).get("display_id") == display_id else o for o in outputs]
            else:
                outputs.append(entry)
            self.output.outputs = tuple(outputs)

    def clear(self, worker, wait):
        with self._lock:
            self.output.outputs = ()

    def error(self, worker, ename, evalue, traceback):
        self._append({"output_type": "error", "ename": ename, "evalue": evalue, "traceback": traceback})

    def note(self, worker, text):
        self.stream(worker, "stderr", text.rstrip("\n") + "\n")


class QueueSink(Sink):
    """Hands output to the thread that waits on the work (a blocking cell), which
    shows it with the kernel's own machinery: it then lands in that cell."""

    def __init__(self) -> None:
        self.items: queue.SimpleQueue = queue.SimpleQueue()

    def stream(self, worker, name, text):
        self.items.put(("stream", worker, name, text))

    def display(self, worker, data, metadata, transient, update):
        self.items.put(("display", worker, data, metadata))

    def clear(self, worker, wait):
        self.items.put(("clear", worker, wait))

    def note(self, worker, text):
        self.items.put(("stream", worker, "stderr", text.rstrip("\n") + "\n"))

    def drain(self, prefix_lines: bool = False) -> None:
        """Show what has arrived; call from the kernel's main thread."""
        prefixer = LinePrefixer() if prefix_lines else None
        while True:
            try:
                item = self.items.get_nowait()
            except queue.Empty:
                return
            _show(item, prefixer)


def _show(item: tuple, prefixer: LinePrefixer | None) -> None:
    kind, worker = item[0], item[1]
    if kind == "stream":
        _, _, name, text = item
        if prefixer is not None:
            text = prefixer(worker, name, text)
        target = sys.stderr if name == "stderr" else sys.stdout
        target.write(text)
        target.flush()
    elif kind == "display":
        from IPython.display import publish_display_data

        sys.stdout.flush()
        publish_display_data(item[2], item[3])
    elif kind == "clear":
        from IPython.display import clear_output

        clear_output(wait=item[2])
