"""The task graph and the variable directory. Pure: no processes, no I/O.

Every piece of code is a task on one holder (a worker id, or ``KERNEL``) with the
names it reads and writes. A *version* of a name is the id of the task that
produced it. Submission order is program order:

* a read sees the latest version submitted before it (RAW). The reader is sent
  at once with the address of the producer; the producer's worker answers the
  fetch only once that version exists, so the socket does the waiting;
* a task that writes a name (or fetches one into its worker) is held back while
  an earlier task elsewhere still has to fetch that name (WAR), so a value is
  never overwritten before everyone who needs it has it;
* tasks on one worker are dispatched in submission order.

Every wait points at an earlier task, so the graph cannot deadlock.

A *replicated* task (``submit_replicated``: setup lines such as ``import os`` that
each worker runs for itself) is one copy per worker, all producing the same
version: the first copy's id. A worker that runs a copy holds that version once
its copy has run, so its own reads of those names are local, never fetched;
a worker without a copy fetches from the first copy's worker, as for any task.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

KERNEL = 0

QUEUED, DISPATCHED, RUNNING, DONE, FAILED, CANCELLED = (
    "queued", "dispatched", "running", "done", "failed", "cancelled",
)
FINAL_STATES = frozenset({DONE, FAILED, CANCELLED})


def holder_name(holder: int) -> str:
    return "the kernel" if holder == KERNEL else f"worker {holder}"


@dataclass(frozen=True, slots=True)
class Dep:
    """Task input: ``name`` at ``version``, taken from ``source`` (its own worker: local)."""

    name: str
    version: int
    source: int


@dataclass(slots=True)
class TaskRecord:
    id: int
    worker: int
    reads: frozenset[str]
    writes: frozenset[str]
    label: str = ""
    deps: list[Dep] = field(default_factory=list)
    state: str = QUEUED
    reason: str | None = None
    """For a failed or cancelled task, the root cause, naming the task or worker that failed."""
    pending_fetch: set[str] = field(default_factory=set)
    missing_input: str | None = None
    replica_of: int | None = None
    """For a copy of a replicated task other than the first: the first copy's id."""

    @property
    def version(self) -> int:
        """The version this task's writes produce: its own id, or the first copy's."""
        return self.id if self.replica_of is None else self.replica_of

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def remote_deps(self) -> list[Dep]:
        return [d for d in self.deps if d.source not in (self.worker, KERNEL)]

    def kernel_deps(self) -> list[Dep]:
        return [d for d in self.deps if d.source == KERNEL and self.worker != KERNEL]


