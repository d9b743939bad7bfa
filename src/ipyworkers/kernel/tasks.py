"""Handles for work in flight, and the errors it can end with."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from ..errors import RemoteError, TaskCancelled, TaskFailed  # noqa: F401 (re-exported)
from ..plan.dataflow import CANCELLED, DONE, FAILED, QUEUED

NO_VALUES: dict[str, list[Any]] = {}
"""The inputs of a task that sends none (shared: never mutated, only replaced)."""


class Task:
    """One piece of code on one worker. Thread-safe; finished by the coordinator.

    Slotted, and its end is one pre-acquired lock released once, not an ``Event``: a
    session submits tasks by the hundred thousand, and each object a task allocates is work
    for the garbage collector of the user's kernel."""

    __slots__ = ("id", "worker", "label", "sink", "code", "cell", "want_result", "state", "submitted_at",
                 "started_at", "finished_at", "_result", "_error", "_ended", "_end_latch", "_callbacks",
                 "_runner", "_lock", "kernel_parts", "payload", "call", "ending", "ticket", "canceller",
                 "cancel_requested")

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
        self._ended = False
        self._end_latch = threading.Lock()
        self._end_latch.acquire()
        self._callbacks: list | None = None
        self._runner = callbacks
        self._lock = threading.Lock()
        self.kernel_parts: dict[str, list[Any]] = NO_VALUES
        self.payload: dict[str, list[Any]] = NO_VALUES
        self.call: dict | None = None
        self.ending = False
        """Set, under the scheduler's lock, once the scheduler has decided how the task ends."""
        self.ticket: Any = None
        """The control-link frame that carries this task to its worker, once dispatched."""
        self.canceller: Any = None
        """``Cluster.cancel`` of the cluster that runs the task (``cancel``)."""
        self.cancel_requested = False

    def __repr__(self) -> str:
        return f"<Task #{self.id} on worker {self.worker}: {self.state}>"

    def done(self) -> bool:
        return self._ended

    def wait(self, timeout: float | None = None) -> Task:
        """Block until the task ends; ``TimeoutError`` if it has not by ``timeout`` seconds.
        The wait ends on a worker's death too: the task then fails."""
        if not self.wait_quietly(timeout):
            raise TimeoutError(f"task #{self.id} on worker {self.worker} still {self.state} after {timeout} s")
        return self

    def wait_quietly(self, timeout: float | None = None) -> bool:
        """Whether the task ended within ``timeout`` seconds (forever: None)."""
        if self._ended:
            return True
        if not self._end_latch.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return False
        self._end_latch.release()  # the next waiter passes too
        return True

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def stdout(self) -> str | None:
        """Everything the task printed so far, whole, if its sink keeps it (a non-blocking
        notebook cell's does, though the cell shows only the tail); None otherwise."""
        return self._kept_text("stdout")

    @property
    def stderr(self) -> str | None:
        """Like ``stdout``, for what the task wrote to stderr."""
        return self._kept_text("stderr")

    def _kept_text(self, name: str) -> str | None:
        kept = getattr(self.sink, "kept_text", None)
        return None if kept is None else kept(self.worker, name)

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
            if self._ended:
                return False
            self.state = state
            self._result = result
            self._error = error
            self.finished_at = at if at is not None else time.monotonic()
            self._ended = True
            self._end_latch.release()
            callbacks, self._callbacks = self._callbacks or (), None
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
            if not self._ended:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
        self._call(callback)

    def cancel(self) -> None:
        """Cancel the task: if it has not started, it is dropped (``TaskCancelled``), and so
        are the tasks that need what it would make; if it runs, it is interrupted (a
        ``KeyboardInterrupt`` in its code). Nothing happens to a task that has ended.
        A task already sent to a busy worker is skipped when the worker gets to it.
        Returns at once; ``wait()`` for the end."""
        if self.done():
            return
        if self.canceller is None:
            raise RuntimeError(f"task #{self.id} belongs to no cluster that can cancel it")
        self.cancel_requested = True
        self.canceller(self)

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

    def cancel(self) -> None:
        """``Task.cancel`` each task of the group."""
        for task in self.tasks:
            task.cancel()

    @property
    def result(self) -> dict[int, Any]:
        """{worker id: value of the last expression}; raises the first error."""
        self.wait()
        if self.error is not None:
            raise self.error
        return {t.worker: t.result for t in self.tasks}
