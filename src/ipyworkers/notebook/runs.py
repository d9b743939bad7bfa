"""Which stretch of time the timeline shows, and what it says about that stretch. Pure.

A notebook session is mostly idle: a few seconds of work, minutes of reading and typing,
more work. Drawn to scale, a whole session makes the latest run a sliver, and totals over
it (wall time, busy %, speed-up) measure the typing. So the timeline shows a *run*: the
latest burst of work, found by cutting the session at long idle gaps (``latest_burst``),
and sums up only the window it shows (``window_summary``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import accumulate
from operator import itemgetter, sub
from typing import TYPE_CHECKING

from ..plan.dataflow import KERNEL

if TYPE_CHECKING:
    from .timeline import TimelineModel

MIN_IDLE_GAP = 10.0
"""Seconds with nothing queued, running or moving that always end a burst: longer than
the pauses between cells a notebook runs on its own, shorter than reading and typing."""
IDLE_FRACTION = 0.5
"""A gap also ends a burst only if it is longer than this fraction of the burst after it,
so a pause in the middle of a ten-minute run does not cut the run in two."""


def latest_burst(intervals: Iterable[tuple[float, float]], min_gap: float = MIN_IDLE_GAP,
                 fraction: float = IDLE_FRACTION) -> tuple[float, float] | None:
    """The latest burst of work among ``(start, end)`` intervals of activity, or None.

    Walking back from the latest activity, the burst takes in earlier work unless there is
    an idle gap (no interval covers it) longer than ``max(min_gap, fraction * the length of
    the burst after the gap)``. Only gaps longer than ``min_gap`` can end a burst, and those
    are found by sorting and a running maximum of the ends, which keeps this cheap at
    15,000 intervals a redraw (tiny tasks make as many tiny gaps).
    """
    ordered = sorted(intervals, key=itemgetter(0))
    if not ordered:
        return None
    starts = list(map(itemgetter(0), ordered))
    reach = list(accumulate(map(itemgetter(1), ordered), max))
    end = reach[-1]
    long_gaps = [i for i, gap in enumerate(map(sub, starts[1:], reach), 1) if gap > min_gap]
    for i in reversed(long_gaps):
        if starts[i] - reach[i - 1] > fraction * (end - starts[i]):
            return starts[i], end
    return starts[0], end


def activity(model: TimelineModel, now: float) -> list[tuple[float, float]]:
    """When something was going on: each task from queued to ended (to ``now`` if it has
    not), each transfer from start to end."""
    tasks = [(bar.queued, now if bar.end is None else bar.end) for bar in model.bars.values()]
    return tasks + [(arrow.start, arrow.end) for arrow in model.arrows]


def default_window(model: TimelineModel, now: float | None = None) -> tuple[float, float]:
    """What the timeline shows unless told otherwise: the latest burst, up to ``now`` while
    work runs, and the latest ``%%parallel`` plan made in it to its predicted end."""
    now = model.last_time if now is None else now
    burst = latest_burst(activity(model, now))
    if burst is None:
        start = model.first_time if model.first_time is not None else 0.0
        return start, max(now, start + 1e-3)
    start, end = burst
    if model.running:
        end = max(end, now)
    for plan in model.plans[-1:]:
        if plan.measured and plan.at >= start:
            end = max(end, plan.at + plan.makespan)
    return start, max(end, start + 1e-3)


@dataclass
class WindowSummary:
    """Totals over a window: the tasks that overlap it and only the part of their run time
    inside it; ``wall`` runs from the first start to the last end in the window."""

    tasks: int = 0
    busy: dict[int, float] = field(default_factory=dict)
    bytes: int = 0
    first: float | None = None
    last: float | None = None

    @property
    def wall(self) -> float:
        return 0.0 if self.first is None or self.last is None else max(self.last - self.first, 1e-9)

    @property
    def speedup(self) -> float:
        return sum(self.busy.values()) / self.wall if self.first is not None else 0.0

    def busy_fractions(self) -> dict[int, float]:
        return {worker: self.busy[worker] / self.wall for worker in sorted(self.busy)} if self.first is not None else {}


def window_summary(model: TimelineModel, window: tuple[float, float], now: float | None = None) -> WindowSummary:
    """Tasks, busy time per worker, bytes moved, wall time and speed-up inside ``window``."""
    now = model.last_time if now is None else now
    t0, t1 = window
    summary = WindowSummary()
    busy = summary.busy
    first, last = t1, t0
    for bar in model.bars.values():  # every task kept, at each redraw: comparisons, no calls
        end = now if bar.end is None else bar.end
        if end < t0 or bar.queued > t1 or bar.worker == KERNEL:
            continue
        summary.tasks += 1
        start = bar.start
        if start is None:
            continue
        start = t0 if start < t0 else start
        end = t1 if end > t1 else end
        if end >= start:
            busy[bar.worker] = busy.get(bar.worker, 0.0) + end - start
            first = start if start < first else first
            last = end if end > last else last
    if busy:
        summary.first, summary.last = first, last
    summary.bytes = sum(arrow.bytes for arrow in model.arrows if t0 <= arrow.end and arrow.start <= t1)
    return summary
