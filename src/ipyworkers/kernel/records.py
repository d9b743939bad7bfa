"""The records the scheduler trades in: what it knows of each worker, what a caller
submits, and the ``Effects`` it hands back to be carried out outside its lock."""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from .events import Event
from .tasks import Task


@dataclass
class WorkerProgress:
    """What one worker is doing, as far as the kernel knows."""

    peer_address: str
    current: int | None = None
    waiting: list[tuple[str, int]] = field(default_factory=list)
    open: int = 0
    """Tasks submitted to this worker and not yet ended."""
    done: int = 0
    epochs: dict[int, int] = field(default_factory=dict)
    last_outcome: str = "it has run nothing yet"
    last_failed: bool = False


@dataclass(slots=True)
class Ending:
    task: Task
    state: str
    result: Any = None
    error: BaseException | None = None
    at: float | None = None
    started: float | None = None
    """Set for a task that never said it started (a short function call): its start time."""


@dataclass(slots=True)
class Effects:
    """What the caller does once the lock is released."""

    endings: list[Ending] = field(default_factory=list)
    notes: list[tuple[Task, str]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    pulls: list[tuple[Future, Any]] = field(default_factory=list)

    def event(self, kind: str, *, worker: int | None = None, task: int | None = None, at: float | None = None,
              **data: Any) -> None:
        self.events.append(Event(kind, time.monotonic() if at is None else at, worker, task, data))


@dataclass
class PendingPull:
    name: str
    version: int
    source: int
    future: Future
    started: float


@dataclass
class Submission:
    """One task to submit: where, what, and the kernel values it may read (pickled)."""

    worker: int
    code: str | None
    reads: frozenset[str]
    writes: frozenset[str]
    label: str
    sink: Any
    cell: int | None = None
    want_result: bool = True
    sources: dict[str, int] | None = None
    kernel_values: dict[str, list] = field(default_factory=dict)
    call: dict | None = None
    payload: dict[str, list] = field(default_factory=dict)
    replicas: tuple[int, ...] = ()
    """Other workers that run the same code as one replicated task (setup lines): one
    task per worker, one version of the writes (``Dataflow.submit_replicated``)."""
    note: str = ""
    """What the timeline shows for a function call (which has no code)."""
    items: int = 0
    """The items of a map batch, for the timeline."""
