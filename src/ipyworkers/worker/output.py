"""What user code prints on a worker: captured and sent to the cell of the running task.

Text is batched by size and time, never sent per line:

* ``write`` only appends to a buffer, unless ``FLUSH_CHARS`` are buffered: then the
  writing thread sends them itself (up to the last newline, so lines are not cut);
* the worker's ``output-flush`` thread sends what is buffered every 50 ms
  (``send_buffered(wait=False)``);
* the runner sends what is buffered at the end of a task and before a display
  (``send_buffered()``), so text and displays keep their order;
* ``flush()`` from user code sends nothing itself: the flush thread does, within 50 ms,
  so ``print(..., flush=True)`` in a loop is batched too.

A record carries at most ``RECORD_CHARS`` characters: a 200 MB string goes out as
bounded records, and the control link's send lock is free between two of them, so a
heartbeat answer from the control thread never waits for the whole string.

Sending happens outside the buffer lock (writers never wait for the socket just to
append) but under ``_sending``, so two threads never send batches out of order. The
flush thread never waits for ``_sending``: when another thread is sending, that thread
takes what is buffered anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from .. import protocol as p

FLUSH_CHARS = 64 * 1024
"""Buffered characters that make the writing thread send at once, without waiting for the flush thread."""
RECORD_CHARS = 1024 * 1024
"""The most characters one ``Output`` record carries."""


class TaskStream:
    """Replaces sys.stdout / sys.stderr: text goes to the running task's cell."""

    def __init__(self, name: str, fallback: Any, emit: Callable[[Any], None],
                 current_task: Callable[[], int | None]):
        self._emit = emit
        self._current_task = current_task
        self.name = name
        self._fallback = fallback
        self._lock = threading.Lock()
        """Guards the buffer; held only to append or take, never while sending."""
        self._sending = threading.Lock()
        """Held while a batch is taken and sent, so batches go out in order."""
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
            if task == self._task or not self._buffer:
                self._task = task
                self._buffer.append(text)
                self._size += len(text)
                if self._size < FLUSH_CHARS:
                    return len(text)
                switched = False
            else:
                switched = True
        if switched:
            # Text of an earlier task is still buffered (written by a thread it left
            # behind): it goes first, to that task's cell.
            self.send_buffered()
            return self.write(text)
        self._send(whole_lines=True)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Called by user code: the flush thread sends the text within 50 ms."""
        if self._current_task() is None:
            self._fallback.flush()

    def send_buffered(self, wait: bool = True) -> None:
        """Send everything buffered now. With ``wait=False`` (the flush thread), return at
        once if another thread is sending: that thread takes the buffer anyway."""
        if self._buffer or self._sending.locked():  # nothing buffered, nothing on its way: nothing to wait for
            self._send(whole_lines=False, wait=wait)

    def _send(self, whole_lines: bool, wait: bool = True) -> None:
        if not self._sending.acquire(blocking=wait):
            return
        try:
            with self._lock:
                task, pieces, size = self._task, self._buffer, self._size
                if not pieces:
                    return
                self._buffer, self._size = [], 0
                if whole_lines:
                    size -= self._keep_partial_line_locked(pieces)
            for text in _records(pieces, size):
                self._emit(p.Output(task, self.name, text))
        finally:
            self._sending.release()

    def _keep_partial_line_locked(self, pieces: list[str]) -> int:
        """Put an unfinished last line back in the buffer: it goes with the next batch
        (or, at the latest, with the flush thread's). A line longer than ``FLUSH_CHARS``
        goes as it is. Returns how many characters went back."""
        seen = 0
        for index in range(len(pieces) - 1, -1, -1):
            piece = pieces[index]
            cut = piece.rfind("\n") + 1
            if cut == 0:
                seen += len(piece)
                if seen > FLUSH_CHARS:
                    return 0
                continue
            if seen + len(piece) - cut > FLUSH_CHARS:
                return 0
            rest = [piece[cut:]] if cut < len(piece) else []
            rest += pieces[index + 1:]
            if not rest:
                return 0
            pieces[index:] = [piece[:cut]]
            self._buffer.extend(rest)
            moved = sum(map(len, rest))
            self._size += moved
            return moved
        return 0

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fallback.fileno()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False


def _records(pieces: list[str], size: int) -> Iterator[str]:
    """The buffered pieces as texts of at most ``RECORD_CHARS``: small pieces joined, a
    huge one sliced, without joining it to the others first."""
    if size <= RECORD_CHARS:
        yield "".join(pieces)
        return
    batch: list[str] = []
    batch_size = 0
    for piece in pieces:
        start = 0
        while start < len(piece):
            take = min(len(piece) - start, RECORD_CHARS - batch_size)
            batch.append(piece[start:start + take] if take < len(piece) else piece)
            batch_size += take
            start += take
            if batch_size == RECORD_CHARS:
                yield "".join(batch)
                batch, batch_size = [], 0
    if batch:
        yield "".join(batch)
