"""Runs tasks on the worker's main thread, one at a time, in the order they arrive.

A task first gathers its inputs (its own values, the kernel's, and those fetched from
other workers; while it waits for the latter it tells the kernel what it waits for),
then runs: a cell through IPython, or a function call directly. An interrupt is a
KeyboardInterrupt raised only while a task runs or waits for its inputs, never while
the runner reports, so an outcome is never lost to a late signal.
"""

from __future__ import annotations

import _signal
import queue
import signal
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any

from .. import protocol as p
from ..errors import SerializationError
from ..serialize import dumps_value, loads_value, unpack_values
from .calls import Calls
from .fetcher import InputUnavailable
from .namespace import MISSING

QUIET_START_SECONDS = 0.05
"""A task tells the kernel it started only once it has run this long; a shorter one is
reported by its ``Finished`` alone (which carries its start time), so a trivial task costs
one message back, not two."""


class Unpicklable:
    """Stands for a task result that could not be pickled: keeps its repr."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


class Outcome:
    """What ``run_cell`` returns, for a function call."""

    def __init__(self, result: Any, success: bool = True):
        self.result = result
        self.success = success


class TaskRunner:
    def __init__(self, worker: Any):
        self.worker = worker
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.current: int | None = None
        self.interruptible = False
        self.skipped: set[int] = set()
        self.current_output_task: int | None = None
        self.returns_result = False
        self.shell: Any = None
        self.make_shell: Any = None
        self._shell_thread: threading.Thread | None = None
        self.calls = Calls()
        self._quiet_start: tuple[int, float] | None = None
        self._error: tuple[str, str, list[str]] | None = None
        self._main = threading.get_ident()
        self.sigint_handler = self.on_sigint
        """One bound method, so a check can tell whether a task replaced the handler."""

    # -- control (IO threads) ------------------------------------------------------------------

    def submit(self, run: p.Run, parts: list) -> None:
        self.inbox.put((run, parts))

    def stop(self) -> None:
        self.inbox.put(None)

    def interrupt(self, task: int | None) -> None:
        """Interrupt ``task`` if it runs or waits here; if it is still queued, skip it."""
        with self._lock:
            if self.current is not None and self.interruptible and task in (None, self.current):
                signal.pthread_kill(self._main, signal.SIGINT)
            elif task is not None and task != self.current:
                self.skipped.add(task)

    def on_sigint(self, signum: int, frame: Any) -> None:
        if self.interruptible:
            raise KeyboardInterrupt

    # -- main thread ----------------------------------------------------------------------------

    def loop(self) -> None:
        """Runs tasks as they come. The IPython shell is built meanwhile on a thread of its
        own: function calls need none, so they run from the start; a cell waits for it."""
        self._build_shell_soon()
        while True:
            try:
                item = self.inbox.get()
                if item is None:
                    return
                self._execute(*item)
            except KeyboardInterrupt:
                continue

    def _build_shell_soon(self) -> None:
        if self._shell_thread is None and self.make_shell is not None:
            self._shell_thread = threading.Thread(target=self._build_shell, name="shell-build", daemon=True)
            self._shell_thread.start()

    def _build_shell(self) -> None:
        shell = self.make_shell()
        shell.run_cell("pass", store_history=False, silent=True)  # its first cell is slow: not the user's
        self.shell = shell

    def ensure_shell(self) -> Any:
        """The shell, once built (here, if its thread has not begun to build it)."""
        if self.shell is None:
            if self._shell_thread is None:
                self._build_shell()
            else:
                self._shell_thread.join()
        return self.shell

    def announce_long_call(self) -> None:
        """A task running for ``QUIET_START_SECONDS`` now says it started (IO thread)."""
        with self._lock:
            pending = self._quiet_start
            if pending is not None and time.monotonic() - pending[1] >= QUIET_START_SECONDS:
                self._quiet_start = None
                self.worker.emit(p.Started(*pending))

    def _execute(self, run: p.Run, parts: list) -> None:
        if run.call is None:
            self.ensure_shell()  # before the task is current: an interrupt meanwhile skips it
        with self._lock:
            if run.task in self.skipped:
                self.skipped.discard(run.task)
                skip = True
            else:
                skip = False
                self.current, self.interruptible = run.task, True
        if skip:
            root = f"task #{run.task} on worker {self.worker.id} was cancelled"
            self._unrun(run, "it was cancelled before it started", root)
            return
        try:
            payload = self._take_inputs(run, parts) if run.deps or run.payload else {}
            if payload is not None:
                self._run(run, payload)
        finally:
            with self._lock:
                self.current, self.interruptible = None, False

    def _take_inputs(self, run: p.Run, parts: list) -> dict[str, list] | None:
        """Install the task's inputs here and return its payload; None if it cannot run."""
        try:
            values, undefined = self._gather(run, parts)
        except InputUnavailable as exc:
            self._unrun(run, str(exc), exc.root)
            return None
        except SerializationError as exc:
            self._unrun(run, str(exc), None)
            return None
        except KeyboardInterrupt:
            root = f"task #{run.task} on worker {self.worker.id} was interrupted while waiting for its inputs"
            self._unrun(run, "interrupted while waiting for its inputs", root)
            return None
        self.worker.namespace.install(values, undefined, run.deps)
        return unpack_values(run.payload, parts[len(parts) - sum(c for _, c in run.payload):])

    def _gather(self, run: p.Run, parts: list) -> tuple[dict[str, Any], set[str]]:
        """The task's inputs as {name: value}, and the names that must be undefined."""
        kernel_parts = unpack_values(run.kernel_values, parts)
        staged = self.worker.fetcher.take(run.task)
        pending = [(name, source) for name, _, source in run.deps
                   if name in staged and not staged[name].done()]
        if pending:
            self.worker.emit(p.Waiting(run.task, pending))
        values, undefined = {}, set()
        for name, version, source in run.deps:
            if source == self.worker.id:
                root = self.worker.namespace.local_failure(name, version)
                if root is not None:
                    raise InputUnavailable(f"input {name!r} is unavailable because {root}", root=root)
            elif source == 0:
                values[name] = loads_value(name, kernel_parts[name], f"worker {self.worker.id}")
                now = time.monotonic()
                self.worker.emit(p.Fetched(run.task, name, version, 0, sum(map(len, kernel_parts[name])), now, now))
            else:
                found = self._receive(run.task, name, version, source, staged[name])
                if found is MISSING:
                    undefined.add(name)
                else:
                    values[name] = found
        return values, undefined

    def _receive(self, task: int, name: str, version: int, source: int, future: Future) -> Any:
        status, info, parts = future.result()
        if status == "failed":
            raise InputUnavailable(f"input {name!r} is unavailable because {info}", root=info)
        if status == "error":
            raise InputUnavailable(info)
        if status == "missing":
            return MISSING
        value = loads_value(name, parts, f"worker {self.worker.id}")
        size = sum(len(part) for part in parts)
        self.worker.emit(p.Fetched(task, name, version, source, size, max(info, future.started), time.monotonic()))
        return value

    def _unrun(self, run: p.Run, message: str, root: str | None) -> None:
        """The task did not run: cancelled (``root`` given) or failed getting its inputs."""
        task = run.task
        reason = root if root is not None else f"task #{task} on worker {self.worker.id} failed ({message})"
        self.worker.namespace.record_outcome(_version(run), reason)
        self.worker.emit(p.Unrun(task, message, root, time.monotonic()))

    def _run(self, run: p.Run, payload: dict[str, list]) -> None:
        if run.call is not None:
            self._run_call(run, payload)
            return
        started = self._begin(run.task)
        namespace, channels = self.worker.namespace, self.worker.channels
        namespace.restore_provided()
        if _signal.getsignal(signal.SIGINT) is not self.sigint_handler:
            signal.signal(signal.SIGINT, self.sigint_handler)
        channels.task_started()
        self.returns_result = run.want_result
        before = namespace.snapshot(run.writes)
        result = self._call(run, payload)
        self._end_call()
        self.current_output_task = None
        error = self._error if result is not None and not result.success else None
        written = run.writes if error is None else namespace.rebound(before)
        sizes, missing = namespace.note_writes(_version(run), written)
        outcome = None
        if error is not None:
            outcome = f"task #{run.task} on worker {self.worker.id} failed ({error[0]}: {error[1]})"
        channels.task_ended(outcome)
        value_parts: list = []
        if error is None and run.want_result and result is not None and result.result is not None:
            value_parts = self._result_parts(result.result)
        self.worker.emit(p.Finished(run.task, started, time.monotonic(), error, sizes, missing, written,
                                    channels.epochs_sent()), value_parts)
        namespace.record_outcome(_version(run), outcome)  # peers waiting on it wait on this worker, not the kernel

    def _run_call(self, run: p.Run, payload: dict[str, list]) -> None:
        """A function call: no namespace, no streams; ``Started`` only if it runs long."""
        started = self._begin(run.task)
        result = self._call(run, payload)
        self._end_call()
        self.current_output_task = None
        error = self._error if not result.success else None
        value_parts: list = []
        if error is None and run.want_result and result.result is not None:
            value_parts = self._result_parts(result.result)
        self.worker.emit(p.Finished(run.task, started, time.monotonic(), error, {}, [], [], {}), value_parts)

    def _begin(self, task: int) -> float:
        """The task starts: said to the kernel only if it runs long (``announce_long_call``)."""
        started = time.monotonic()
        with self._lock:
            self._quiet_start = (task, started)
        self._error = None
        self.current_output_task = task
        return started

    def _end_call(self) -> None:
        with self._lock:
            self.interruptible = False
            self._quiet_start = None
        self.worker.flush_output()

    def _call(self, run: p.Run, payload: dict[str, list]) -> Any:
        try:
            if run.call is not None:
                return self._apply(run.call, payload)
            if run.code is not None:
                self.shell.execution_count = run.cell or run.task
                return self.shell.run_cell(run.code, store_history=False)
            return None
        except KeyboardInterrupt:
            self.note_error(KeyboardInterrupt, KeyboardInterrupt(), ["KeyboardInterrupt"])
            return Outcome(None, success=False)

    def _apply(self, call: dict, payload: dict[str, list]) -> Outcome:
        """A function call (``Cluster.submit``, a map batch): no cell, no namespace."""
        try:
            return Outcome(self.calls.run(call, payload, f"worker {self.worker.id}"))
        except BaseException as exc:
            if isinstance(exc, SystemExit):
                raise
            self.note_error(type(exc), exc, self.calls.format_error(exc))
            return Outcome(None, success=False)

    def _result_parts(self, value: Any) -> list:
        try:
            return dumps_value("result", value)
        except SerializationError:
            return dumps_value("result", Unpicklable(repr(value)))

    # -- what the shell reports ---------------------------------------------------------------------

    def note_error(self, etype: Any, evalue: Any, stb: list[str]) -> None:
        name = getattr(etype, "__name__", str(etype))
        self._error = (name, str(evalue), list(stb))

    def publish_display(self, data: dict, metadata: dict, transient: dict, update: bool) -> None:
        self.worker.flush_output()
        self.worker.emit(p.Display(self.current_output_task, data, metadata, transient, update))

    def clear_output(self, wait: bool) -> None:
        self.worker.emit(p.Clear(self.current_output_task, wait))


def _version(run: p.Run) -> int:
    """The version the task's writes produce here: for a copy of a replicated task (setup
    lines), the first copy's id, which readers everywhere ask for; else the task's own."""
    return run.task if run.version is None else run.version


def configure_main_thread(runner: TaskRunner) -> None:
    """Interrupts reach the runner's handler (a task that replaced it gets it back at the
    next task); busy user code yields the GIL every 1 ms, not Python's default 5 ms, so
    the IO threads serving streams and fetches are not delayed by it."""
    signal.signal(signal.SIGINT, runner.sigint_handler)
    sys.setswitchinterval(0.001)
