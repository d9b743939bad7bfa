"""What workers report, and the scheduler's decisions carried out.

``Reports`` runs on the link reader threads (a record from a worker) and on whichever
thread asked the scheduler for something (``apply``). Neither ever holds the scheduler's
lock: the scheduler decides under it and returns ``Effects``; this module then writes the
frames, records the events, tells the sinks and wakes the waiters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .. import protocol as p
from ..errors import RemoteError, SerializationError
from ..serialize import loads_value
from . import events as ev
from .records import Effects
from .scheduler import Scheduler
from .sinks import Sink
from .supervisor import Supervisor

log = logging.getLogger("ipyworkers.kernel")

_END_EVENTS = {"done": ev.TASK_FINISHED, "failed": ev.TASK_FAILED, "cancelled": ev.TASK_CANCELLED}


class Reports:
    def __init__(self, scheduler: Scheduler, supervisor: Supervisor, events: ev.EventLog,
                 default_sink: Callable[[], Sink]):
        self._scheduler = scheduler
        self._supervisor = supervisor
        self._events = events
        self._default_sink = default_sink
        self._handlers: dict[type, Callable[[int, Any, list], None]] = {
            p.Started: lambda w, m, parts: self.apply(scheduler.on_started(w, m)),
            p.Waiting: lambda w, m, parts: scheduler.on_waiting(w, m),
            p.Fetched: lambda w, m, parts: self.apply(scheduler.on_fetched(w, m)),
            p.Finished: self._on_finished,
            p.Unrun: lambda w, m, parts: self.apply(scheduler.on_unrun(w, m)),
            p.Output: lambda w, m, parts: self._sink_of(m.task).stream(w, m.stream, m.text),
            p.Display: lambda w, m, parts: self._sink_of(m.task).display(w, m.data, m.metadata, m.transient,
                                                                           m.update),
            p.Clear: lambda w, m, parts: self._sink_of(m.task).clear(w, m.wait),
            p.StreamStats: self._on_stream_stats,
            p.Value: lambda w, m, parts: scheduler.on_value(m, parts),
            p.Pong: lambda w, m, parts: supervisor.on_pong(w, m),
        }

    def on_message(self, worker: int, msg: Any, parts: list) -> None:
        handler = self._handlers.get(type(msg))
        if handler is None:
            log.warning("worker %d sent an unexpected %s", worker, type(msg).__name__)
            return
        handler(worker, msg, parts)

    def _on_finished(self, worker: int, msg: p.Finished, parts: list) -> None:
        result = None
        if msg.error is None and parts:
            try:
                result = loads_value("result", parts, "the kernel")
            except SerializationError as exc:
                log.debug("the result of task #%d did not unpickle: %s", msg.task, exc)
        self.apply(self._scheduler.on_finished(worker, msg, result))

    def _on_stream_stats(self, worker: int, msg: p.StreamStats, parts: list) -> None:
        self._events.record(ev.TRANSFER, worker=worker, at=msg.t1, name="stream", source=msg.source, dest=worker,
                            bytes=msg.size, start=msg.t0, end=msg.t1, count=msg.count)

    def _sink_of(self, task_id: int | None) -> Sink:
        task = self._scheduler.tasks.get(task_id) if task_id is not None else None
        return task.sink if task is not None and task.sink is not None else self._default_sink()

    def apply(self, effects: Effects) -> None:
        """Carry out what the scheduler decided, with its lock released. Its events are
        recorded before its frames go out: a task may end before this thread goes on."""
        for event in effects.events:
            self._events.add(event)
        self._supervisor.pump()
        record = self._events.record
        for task, text in effects.notes:
            task.sink.note(task.worker, text)
        for end in effects.endings:
            task, error = end.task, end.error
            if isinstance(error, RemoteError):
                task.sink.error(task.worker, error.ename, error.evalue, error.traceback)
            elif error is not None:
                task.sink.note(task.worker, str(error))
            if end.started is not None:
                record(ev.TASK_STARTED, worker=task.worker, task=task.id, at=end.started)
            at = end.at if end.at is not None else time.monotonic()
            record(_END_EVENTS[end.state], worker=task.worker, task=task.id, at=at,
                   error=None if error is None else str(error))
            task._finish(end.state, end.result, error, at)  # last: it wakes the waiter
        for future, error in effects.pulls:
            if not future.done():
                future.set_exception(error)
