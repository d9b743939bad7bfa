"""Where a map's items come from: a sized input, sliced as it goes, or any other iterable,
read by a thread of its own into a small buffer, so memory stays bounded however long the
input."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any

from ..errors import ClusterError
from .batching import MAX_CHUNK

LINGER_SECONDS = 0.005
INPUT_BUFFER = 2 * MAX_CHUNK


class SizedSource:
    """A sized input (list, range, array...): sliced as it goes, by the feeder itself."""

    def __init__(self, iterable: Iterable, total: int):
        self._it = iter(iterable)
        self.total = total

    def take(self, n: int) -> tuple[list, bool]:
        items = list(islice(self._it, n))
        return items, len(items) < n

    def stop(self) -> None:
        pass


class QueueSource:
    """Items put by ``add_task`` (a processor) or by a thread reading an iterable; ``put``
    waits while ``limit`` items are buffered, so a fast producer cannot fill memory."""

    total = None

    def __init__(self, limit: int = INPUT_BUFFER):
        self._buf: deque = deque()
        self._cond = threading.Condition()
        self._limit = limit
        self._taker_waiting = False
        self.closed = False
        self.stopped = False
        self.error: BaseException | None = None

    def put(self, item: Any) -> bool:
        """False once the job stopped (the item is dropped)."""
        with self._cond:
            while len(self._buf) >= self._limit and not self.stopped:
                self._cond.wait()
            if self.stopped:
                return False
            if self.closed:
                raise ClusterError("no more tasks can be added: the input was closed")
            self._buf.append(item)
            if self._taker_waiting:
                self._cond.notify_all()
        return True

    def close(self, error: BaseException | None = None) -> None:
        with self._cond:
            self.closed = True
            self.error = self.error or error
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            self._cond.notify_all()

    def take(self, n: int) -> tuple[list, bool]:
        """Up to ``n`` items: waits for a first one, then at most ``LINGER_SECONDS`` for the rest."""
        with self._cond:
            self._taker_waiting = True
            try:
                while not self._buf and not self.closed and not self.stopped:
                    self._cond.wait()
                deadline = time.monotonic() + LINGER_SECONDS
                while len(self._buf) < n and not self.closed and not self.stopped:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            finally:
                self._taker_waiting = False
            buf = self._buf
            items = [buf.popleft() for _ in range(min(n, len(buf)))]
            self._cond.notify_all()
            if not buf and self.error is not None:
                if items:
                    return items, False
                raise self.error
            return items, self.stopped or (self.closed and not buf)


class IterSource(QueueSource):
    """Any other iterable, read by a thread of its own: a slow generator holds back
    nobody, and a partial batch still goes out after ``LINGER_SECONDS``."""

    def __init__(self, iterable: Iterable, job_id: int):
        super().__init__()
        self._iterable = iterable
        threading.Thread(target=self._read, name=f"ipyworkers-map-input-{job_id}", daemon=True).start()

    def _read(self) -> None:
        error = None
        try:
            for item in self._iterable:
                if not self.put(item):
                    break
        except BaseException as exc:  # the input's own error reaches the caller as it is
            error = exc
        finally:
            self._iterable = None
            self.close(error)


def _strict_zip(iterables: list[Iterable]):
    try:
        yield from zip(*iterables, strict=True)
    except ValueError as exc:
        raise ValueError(f"the iterables have different lengths ({exc})") from None


def make_source(iterables: Sequence[Iterable], what: str, job_id: int) -> tuple[Any, int]:
    """(source, star): star 0 for one iterable (``fn(x)``), 1 for several (``fn(*xs)``)."""
    if not iterables:
        raise TypeError(f"{what} needs at least one iterable")
    for k, iterable in enumerate(iterables, 1):
        try:
            iter(iterable)
        except TypeError:
            raise TypeError(f"{what}: iterable {k} is not iterable ({type(iterable).__name__})") from None
    sized = all(hasattr(i, "__len__") and not hasattr(i, "__next__") for i in iterables)
    if len(iterables) == 1:
        data, star = iterables[0], 0
    else:
        if sized:
            lengths = [len(i) for i in iterables]
            if len(set(lengths)) > 1:
                raise ValueError(f"{what}: the iterables have different lengths {lengths}")
        data, star = _strict_zip(list(iterables)), 1
    if sized:
        return SizedSource(data, len(iterables[0])), star
    return IterSource(data, job_id), star


