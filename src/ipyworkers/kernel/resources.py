"""CPU and memory of the worker processes on this machine, for ``%workers status`` and
the dashboard. Sampled by the supervisor's monitor thread (never a reader thread), at
most once every ``SAMPLE_SECONDS``; a worker on another host shows none.

``warning`` names a worker whose resident memory nears the machine's: more than
``RSS_SHARE`` of the total, or the machine's available memory under ``AVAILABLE_SHARE``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

try:
    import psutil
except ImportError:  # a runtime dependency; without it, no figures
    psutil = None

SAMPLE_SECONDS = 1.0
RSS_SHARE = 0.8
AVAILABLE_SHARE = 0.1


class Sampler:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: dict[int, Any] = {}
        self._figures: dict[int, tuple[float, int]] = {}
        self._memory: tuple[int, int] | None = None
        self._last = 0.0

    def maybe_sample(self, pids: dict[int, int]) -> None:
        """``pids``: {worker id: pid} of the local workers. Does nothing within
        ``SAMPLE_SECONDS`` of the last sample."""
        now = time.monotonic()
        if psutil is None or now - self._last < SAMPLE_SECONDS:
            return
        self._last = now
        figures: dict[int, tuple[float, int]] = {}
        procs: dict[int, Any] = {}
        for wid, pid in pids.items():
            proc = self._procs.get(wid)
            try:
                if proc is None or proc.pid != pid:
                    proc = psutil.Process(pid)
                    proc.cpu_percent(None)  # the first call only starts the count
                    cpu = 0.0
                else:
                    cpu = proc.cpu_percent(None)
                figures[wid] = (cpu, proc.memory_info().rss)
                procs[wid] = proc
            except (psutil.Error, OSError):
                continue
        try:
            memory = psutil.virtual_memory()
            total_available = (memory.total, memory.available)
        except (psutil.Error, OSError):
            total_available = None
        with self._lock:
            self._procs, self._figures, self._memory = procs, figures, total_available

    def figures(self, wid: int) -> dict[str, Any]:
        """``{"cpu": percent, "rss": bytes}`` of a worker (None for each if unknown), and
        ``memory_warning`` if it nears the machine's memory."""
        with self._lock:
            cpu, rss = self._figures.get(wid, (None, None))
            memory = self._memory
        return {"cpu": cpu, "rss": rss, "memory_warning": warning(wid, rss, memory)}


def warning(wid: int, rss: int | None, memory: tuple[int, int] | None) -> str | None:
    if rss is None or memory is None:
        return None
    total, available = memory
    if rss > RSS_SHARE * total or (available < AVAILABLE_SHARE * total and rss > 0.25 * total):
        return (f"worker {wid} uses {rss / 2**30:.1f} GiB, {100 * rss / total:.0f}% of this machine's memory "
                f"({available / 2**30:.1f} GiB available): it may be killed for lack of memory")
    return None
