"""Which news of a worker's idleness the other workers get, and when (pure; the
scheduler's lock guards it).

Workers hear when another one runs out of work or gets some: a stream that waits on a
worker with nothing to run would otherwise wait forever. Only an idle worker whose last
task failed ends a wait, so that news goes at once; the news that a worker is idle after
work that went well goes once it has stayed idle ``IDLE_NEWS_SECONDS``, so a worker
between two tasks in a row costs every other worker no message. A new worker takes every
other one for idle, so a worker's first task is always told.
"""

from __future__ import annotations

IDLE_NEWS_SECONDS = 0.05
"""How long a worker whose last task went well stays idle before the others hear of it."""


class PeerNews:
    def __init__(self) -> None:
        self._untold: dict[int, float] = {}
        """Workers idle after work that went well, and since when, the others not yet told."""
        self._told_idle: set[int] = set()

    def joined(self, worker: int) -> None:
        self._told_idle.add(worker)

    def left(self, worker: int) -> None:
        self._untold.pop(worker, None)
        self._told_idle.discard(worker)

    def busy(self, worker: int) -> bool:
        """``worker`` got work: whether to tell the others (they were told it is idle)."""
        if self._untold.pop(worker, None) is not None or worker not in self._told_idle:
            return False
        self._told_idle.discard(worker)
        return True

    def idle(self, worker: int, failed: bool, now: float) -> bool:
        """``worker`` has nothing left to run: whether to tell the others now."""
        if failed:
            self.told(worker)
            return True
        self._untold[worker] = now
        return False

    def due(self, now: float) -> list[int]:
        """Workers idle long enough that the others should hear of it (call ``told``)."""
        return [w for w, since in self._untold.items() if now - since >= IDLE_NEWS_SECONDS]

    def told(self, worker: int) -> None:
        self._untold.pop(worker, None)
        self._told_idle.add(worker)

    def forget_untold(self, worker: int) -> None:
        self._untold.pop(worker, None)
