"""One event log for a cluster: what the timeline and the exports draw.

Times are ``time.monotonic()`` seconds; workers on the same host share that clock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TASK_QUEUED = "task-queued"
TASK_STARTED = "task-started"
TASK_FINISHED = "task-finished"
TASK_FAILED = "task-failed"
TASK_CANCELLED = "task-cancelled"
TRANSFER = "transfer"
WORKER_STARTED = "worker-started"
WORKER_DIED = "worker-died"
WORKER_STOPPED = "worker-stopped"
PLAN = "parallel-plan"
"""A %%parallel run was submitted: its tasks, the statements each runs, and the predicted
slots (seconds after the event), so the timeline can draw the plan against the run."""

TASK_ENDED = frozenset({TASK_FINISHED, TASK_FAILED, TASK_CANCELLED})
WORKER_LIFECYCLE = frozenset({WORKER_STARTED, WORKER_DIED, WORKER_STOPPED})

MAX_EVENTS = 50_000
"""About three events per task, so the window covers the last ~15,000 tasks: more than
the timeline keeps (``timeline.MAX_BARS``), yet at some 350 bytes an event (a queued one
carries the first lines of its code) the log stays under 20 MB however long the session."""


@dataclass(slots=True)
class Event:
    """One thing that happened; never changed once recorded. Slotted, and not frozen (a
    frozen dataclass costs three times as much to make): the log holds tens of thousands."""
    kind: str
    time: float
    worker: int | None = None
    task: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


class EventLog:
    """Thread-safe; subscribers are called on the recording thread and see every event.

    The log keeps only a window of the most recent ``max_events`` events, because an
    interactive session may run for days and hundreds of thousands of tasks while
    everything that reads the log (the timeline, its exports) only shows recent work.
    Two kinds of older events are kept past the window, since a picture rebuilt from
    the log would be wrong without them and there are few of them: the queued/started
    events of tasks that have not ended (a long task must still show as running), and
    the latest lifecycle event of each worker (which workers exist, which died).

    Everything else that falls out is counted, not silently forgotten: ``dropped``
    events in all, and per-worker queued tasks and transfer bytes among them, so a
    reader can keep session totals right (see ``TimelineModel.from_log``).
    """

    def __init__(self, max_events: int = MAX_EVENTS) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, not {max_events!r}")
        self.max_events = max_events
        self._events: deque[Event] = deque(maxlen=max_events)
        self._lock = threading.Lock()
        self._subscribers: tuple[Callable[[Event], None], ...] = ()  # replaced, never mutated: no copy per event
        self.origin = time.monotonic()
        self.recorded = 0
        self.dropped = 0
        self._dropped_tasks: dict[int | None, int] = {}
        self._dropped_bytes = 0
        self._open: set[int] = set()
        # insertion order is the order events left the window, hence time order
        self._pinned: dict[tuple, Event] = {}

    def record(self, kind: str, *, worker: int | None = None, task: int | None = None,
               at: float | None = None, **data: Any) -> Event:
        return self.add(Event(kind, time.monotonic() if at is None else at, worker, task, data))

    def add(self, event: Event) -> Event:
        kind, task = event.kind, event.task
        with self._lock:
            self.recorded += 1
            if len(self._events) == self.max_events:
                self._evict(self._events[0])
            self._events.append(event)
            if task is not None:
                if kind == TASK_QUEUED:
                    self._open.add(task)
                elif kind in TASK_ENDED:
                    self._open.discard(task)
                    for pinned_kind in (TASK_QUEUED, TASK_STARTED):
                        pinned = self._pinned.pop(("task", task, pinned_kind), None)
                        if pinned is not None:
                            self._count_dropped(pinned)
            subscribers = self._subscribers
        for callback in subscribers:
            callback(event)
        return event

    def _evict(self, oldest: Event) -> None:
        """``oldest`` is about to leave the window: keep it aside if still needed, else count it."""
        if oldest.kind in (TASK_QUEUED, TASK_STARTED) and oldest.task in self._open:
            self._pinned[("task", oldest.task, oldest.kind)] = oldest
        elif oldest.kind in WORKER_LIFECYCLE and oldest.worker is not None:
            older = self._pinned.pop(("worker", oldest.worker), None)
            if older is not None:
                self._count_dropped(older)
            self._pinned[("worker", oldest.worker)] = oldest
        else:
            self._count_dropped(oldest)

    def _count_dropped(self, event: Event) -> None:
        self.dropped += 1
        if event.kind == TASK_QUEUED:
            self._dropped_tasks[event.worker] = self._dropped_tasks.get(event.worker, 0) + 1
        elif event.kind == TRANSFER:
            self._dropped_bytes += event.data.get("bytes", 0)

    def dropped_totals(self) -> dict[str, Any]:
        """What is no longer in ``events()``: ``events`` in all, ``tasks`` queued per worker
        (kernel included, as worker 0) and transfer ``bytes``."""
        with self._lock:
            return {"events": self.dropped, "tasks": dict(self._dropped_tasks), "bytes": self._dropped_bytes}

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        with self._lock:
            self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    index = self._subscribers.index(callback)
                    self._subscribers = self._subscribers[:index] + self._subscribers[index + 1:]

        return unsubscribe

    def events(self, kind: str | None = None) -> list[Event]:
        """The retained events in the order they were recorded: those kept past the window
        (open tasks, workers), then the window. Complete only while ``dropped`` is 0."""
        with self._lock:
            return [e for e in (*self._pinned.values(), *self._events) if kind is None or e.kind == kind]

    def __len__(self) -> int:
        with self._lock:
            return len(self._pinned) + len(self._events)
