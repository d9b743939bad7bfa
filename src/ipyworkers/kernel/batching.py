"""How many items a batch carries, and the progress a map shows."""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

TARGET_SECONDS = 0.05
MAX_CHUNK = 8192
PROGRESS_SECONDS = 0.1


class Chunker:
    def __init__(self, fixed: int | None, total: int | None, workers: int):
        self.fixed = fixed
        self.total = total
        self.workers = workers
        self.cap = MAX_CHUNK if total is None else max(1, min(MAX_CHUNK, math.ceil(total / (4 * workers))))
        self._probe = 1
        self.per_item: float | None = None
        self.last = 1

    def next(self, sent: int) -> int:
        if self.fixed:
            return self.fixed
        if self.per_item is None:
            size, self._probe = self._probe, min(self.cap, self._probe * 2)
        else:
            size = int(TARGET_SECONDS / max(self.per_item, 1e-7))
        size = max(1, min(size, self.cap))
        if self.total is not None:
            size = min(size, max(1, math.ceil((self.total - sent) / (2 * self.workers))))
        self.last = size
        return size

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


