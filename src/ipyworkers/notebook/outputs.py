"""Output sinks that need a notebook: a cell's widget, or the waiting cell itself."""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any

from ..kernel.sinks import LinePrefixer, Sink


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
