"""Function calls on the workers, one task each: ``submit`` and ``as_completed``; and
what every call carries, maps' batches included.

A function travels once per worker, keyed by a digest of its pickle (see
``worker/calls.py``); a call's errors reach the caller as exceptions, not as text in the
cell (``QuietSink``).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import ClusterError, SerializationError
from ..serialize import dumps_value
from .records import Submission
from .shipping import ship
from .sinks import Sink
from .tasks import Task

NONE: frozenset[str] = frozenset()


def name_of(fn: Any) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def check_callable(fn: Any, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"{what} must be callable, not {type(fn).__name__} {fn!r:.60}")


class QuietSink(Sink):
    """A function call's errors reach the caller as exceptions, and cancelled batches are
    the caller's own doing: neither is printed again in the cell. Output still is."""

    def __init__(self, inner: Sink):
        self._inner = inner

    def stream(self, worker, name, text):
        self._inner.stream(worker, name, text)

    def display(self, worker, data, metadata, transient, update):
        self._inner.display(worker, data, metadata, transient, update)

    def clear(self, worker, wait):
        self._inner.clear(worker, wait)

    def error(self, worker, ename, evalue, traceback):
        pass

    def note(self, worker, text):
        if "cancelled" not in text:
            self._inner.note(worker, text)


def least_loaded(cluster, on: int | Sequence[int] | None) -> int:
    """The live worker among ``on`` with the fewest open tasks (the lowest id on a tie)."""
    ids = cluster.live_workers([on] if isinstance(on, int) else on)
    if not ids:
        raise ClusterError("no live workers to run on")
    scheduler = cluster._scheduler
    with scheduler.lock:
        return min(ids, key=lambda w: (scheduler.progress[w].open if w in scheduler.progress else 1 << 30, w))


def submit(cluster, fn: Callable, args: tuple, kwargs: dict, on: int | Sequence[int] | None) -> Task:
    cluster._require_running()
    check_callable(fn, "the function given to submit()")
    worker = least_loaded(cluster, on)
    name = name_of(fn)
    key, parts = ship(fn, "function")
    try:
        arguments = dumps_value("arguments", (args, kwargs or None))
    except SerializationError as exc:
        raise SerializationError(f"cannot send the arguments of {name}(): {exc}") from None
    sub = Submission(worker, None, NONE, NONE, f"{name}()", QuietSink(cluster._default_sink()),
                     call={"fn": key, "name": name, "args": 1}, payload={key: parts, "args": arguments},
                     note=f"{name}(...)")
    return cluster._submit([sub])[0]


def as_completed(tasks: Iterable[Task], timeout: float | None = None):
    """Yield the tasks as they end (done, failed or cancelled), first ended first."""
    tasks = list(tasks)
    ended: queue.SimpleQueue = queue.SimpleQueue()
    for task in tasks:
        task.add_done_callback(ended.put)
    deadline = None if timeout is None else time.monotonic() + timeout
    for _ in range(len(tasks)):
        while True:
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                raise TimeoutError(f"{sum(not t.done() for t in tasks)} of {len(tasks)} tasks not done "
                                   f"after {timeout} s")
            try:
                yield ended.get(timeout=left)
                break
            except queue.Empty:
                continue
