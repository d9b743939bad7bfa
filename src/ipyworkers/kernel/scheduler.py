"""The scheduler: the dataflow state, its lock, and what follows from each report.

It is the only owner of the task graph (``Dataflow``), the task handles, the pending
pulls and each worker's progress, and the only holder of their lock. Under that lock
it only changes state and queues frames on the links' outboxes (a deque append, so
frames for one worker leave in the order they were decided). Everything else that
follows (ending tasks, which wakes waiters and schedules callbacks; notes in cells;
events) is returned as ``Effects`` and carried out by the caller after the lock is
released. It can be tested with fake links and no process. Its records are in
``records.py``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import Future
from typing import Any

from .. import protocol as p
from ..errors import ClusterError, RemoteError, SerializationError, TaskCancelled, TaskFailed
from ..plan.dataflow import (
    CANCELLED,
    DISPATCHED,
    DONE,
    FAILED,
    KERNEL,
    QUEUED,
    RUNNING,
    Dataflow,
    TaskRecord,
    holder_name,
)
from ..serialize import pack_values
from . import events as ev
from .peer_news import PeerNews
from .records import Effects, Ending, PendingPull, Submission, WorkerProgress
from .tasks import NO_VALUES, Task

PRUNE_EVERY = 1000
CANCELLED_BY_USER = "it was cancelled"


class Scheduler:
    def __init__(self, post: Callable[[int, Any, list], Any], kernel_has: Callable[[str], bool],
                 callbacks: Any = None):
        self.flow = Dataflow()
        self.tasks: dict[int, Task] = {}
        self.progress: dict[int, WorkerProgress] = {}
        self.lock = threading.Lock()
        self._post = post
        self._kernel_has = kernel_has
        self._callbacks = callbacks
        self.canceller: Callable[[Task], None] | None = None
        """What ``Task.cancel`` calls (the cluster's ``cancel``)."""
        self._pulls: dict[int, PendingPull] = {}
        self._req_ids = itertools.count(1)
        self._news = PeerNews()

    # -- workers -------------------------------------------------------------------------

    def add_worker(self, worker: int, peer_address: str) -> None:
        with self.lock:
            self.progress[worker] = WorkerProgress(peer_address)
            self.flow.add_worker(worker)
            self._news.joined(worker)

    def remove_worker(self, worker: int, reason: str) -> Effects:
        """Forget a dead or retired worker: its tasks fail, pulls from it fail, others hear of it."""
        effects = Effects()
        with self.lock:
            gone = self.progress.pop(worker, None)
            self._news.left(worker)
            if gone is None:
                return effects
            running = self.tasks.get(gone.current) if gone.current else self._oldest_dispatched(worker)
            if running is not None:
                effects.notes.append((running, reason))
            for record in self.flow.remove_worker(worker, reason):
                self._end(effects, record.id, FAILED, error=TaskFailed(record.worker, record.id, reason))
            for req, pull in list(self._pulls.items()):
                if pull.source == worker:
                    del self._pulls[req]
                    message = f"{reason} before sending {pull.name!r}"
                    effects.pulls.append((pull.future, TaskFailed(worker, pull.version, message)))
            for other in self.progress:
                self._post(other, p.PeerLost(worker, reason), ())
            self._dispatch_ready(effects)
        return effects

    def peer_addresses(self) -> dict[int, str]:
        with self.lock:
            return {w: prog.peer_address for w, prog in self.progress.items()}

    # -- submission ----------------------------------------------------------------------

    def kernel_sources(self, names: Collection[str]) -> list[str]:
        """Of ``names``, those whose current value the kernel would provide."""
        if not names:
            return []
        with self.lock:
            out = []
            for name in names:
                version = self.flow.latest.get(name)
                if version is None:
                    if self._kernel_has(name):
                        out.append(name)
                elif self.flow.tasks[version].worker == KERNEL:
                    out.append(name)
            return out

    def submit(self, subs: list[Submission]) -> tuple[list[Task], Effects]:
        effects = Effects()
        with self.lock:
            gone = [sub.worker for sub in subs if sub.worker not in self.progress]
            if gone:
                raise ClusterError(f"worker {gone[0]} is dead: restart it first (%workers restart {gone[0]})")
            tasks = []
            for sub in subs:
                if sub.replicas:
                    tasks += self._submit_replicated(sub, effects)
                else:
                    tasks.append(self._submit_one(sub, effects))
            self._dispatch_ready(effects)
        return tasks, effects

    def _submit_one(self, sub: Submission, effects: Effects) -> Task:
        record = self.flow.submit(sub.worker, sub.reads, sub.writes, label=sub.label,
                                  kernel_has=self._kernel_has, sources=sub.sources)
        return self._track(record, sub, effects)

    def _submit_replicated(self, sub: Submission, effects: Effects) -> list[Task]:
        """One task per worker of a replicated submission, the first copy's first."""
        records = self.flow.submit_replicated((sub.worker, *sub.replicas), sub.reads, sub.writes, label=sub.label,
                                              kernel_has=self._kernel_has)
        return [self._track(record, sub, effects) for record in records]

    def _track(self, record: TaskRecord, sub: Submission, effects: Effects) -> Task:
        """The handle of a task the dataflow just took (lock held)."""
        worker = record.worker
        task = Task(record.id, worker, sub.label, sub.sink, code=sub.code, cell=sub.cell,
                    want_result=sub.want_result, callbacks=self._callbacks)
        task.call, task.payload = sub.call, sub.payload
        task.canceller = self.canceller
        self.tasks[record.id] = task
        prog = self.progress[worker]
        prog.open += 1
        if prog.open == 1 and self._news.busy(worker):
            self._tell_others(worker, p.PeerBusy(worker))
        if record.id % PRUNE_EVERY == 0:
            for gone in self.flow.prune():
                self.tasks.pop(gone, None)
        effects.event(ev.TASK_QUEUED, worker=worker, task=record.id, at=task.submitted_at, **_queued_data(sub, record))
        if not record.deps:
            return task
        problem = self._kernel_problem(record, sub.kernel_values)
        if problem is not None:
            self.flow.finished(record.id, False, f"task #{record.id} could not start ({problem})")
            self._end(effects, record.id, FAILED, error=TaskFailed(worker, record.id, problem))
        else:
            task.kernel_parts = {d.name: sub.kernel_values[d.name] for d in record.kernel_deps()}
        return task

    @staticmethod
    def _kernel_problem(record: TaskRecord, values: dict[str, Any]) -> str | None:
        for dep in record.kernel_deps():
            value = values.get(dep.name)
            if value is None:
                return f"the kernel's value of {dep.name!r} changed while it was being sent; run it again"
            if isinstance(value, SerializationError):
                return str(value)
        return None

    def fail_unsent(self, task: Task, message: str) -> Effects:
        """A task whose inputs could not be prepared (say, a kernel value would not pickle)."""
        effects = Effects()
        with self.lock:
            self.flow.finished(task.id, False, f"task #{task.id} could not start ({message})")
            self._end(effects, task.id, FAILED, error=TaskFailed(task.worker, task.id, message))
            self._dispatch_ready(effects)
        return effects

    def _dispatch_ready(self, effects: Effects) -> None:
        """Queue every task the dataflow allows now (lock held)."""
        dispatch, cancelled = self.flow.ready()
        for record in cancelled:
            message = f"input {record.missing_input!r} is unavailable because {record.reason}"
            if record.worker in self.progress:
                self.progress[record.worker].last_outcome = f"its task #{record.id} was cancelled ({message})"
            self._end(effects, record.id, CANCELLED, error=TaskCancelled(record.worker, record.id, message))
            if record.worker in self.progress:  # readers there wait for the version it would have made
                self._post(record.worker, p.Forget(record.version, record.reason), ())
        for record in dispatch:
            task = self.tasks[record.id]
            msg, parts = self._run_message(record, task)
            task.ticket = self._post(record.worker, msg, parts)
            task.state = DISPATCHED

    def _run_message(self, record: TaskRecord, task: Task) -> tuple[p.Run, list]:
        kernel_index, parts = pack_values(task.kernel_parts)
        payload_index, payload_parts = pack_values(task.payload)
        peers = {d.source: self.progress[d.source].peer_address for d in record.remote_deps()
                 if d.source in self.progress}
        msg = p.Run(record.id, task.code, task.cell, [(d.name, d.version, d.source) for d in record.deps],
                    peers, sorted(record.writes), task.want_result, kernel_index, payload_index, task.call,
                    None if record.replica_of is None else record.version)
        task.kernel_parts = task.payload = NO_VALUES
        return msg, parts + payload_parts

    # -- cancelling --------------------------------------------------------------------------

    def cancel(self, task: Task, unpost: Callable[[Any], bool]) -> Effects:
        """Drop a task not yet on its worker; ask the worker to skip or interrupt it otherwise."""
        effects = Effects()
        with self.lock:
            record = self.flow.tasks.get(task.id)
            if record is None or record.final:
                return effects
            reason = f"task #{task.id} on worker {task.worker} was cancelled"
            unsent = record.state == QUEUED or (record.state == DISPATCHED and task.ticket is not None
                                                and unpost(task.ticket))
            if unsent:
                self.flow.cancelled(task.id, reason)
                self._end(effects, task.id, CANCELLED, error=TaskCancelled(task.worker, task.id, CANCELLED_BY_USER))
                if task.worker in self.progress:  # readers elsewhere already wait there for what it would make
                    self._post(task.worker, p.Forget(record.version, reason), ())
                self._dispatch_ready(effects)
            elif task.worker in self.progress:
                self._post(task.worker, p.Interrupt(task.id), ())
                if any(r.id < task.id for r in self.flow.unfinished([task.worker])):
                    # a worker runs its tasks in order: behind an unfinished one, this one has
                    # not started, and the worker skips it when it gets there
                    self.flow.cancelled(task.id, reason)
                    self._end(effects, task.id, CANCELLED, error=TaskCancelled(task.worker, task.id,
                                                                              CANCELLED_BY_USER))
                    self._post(task.worker, p.Forget(record.version, reason), ())
                    self._dispatch_ready(effects)
        return effects

    # -- what workers report -----------------------------------------------------------------

    def on_started(self, worker: int, msg: p.Started) -> Effects:
        effects = Effects()
        with self.lock:
            task = self.tasks.get(msg.task)
            if task is None or worker not in self.progress:
                return effects
            self.flow.started(msg.task)
            prog = self.progress[worker]
            prog.current, prog.waiting = msg.task, []
            task.state = RUNNING
            task.started_at = msg.at
        effects.event(ev.TASK_STARTED, worker=worker, task=msg.task, at=msg.at)
        return effects

    def on_waiting(self, worker: int, msg: p.Waiting) -> None:
        with self.lock:
            prog = self.progress.get(worker)
            if prog is not None and msg.task in self.tasks:
                prog.current, prog.waiting = msg.task, list(msg.inputs)

    def on_fetched(self, worker: int, msg: p.Fetched) -> Effects:
        effects = Effects()
        with self.lock:
            if msg.task not in self.flow.tasks:
                return effects
            self.flow.fetched(msg.task, msg.name, msg.size)
            self._dispatch_ready(effects)
        effects.event(ev.TRANSFER, worker=worker, task=msg.task, at=msg.t1, name=msg.name, source=msg.source,
                      dest=worker, bytes=msg.size, start=msg.t0, end=msg.t1, version=msg.version)
        return effects

    def on_finished(self, worker: int, msg: p.Finished, result: Any) -> Effects:
        effects = Effects()
        with self.lock:
            task = self.tasks.get(msg.task)
            if task is None or worker not in self.progress:
                return effects
            prog = self.progress[worker]
            prog.current, prog.waiting = None, []
            prog.done += 1
            prog.epochs.update(msg.epochs)
            quiet_start = msg.t0 if task.started_at is None else None
            if quiet_start is not None:
                task.started_at = quiet_start
            if msg.error is None:
                self.flow.finished(msg.task, True, None, msg.sizes, msg.written)
                self.flow.missing(msg.task, msg.missing)
                prog.last_outcome = f"its last task #{msg.task} ended"
                self._end(effects, msg.task, DONE, result=result, at=msg.t1, started=quiet_start)
            else:
                ename, evalue, traceback = msg.error
                root = f"task #{msg.task} on worker {worker} failed ({ename}: {evalue})"
                self.flow.finished(msg.task, False, root, msg.sizes, msg.written)
                prog.last_outcome = f"its last task #{msg.task} failed ({ename}: {evalue})"
                error = RemoteError(worker, msg.task, ename, evalue, traceback)
                self._end(effects, msg.task, FAILED, error=error, at=msg.t1, started=quiet_start)
            self._dispatch_ready(effects)
        return effects

    def on_unrun(self, worker: int, msg: p.Unrun) -> Effects:
        """The task never ran: cancelled for ``root``, or, with no root, failed getting its inputs."""
        effects = Effects()
        with self.lock:
            task = self.tasks.get(msg.task)
            prog = self.progress.get(worker)
            if task is None or prog is None:
                return effects
            if prog.current == msg.task:
                prog.current, prog.waiting = None, []
            if msg.root is not None:
                self.flow.cancelled(msg.task, msg.root)
                prog.last_outcome = f"its last task #{msg.task} was cancelled ({msg.message})"
                self._end(effects, msg.task, CANCELLED, error=TaskCancelled(worker, msg.task, msg.message), at=msg.at)
            else:
                self.flow.finished(msg.task, False, f"task #{msg.task} on worker {worker} failed ({msg.message})")
                prog.last_outcome = f"its last task #{msg.task} failed ({msg.message})"
                self._end(effects, msg.task, FAILED, error=TaskFailed(worker, msg.task, msg.message), at=msg.at)
            self._dispatch_ready(effects)
        return effects

    def _end(self, effects: Effects, task_id: int, state: str, *, result: Any = None,
             error: BaseException | None = None, at: float | None = None, started: float | None = None) -> None:
        """Every task ends here (lock held): its worker's count of open tasks drops, and a
        worker left with nothing to do tells the others, whose streams may wait on it."""
        task = self.tasks.get(task_id)
        if task is None or task.ending:
            return
        task.ending = True
        effects.endings.append(Ending(task, state, result, error, at, started))
        prog = self.progress.get(task.worker)
        if prog is None:
            return
        prog.open = max(0, prog.open - 1)
        prog.last_failed = state != DONE
        if prog.open == 0 and self._news.idle(task.worker, prog.last_failed, time.monotonic()):
            self._tell_idle(task.worker, prog)

    # -- news of idleness, for streams (peer_news.py) ---------------------------------------------

    def _tell_idle(self, worker: int, prog: WorkerProgress) -> None:
        self._news.told(worker)
        self._tell_others(worker, p.PeerIdle(worker, dict(prog.epochs), prog.last_outcome, prog.last_failed))

    def tell_idle_news(self, now: float) -> bool:
        """Tell the others of each worker idle (after work that went well) for long enough;
        whether anything was posted. The supervisor's monitor thread calls it."""
        with self.lock:
            due = self._news.due(now)
            for worker in due:
                prog = self.progress.get(worker)
                if prog is None or prog.open:
                    self._news.forget_untold(worker)
                else:
                    self._tell_idle(worker, prog)
            return bool(due)

    def _tell_others(self, worker: int, msg: Any) -> None:
        for other in self.progress:
            if other != worker:
                self._post(other, msg, ())

    # -- pulls into the kernel ------------------------------------------------------------------

    def request_pull(self, name: str, version: int, source: int) -> tuple[int, Future]:
        with self.lock:
            req = next(self._req_ids)
            future: Future = Future()
            self._pulls[req] = PendingPull(name, version, source, future, time.monotonic())
            self._post(source, p.Get(req, name, version), ())
        return req, future

    def on_value(self, msg: p.Value, parts: list) -> None:
        with self.lock:
            pull = self._pulls.pop(msg.req, None)
        if pull is not None and not pull.future.done():
            pull.future.set_result((msg.status, msg.info, parts))

    def forget_pull(self, req: int) -> None:
        with self.lock:
            self._pulls.pop(req, None)

    def pull_source(self, name: str, frm: int | None, alive: set[int]) -> tuple[int, int]:
        """(version, worker to fetch it from) for a pull of ``name`` into the kernel."""
        with self.lock:
            version = self._version_of(name)
            producer = self.flow.tasks[version]
            _, holders = self.flow.where(name)
            if producer.worker == KERNEL and frm is None:
                raise ClusterError(f"{name!r} already lives in the kernel")
            candidates = [producer.worker, *sorted(holders)]
            if frm is not None:
                if frm not in candidates:
                    raise ClusterError(f"worker {frm} does not hold the current value of {name!r}")
                candidates = [frm]
            usable = [c for c in candidates if c in alive]
            if not usable:
                raise ClusterError(f"{name!r} was lost: {holder_name(producer.worker)} is gone")
            return version, usable[0]

    def pulled(self, name: str, version: int, size: int) -> None:
        with self.lock:
            self.flow.pulled(name, version, size)

    def note_kernel_writes(self, names: list[str], label: str = "kernel cell") -> None:
        with self.lock:
            self.flow.note_kernel_writes(names, label=label)

    def require_defined(self, name: str) -> int:
        with self.lock:
            return self._version_of(name)

    def _version_of(self, name: str) -> int:
        version, _ = self.flow.where(name)
        if version is None:
            raise NameError(f"name {name!r} is not defined on any worker")
        return version

    def defined(self, names: Collection[str]) -> frozenset[str]:
        """Of ``names``, those some task or kernel cell has bound (builtins rebound, say)."""
        if not names:
            return frozenset()
        with self.lock:
            return frozenset(n for n in names if n in self.flow.latest)

    # -- questions -------------------------------------------------------------------------------

    def who_has(self, names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        with self.lock:
            wanted = sorted(self.flow.latest) if names is None else list(names)
            out = {}
            for name in wanted:
                version, holders = self.flow.where(name)
                if version is None:
                    out[name] = {"holders": [], "size": None, "task": None, "state": "undefined"}
                    continue
                record = self.flow.tasks[version]
                task = self.tasks.get(version)
                out[name] = {"holders": sorted(holders), "size": self.flow.sizes.get((name, version)),
                             "task": version, "state": record.state, "lost": self.flow.lost.get((name, version)),
                             "cell": None if task is None else task.cell}
            return out

    def unfinished(self, workers: Iterable[int] | None = None) -> list[Task]:
        with self.lock:
            return [self.tasks[r.id] for r in self.flow.unfinished(workers) if r.id in self.tasks]

    def worker_rows(self) -> dict[int, dict[str, Any]]:
        """Per live worker: current task, what it waits for, queued count, names held."""
        with self.lock:
            rows = {}
            for wid, prog in self.progress.items():
                task = self.tasks.get(prog.current) if prog.current else None
                if task is None and prog.open:
                    task = self._oldest_dispatched(wid)  # a short task does not say it started
                rows[wid] = {
                    "task": None if task is None else f"#{task.id} {task.label}",
                    "task_id": None if task is None else task.id,
                    "waiting": list(prog.waiting),
                    "queued": max(0, prog.open - (1 if task is not None else 0)),
                    "names": self.flow.names_held_by(wid),
                }
            return rows

    def busy_tasks(self, workers: Iterable[int]) -> dict[int, Task]:
        """The task each of these workers runs, waits for inputs for, or (not started yet,
        say while the worker still builds its shell) is about to run, if any."""
        with self.lock:
            out = {}
            for wid in list(workers):
                prog = self.progress.get(wid)
                task = self.tasks.get(prog.current) if prog is not None and prog.current else None
                if task is None and prog is not None and prog.open:
                    task = self._oldest_dispatched(wid)
                if task is not None and not task.done():
                    out[wid] = task
            return out

    def _oldest_dispatched(self, worker: int) -> Task | None:
        """A worker runs its tasks in arrival order, and a short function call does not say
        it started (nor a cell while the worker's shell is being built): with none known to
        run, the oldest dispatched task is the one the worker is on."""
        ids = [r.id for r in self.flow.unfinished([worker]) if r.state == DISPATCHED]
        return self.tasks.get(min(ids)) if ids else None


def _queued_data(sub: Submission, record: TaskRecord) -> dict[str, Any]:
    """What the timeline shows of a queued task, and groups its bars by."""
    code = sub.code or sub.note
    data = {"label": sub.label, "code": "\n".join(code.strip("\n").splitlines()[:4]) if "\n" in code else code,
            "reads": sorted(sub.reads), "writes": sorted(record.writes)}
    if sub.items:
        data["items"] = sub.items
    if sub.cell:
        data["cell"] = sub.cell
    if sub.call and sub.call.get("name"):
        data["function"] = sub.call["name"]
    return data
