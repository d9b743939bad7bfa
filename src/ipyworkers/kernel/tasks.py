"""Handles for work in flight, and the errors it can end with."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from ..errors import RemoteError, TaskCancelled, TaskFailed  # noqa: F401 (re-exported)
from ..plan.dataflow import CANCELLED, DONE, FAILED, QUEUED


class Task:
    """One piece of code on one worker. Thread-safe; finished by the coordinator."""

    def __init__(self, task_id: int, worker: int, label: str, sink: Any = None, *,
                 code: str | None = None, cell: int | None = None, want_result: bool = False,
                 callbacks: Any = None):
        self.id = task_id
        self.worker = worker
        self.label = label
        self.sink = sink
        self.code = code
        self.cell = cell
        self.want_result = want_result
        self.state = QUEUED
        self.submitted_at = time.monotonic()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._result: Any = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._callbacks: list = []
        self._runner = callbacks
        self._lock = threading.Lock()
        self.kernel_parts: dict[str, list[Any]] = {}
        self.payload: dict[str, list[Any]] = {}
        self.call: dict | None = None
        self.ending = False
        """Set, under the scheduler's lock, once the scheduler has decided how the task ends."""
        self.ticket: Any = None
        """The control-link frame that carries this task to its worker, once dispatched."""
        self._canceller: Any = None

    def __repr__(self) -> str:
        return f"<Task #{self.id} on worker {self.worker}: {self.state}>"

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Task:
        """Block until the task ends; ``TimeoutError`` if it has not by ``timeout`` seconds.
        The wait ends on a worker's death too: the task then fails."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"task #{self.id} on worker {self.worker} still {self.state} after {timeout} s")
        return self

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def result(self) -> Any:
        """The value of the code's last expression (``None`` if none); raises the task's error."""
        self.wait()
        if self._error is not None:
            raise self._error
        return self._result

    def _finish(self, state: str, result: Any = None, error: BaseException | None = None,
                at: float | None = None) -> bool:
        """End the task once; its callbacks go to the callback thread."""
        with self._lock:
            if self._done.is_set():
                return False
            self.state = state
            self._result = result
            self._error = error
            self.finished_at = at if at is not None else time.monotonic()
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            self._call(callback)
        return True

    def _call(self, callback) -> None:
        if self._runner is not None:
            self._runner.submit(callback, self)
        else:
            callback(self)

    def add_done_callback(self, callback) -> None:
        """Call ``callback(task)`` once the task ends (soon, if it has). Callbacks run on the
        cluster's callback thread, outside every lock and never on a thread that reads a
        socket, so a callback may submit work or wait for other tasks."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        self._call(callback)

    def cancel(self) -> None:
        """Drop the task if it has not started; interrupt it if it runs (``Cluster.cancel``)."""
        if self._canceller is not None and not self.done():
            self._canceller(self)

    def succeeded(self) -> bool:
        return self.state == DONE

    def failed(self) -> bool:
        return self.state in (FAILED, CANCELLED)


class TaskGroup:
    """The tasks of one submission on several workers; behaves like one task."""

    def __init__(self, tasks: Iterable[Task]):
        self.tasks = list(tasks)

    def __repr__(self) -> str:
        return f"<TaskGroup {', '.join(f'#{t.id}@{t.worker}:{t.state}' for t in self.tasks)}>"

    def __iter__(self):
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def done(self) -> bool:
        return all(t.done() for t in self.tasks)

    def wait(self, timeout: float | None = None) -> TaskGroup:
        deadline = None if timeout is None else time.monotonic() + timeout
        for task in self.tasks:
            task.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self

    @property
    def error(self) -> BaseException | None:
        return next((t.error for t in self.tasks if t.error is not None), None)

    @property
    def result(self) -> dict[int, Any]:
        """{worker id: value of the last expression}; raises the first error."""
        self.wait()
        if self.error is not None:
            raise self.error
        return {t.worker: t.result for t in self.tasks}
