"""Data parallelism on the running workers: a mapper with a collector, and map-reduce.

Each worker holds at most ``WINDOW`` items at a time and gets the next one as it
finishes one, so fast and slow items balance themselves. The function travels once
per worker; items travel one by one.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .. import serialize
from ..errors import ClusterError
from ..protocol import NOTHING
from .tasks import Task

WINDOW = 2
PROGRESS_SECONDS = 0.1
_job_ids = itertools.count(1)


class _Feeder:
    """Keeps every worker busy with items until they run out or one fails."""

    def __init__(self, cluster, items: list, ids: list[int], call: dict, functions: dict[str, list],
                 label: str, progress: Callable[[int, int], None] | None):
        self.cluster = cluster
        self.items = items
        self.ids = ids
        self.call = call
        self.functions = functions
        self.label = label
        self.progress = progress
        self.results: list[Any] = [None] * len(items)
        self.error: BaseException | None = None
        self.used: set[int] = set()
        self._lock = threading.Lock()
        self._next = 0
        self._submitted = 0
        self._done = 0
        self._finished = threading.Event()
        self._last_progress = 0.0

    def run(self) -> None:
        if not self.items:
            return
        for worker in self.ids:
            for _ in range(WINDOW):
                self._submit_next(worker)
        try:
            while not self._finished.wait(0.05):
                pass
        except KeyboardInterrupt:
            with self._lock:
                self._next = len(self.items)
            self.cluster.interrupt(sorted(self.used))
            raise
        self._report_progress(force=True)

    def _submit_next(self, worker: int) -> None:
        with self._lock:
            if self.error is not None or self._next >= len(self.items):
                return
            index = self._next
            self._next += 1
            self._submitted += 1
            first = worker not in self.used
            self.used.add(worker)
        try:
            payload = {"item": serialize.dumps_value(f"item {index}", self.items[index])}
        except serialize.SerializationError as exc:
            self._fail(exc)
            return
        if first:
            payload.update(self.functions)
        task = self.cluster.apply(worker, self.call, payload, f"{self.label}[{index}]")
        task.add_done_callback(lambda t: self._on_done(t, index, worker))

    def _on_done(self, task: Task, index: int, worker: int) -> None:
        if task.error is not None:
            self._fail(task.error)
        else:
            self.results[index] = task._result
        with self._lock:
            self._done += 1
            finished = self._done == self._submitted and (self.error is not None or self._next >= len(self.items))
        self._report_progress()
        if finished:
            self._finished.set()
        else:
            self._submit_next(worker)

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = error
            self._next = len(self.items)
            finished = self._done == self._submitted
        if finished:
            self._finished.set()

    def _report_progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is not None and (force or now - self._last_progress > PROGRESS_SECONDS):
            self._last_progress = now
            self.progress(self._done, len(self.items))


def _targets(cluster, on: Sequence[int] | None) -> list[int]:
    alive = cluster.live_workers(on)
    if not alive:
        raise ClusterError("no live workers to map on")
    return alive


def _progress(progress: Any) -> Callable[[int, int], None] | None:
    if progress is False:
        return None
    if callable(progress):
        return progress
    return _widget_progress()


def _widget_progress() -> Callable[[int, int], None] | None:
    """A progress bar in a notebook; nothing elsewhere."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None or getattr(shell, "kernel", None) is None:
            return None
        import ipywidgets
        from IPython.display import display
    except ImportError:
        return None
    bar = ipywidgets.IntProgress(value=0, min=0, max=1, description="0 / ?")
    display(bar)

    def update(done: int, total: int) -> None:
        bar.max = max(total, 1)
        bar.value = done
        bar.description = f"{done} / {total}"
        bar.bar_style = "success" if done == total else ""

    return update


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def map_items(cluster, fn: Callable, items: Iterable, *, on: Sequence[int] | None = None,
              progress: Any = None) -> list:
    cluster._require_running()
    items = list(items)
    key = f"map-{next(_job_ids)}"
    functions = {key: serialize.dumps_value("function", fn)}
    feeder = _Feeder(cluster, items, _targets(cluster, on), {"fn": key}, functions, f"map {_name(fn)}",
                     _progress(progress))
    feeder.run()
    if feeder.error is not None:
        raise feeder.error
    return feeder.results


NO_INITIAL = object()


def map_reduce(cluster, mapper: Callable, reducer: Callable, items: Iterable, *,
               on: Sequence[int] | None = None, progress: Any = None, initial: Any = NO_INITIAL) -> Any:

    cluster._require_running()
    items = list(items)
    job = next(_job_ids)
    fn_key, reduce_key, acc_key = f"map-{job}", f"reduce-{job}", f"acc-{job}"
    functions = {fn_key: serialize.dumps_value("mapper", mapper), reduce_key: serialize.dumps_value("reducer", reducer)}
    call = {"fn": fn_key, "reduce": reduce_key, "acc": acc_key}
    feeder = _Feeder(cluster, items, _targets(cluster, on), call, functions,
                     f"mapreduce {_name(mapper)}", _progress(progress))
    feeder.run()
    collects = [cluster.apply(w, {"collect": acc_key}, {}, f"collect {_name(reducer)}") for w in sorted(feeder.used)]
    for task in collects:
        task.wait()
    if feeder.error is not None:
        raise feeder.error
    partials = [task.result for task in collects]
    partials = [p for p in partials if p is not NOTHING]
    if initial is not NO_INITIAL:
        return functools.reduce(reducer, partials, initial)
    if not partials:
        raise TypeError("mapreduce() of no items with no initial value")
    return functools.reduce(reducer, partials)
