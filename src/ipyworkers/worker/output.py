"""What user code prints on a worker: captured and sent to the cell of the running task."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .. import protocol as p

STREAM_CHUNK = 8192


class TaskStream:
    """Replaces sys.stdout / sys.stderr: text goes to the running task's cell."""

    def __init__(self, name: str, fallback: Any, emit: Callable[[Any], None],
                 current_task: Callable[[], int | None]):
        self._emit = emit
        self._current_task = current_task
        self.name = name
        self._fallback = fallback
        self._lock = threading.Lock()
        self._buffer: list[str] = []
        self._size = 0
        self._task: int | None = None
        self.encoding = "utf-8"
        self.errors = "replace"

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        task = self._current_task()
        if task is None:
            self._fallback.write(text)
            self._fallback.flush()
            return len(text)
        with self._lock:
            previous = self._take_locked() if self._task != task else None
            self._task = task
            self._buffer.append(text)
            self._size += len(text)
            urgent = "\n" in text or self._size > STREAM_CHUNK
            out = self._take_locked() if urgent else None
        if previous is not None:
            self._emit(previous)
        if out is not None:
            self._emit(out)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self._lock:
            out = self._take_locked()
        if out is not None:
            self._emit(out)

    def _take_locked(self) -> p.Output | None:
        if not self._buffer:
            return None
        text = "".join(self._buffer)
        self._buffer.clear()
        self._size = 0
        return p.Output(self._task, self.name, text)

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fallback.fileno()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False
