"""One event log for a cluster: what the timeline and the exports draw.

Times are ``time.monotonic()`` seconds; workers on the same host share that clock.
"""

from __future__ import annotations

import threading
import time
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


@dataclass(frozen=True)
class Event:
    kind: str
    time: float
    worker: int | None = None
    task: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


class EventLog:
    """Append-only, thread-safe; subscribers are called on the recording thread."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[Event], None]] = []
        self.origin = time.monotonic()

    def record(self, kind: str, *, worker: int | None = None, task: int | None = None,
               at: float | None = None, **data: Any) -> Event:
        event = Event(kind, time.monotonic() if at is None else at, worker, task, data)
        with self._lock:
            self._events.append(event)
            subscribers = list(self._subscribers)
        for callback in subscribers:
            callback(event)
        return event

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def events(self, kind: str | None = None) -> list[Event]:
        with self._lock:
            return [e for e in self._events if kind is None or e.kind == kind]

    def __len__(self) -> int:
        return len(self._events)
