"""Where a task's output goes: the interface, prefixed text, and a recording.

Sinks are called from the coordinator's reader threads, in the order the worker
produced the output.
"""

from __future__ import annotations

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


