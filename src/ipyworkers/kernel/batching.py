"""How many items a batch carries, and the progress a map shows.

Batch size: ``chunksize`` if given. Otherwise batches start at one item and double
until one comes back; then each aims at ``TARGET_SECONDS`` of worker time (a fold's at
``FOLD_TARGET_SECONDS``), never more than ``MAX_CHUNK`` items nor, when ``len()`` is
known, more than ``multiprocessing.Pool``'s chunk (a quarter of an even share), and
they shrink towards the end of a known input so the workers finish together, down to
``TAIL_SECONDS`` of work. A partial batch waits at most ``sources.LINGER_SECONDS`` for
more input.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

TARGET_SECONDS = 0.05
FOLD_TARGET_SECONDS = 0.08
"""A batch folded on its worker sends nothing back but its end, so it may be longer: each
batch costs its worker a report, and the kernel's handling of that report often runs
on the worker's core (the wake-up of a reader moves it there), ~0.1-0.3 ms a batch.
Less than ``jobs.LONG_BATCH_SECONDS``, so the next batch waits queued behind it."""
TAIL_SECONDS = 0.005
"""Towards the end of a known input, batches shrink so the workers finish together,
but not below this much work: a shorter batch costs more than it evens out."""
MAX_CHUNK = 8192
PROGRESS_SECONDS = 0.1


class Chunker:
    """Sizes of a job's batches: doubling until one comes back, then ``target`` seconds of
    work each, capped by Pool's chunk, shrinking towards the end of a known input."""

    def __init__(self, fixed: int | None, total: int | None, workers: int, target: float = TARGET_SECONDS):
        self.fixed = fixed
        self.total = total
        self.workers = workers
        self.target = target
        self.cap = MAX_CHUNK if total is None else max(1, min(MAX_CHUNK, math.ceil(total / (4 * workers))))
        self._probe = 1
        self.per_item: float | None = None
        self.last = 1

    def next(self, sent: int) -> int:
        if self.fixed:
            return self.fixed
        per_item = self.per_item
        if per_item is None:
            size, self._probe = self._probe, min(self.cap, self._probe * 2)
        else:
            size = int(self.target / max(per_item, 1e-7))
        size = max(1, min(size, self.cap))
        if self.total is not None:
            floor = 1 if per_item is None else int(TAIL_SECONDS / max(per_item, 1e-7))
            size = min(size, max(1, floor, math.ceil((self.total - sent) / (2 * self.workers))))
        self.last = size
        return size

    def seconds(self) -> float | None:
        """How long the last batch should run, once known."""
        return None if self.per_item is None else self.per_item * self.last

    def observe(self, count: int, seconds: float) -> None:
        per = max(seconds, 0.0) / max(count, 1)
        self.per_item = per if self.per_item is None else 0.5 * (self.per_item + per)


class Progress:
    """``progress``: None for a bar in a notebook, False for none, or ``callable(done, total)``
    (total None while the input's length is unknown)."""

    def __init__(self, spec: Any, total: int | None):
        self.fn = None if spec is False else spec if callable(spec) else _widget_progress()
        self._last = 0.0
        self._lock = threading.Lock()
        self.update(0, total, force=True)

    def update(self, done: int, total: int | None, force: bool = False) -> None:
        if self.fn is None:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last < PROGRESS_SECONDS:
                return
            self._last = now
            self.fn(done, total)


def _widget_progress() -> Callable[[int, int | None], None] | None:
    """A progress bar in a notebook; nothing elsewhere."""
    if "IPython" not in sys.modules:  # not in a notebook; and importing IPython takes a while
        return None
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

    def update(done: int, total: int | None) -> None:
        bar.max = max(total if total is not None else done + 1, 1)
        bar.value = done
        bar.description = f"{done} / {'?' if total is None else total}"
        bar.bar_style = "success" if done == total else ""

    return update