class Dataflow:
    """Decides which task may go to its worker now, and what it must fetch first."""

    def __init__(self) -> None:
        self.tasks: dict[int, TaskRecord] = {}
        self.latest: dict[str, int] = {}
        self.holders: dict[tuple[str, int], set[int]] = {}
        self.sizes: dict[tuple[str, int], int] = {}
        self.workers: set[int] = set()
        self._queues: dict[int, deque[int]] = {}
        self._fetchers: dict[str, set[int]] = {}
        self.copies: dict[int, dict[int, int]] = {}
        """For a replicated version: worker -> id of the copy that produces it there."""
        self.lost: dict[tuple[str, int], str] = {}
        """Values whose every holder is gone, with why: readers are cancelled, naming it, even
        once a worker with the same id is back (a restarted worker holds nothing)."""
        self._next_id = 1

    # -- workers ---------------------------------------------------------------------

    def add_worker(self, worker: int) -> None:
        self.workers.add(worker)
        self._queues.setdefault(worker, deque())

    def remove_worker(self, worker: int, reason: str) -> list[TaskRecord]:
        """Forget ``worker``: its unfinished tasks fail and the values only it held are lost."""
        self.workers.discard(worker)
        failed = [t for t in self.tasks.values() if t.worker == worker and not t.final]
        for task in failed:
            self._finish(task, FAILED, f"{reason}, so task #{task.id} did not finish")
        self._queues.pop(worker, None)
        for key, holders in self.holders.items():
            if worker in holders:
                holders.discard(worker)
                if not holders:
                    self.lost[key] = reason
        return failed

    # -- submission ------------------------------------------------------------------

    def submit(
        self,
        worker: int,
        reads: Iterable[str],
        writes: Iterable[str],
        *,
        label: str = "",
        kernel_has: Callable[[str], bool] = lambda name: False,
        sources: dict[str, int] | None = None,
    ) -> TaskRecord:
        """Add a task; ``kernel_has`` tells whether the kernel namespace defines a name
        that no task produced (it then comes from the kernel). ``sources`` forces where
        some names are taken from (explicit moves)."""
        task = self._new_task(worker, reads, writes, label, kernel_has, sources)
        self._publish(task)
        return task

    def submit_replicated(
        self,
        workers: Iterable[int],
        reads: Iterable[str],
        writes: Iterable[str],
        *,
        label: str = "",
        kernel_has: Callable[[str], bool] = lambda name: False,
    ) -> list[TaskRecord]:
        """The same code on each of ``workers`` (setup lines), as one version of its writes.

        Each copy is an ordinary task in its worker's queue, with its own inputs; all
        copies' inputs are resolved before any of their writes count, as if the code ran
        once. The writes' version is the first copy's id; each copy's worker holds it once
        that copy has run, so later reads there are local. Returns the copies, first first.
        """
        order = list(dict.fromkeys(workers))
        if not order or KERNEL in order:
            raise ValueError(f"replicated code needs one or more workers, not {order!r}")
        first = self._new_task(order[0], reads, writes, label, kernel_has, None)
        copies = [first] + [
            self._new_task(w, reads, writes, label, kernel_has, None, replica_of=first.id) for w in order[1:]
        ]
        self.copies[first.id] = {copy.worker: copy.id for copy in copies}
        self._publish(first)
        return copies

    def _new_task(self, worker, reads, writes, label, kernel_has, sources, replica_of=None) -> TaskRecord:
        """A task with its inputs resolved, its fetches registered and its place in its
        worker's queue; its writes do not count yet."""
        task = TaskRecord(self._next_id, worker, frozenset(reads), frozenset(writes), label, replica_of=replica_of)
        self._next_id += 1
        self.tasks[task.id] = task
        for name in sorted(task.reads):
            dep = self._dependency(task, name, kernel_has, (sources or {}).get(name))
            if dep is not None:
                task.deps.append(dep)
        for dep in task.remote_deps():
            task.pending_fetch.add(dep.name)
            self._fetchers.setdefault(dep.name, set()).add(task.id)
        if worker != KERNEL:
            self._queues.setdefault(worker, deque()).append(task.id)
        return task

    def _publish(self, task: TaskRecord) -> None:
        """The task's writes are now the current versions; kernel tasks are done at once."""
        for name in task.writes:
            self.latest[name] = task.id
        if task.worker == KERNEL:
            task.state = DONE
            for name in task.writes:
                self.holders[(name, task.id)] = {KERNEL}

    def _dependency(self, task, name, kernel_has, forced_source) -> Dep | None:
        version = self.latest.get(name)
        if version is None:
            if not kernel_has(name):
                return None
            version = self._kernel_version(name)
        holders = self.holders.get((name, version), set())
        producer = self.tasks[version]
        copies = self.copies.get(version, {})
        if (forced_source is not None and forced_source != producer.worker and forced_source not in holders
                and forced_source not in copies):
            raise ValueError(f"{holder_name(forced_source)} does not hold the current value of {name!r}")
        source = forced_source if forced_source is not None else producer.worker
        if forced_source is None and (task.worker in holders or self._copy_will_hold(version, task.worker)):
            source = task.worker
        elif source != KERNEL and (producer.final or copies) and (
                source not in self.workers or (producer.final and source not in holders)):
            alive = sorted(h for h in holders if h in self.workers or h == KERNEL)
            alive += sorted(w for w in copies if w in self.workers and self._copy_will_hold(version, w))
            source = alive[0] if alive else source
        return Dep(name, version, source)

    def _copy_will_hold(self, version: int, worker: int) -> bool:
        """Does ``worker`` run a copy of replicated ``version`` that has not failed?"""
        copy = self.tasks.get(self.copies.get(version, {}).get(worker, -1))
        return copy is not None and copy.state not in (FAILED, CANCELLED)

    def _producer_on(self, version: int, worker: int) -> TaskRecord:
        """The task that makes ``version`` on ``worker``: its copy there, else the producer."""
        copy = self.tasks.get(self.copies.get(version, {}).get(worker, -1))
        return copy if copy is not None else self.tasks[version]

    def _kernel_version(self, name: str) -> int:
        kernel_task = self.submit(KERNEL, (), (name,), label=f"kernel value {name}")
        return kernel_task.id

    def note_kernel_writes(self, names: Iterable[str], label: str = "kernel cell") -> TaskRecord | None:
        """A cell ran in the kernel itself: its writes are the current versions now."""
        names = [n for n in names]
        if not names:
            return None
        return self.submit(KERNEL, (), names, label=label)

    # -- dispatch --------------------------------------------------------------------

    def ready(self) -> tuple[list[TaskRecord], list[TaskRecord]]:
        """Tasks to send to their workers now, and tasks cancelled before being sent."""
        dispatch: list[TaskRecord] = []
        cancelled: list[TaskRecord] = []
        for queue in self._queues.values():
            while queue:
                task = self.tasks[queue[0]]
                if task.final:
                    queue.popleft()
                    continue
                problem = self._missing_input(task)
                if problem is not None:
                    queue.popleft()
                    task.missing_input = problem[0]
                    self._finish(task, CANCELLED, problem[1])
                    cancelled.append(task)
                    continue
                if self._held_for_readers(task):
                    break
                queue.popleft()
                task.state = DISPATCHED
                dispatch.append(task)
        return dispatch, cancelled

    def _missing_input(self, task: TaskRecord) -> tuple[str, str] | None:
        """(name, root cause) of an input that will never come, if any."""
        for dep in task.deps:
            producer = self._producer_on(dep.version, dep.source)
            lost = self.lost.get((dep.name, dep.version))
            if lost is not None and not self._held(dep):
                return dep.name, lost
            if producer.state in (FAILED, CANCELLED) and not self._held(dep):
                return dep.name, producer.reason or f"task #{producer.id} {producer.state}"
            if dep.source not in (KERNEL, task.worker) and dep.source not in self.workers:
                return dep.name, f"{holder_name(dep.source)}, which held it, is gone"
        return None

    def _held(self, dep: Dep) -> bool:
        """Is ``dep`` still to be had: anyone holds it, or (replicated) its source does?"""
        holders = self.holders.get((dep.name, dep.version))
        if dep.version in self.copies:
            return dep.source in (holders or ())
        return bool(holders)

    def _held_for_readers(self, task: TaskRecord) -> bool:
        """Would ``task`` replace a value on its worker that an earlier task still has to fetch from there?"""
        overwritten = task.writes | {d.name for d in task.deps if d.source != task.worker}
        for name in overwritten:
            for reader_id in self._fetchers.get(name, ()):
                if reader_id < task.id and self._fetch_source(self.tasks[reader_id], name) == task.worker:
                    return True
        return False

    @staticmethod
    def _fetch_source(reader: TaskRecord, name: str) -> int | None:
        return next((d.source for d in reader.deps if d.name == name), None)

    # -- progress --------------------------------------------------------------------

    def started(self, task_id: int) -> None:
        task = self.tasks[task_id]
        if not task.final:
            task.state = RUNNING

    def fetched(self, task_id: int, name: str, size: int | None = None) -> None:
        """``task``'s worker now holds its input ``name``."""
        task = self.tasks[task_id]
        self._drop_fetch(task, name)
        dep = next((d for d in task.deps if d.name == name), None)
        if dep is not None:
            self.holders.setdefault((name, dep.version), set()).add(task.worker)
            if size is not None:
                self.sizes[(name, dep.version)] = size

    def pulled(self, name: str, version: int, size: int | None = None) -> None:
        self.holders.setdefault((name, version), set()).add(KERNEL)
        if size is not None:
            self.sizes[(name, version)] = size

    def finished(
        self, task_id: int, ok: bool, reason: str | None = None, sizes: dict[str, int] | None = None,
        written: Iterable[str] | None = None,
    ) -> TaskRecord:
        """``written``: for a failed task, the names it bound before failing; those exist, as
        they would in a notebook, and only readers of the others are cancelled."""
        task = self.tasks[task_id]
        if task.final:
            return task
        self._finish(task, DONE if ok else FAILED, reason)
        for name in task.writes if ok else (written or ()):
            self.holders.setdefault((name, task.version), set()).add(task.worker)
        for name, size in (sizes or {}).items():
            self.sizes[(name, task.version)] = size
        return task

    def cancelled(self, task_id: int, reason: str) -> TaskRecord:
        task = self.tasks[task_id]
        if not task.final:
            self._finish(task, CANCELLED, reason)
        return task

    def missing(self, task_id: int, names: Iterable[str]) -> None:
        """The task ran but did not define some of the names analysis expected."""
        task = self.tasks.get(task_id)
        if task is None:
            for name in names:
                self.holders.pop((name, task_id), None)
            return
        for name in names:
            holders = self.holders.get((name, task.version))
            if holders is not None:
                holders.discard(task.worker)  # a copy elsewhere may still have defined it
                if not holders:
                    del self.holders[(name, task.version)]

    def _finish(self, task: TaskRecord, state: str, reason: str | None) -> None:
        task.state = state
        task.reason = reason
        for name in list(task.pending_fetch):
            self._drop_fetch(task, name)

    def _drop_fetch(self, task: TaskRecord, name: str) -> None:
        task.pending_fetch.discard(name)
        readers = self._fetchers.get(name)
        if readers is not None:
            readers.discard(task.id)
            if not readers:
                del self._fetchers[name]

    def prune(self) -> list[int]:
        """Forget ended tasks nothing refers to any more: not a current version of a name,
        not an input of a task still to run. Returns the ids forgotten."""
        keep = set(self.latest.values())
        for task in self.tasks.values():
            if not task.final:
                keep.add(task.id)
                keep.update(d.version for d in task.deps)
        gone = [tid for tid, task in self.tasks.items() if task.final and tid not in keep]
        for tid in gone:
            del self.tasks[tid]
        for version in [v for v in self.copies if v not in self.tasks]:
            del self.copies[version]
        stale = [key for key in self.holders if key[1] not in self.tasks]
        for key in stale:
            self.holders.pop(key, None)
            self.sizes.pop(key, None)
        for key in [key for key in self.lost if key[1] not in self.tasks]:
            del self.lost[key]
        return gone

    # -- the directory -------------------------------------------------------------------

    def where(self, name: str) -> tuple[int | None, set[int]]:
        """The current version of ``name`` and who holds it (empty until produced)."""
        version = self.latest.get(name)
        if version is None:
            return None, set()
        return version, set(self.holders.get((name, version), set()))

    def names_held_by(self, holder: int) -> list[str]:
        return sorted(n for n, v in self.latest.items() if holder in self.holders.get((n, v), ()))

    def unfinished(self, workers: Iterable[int] | None = None) -> list[TaskRecord]:
        wanted = None if workers is None else set(workers)
        return [
            t for t in self.tasks.values()
            if not t.final and t.worker != KERNEL and (wanted is None or t.worker in wanted)
        ]
