"""``Cluster``: the Python API under the magics; it validates, then delegates.

The ``Supervisor`` owns the worker processes and their links; the ``Scheduler`` owns
the dataflow state and its lock. ``Cluster`` turns calls into submissions; ``Reports``
(reports.py) carries out the scheduler's ``Effects`` once its lock is released, and
handles what workers report.
"""

from __future__ import annotations

import atexit
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .. import protocol as p
from ..errors import ClusterError, SerializationError
from ..plan.analysis import CodeNames
from ..serialize import dumps_value
from . import celltasks, maps, members, moves, parallel_cells
from . import events as ev
from .callbacks import CallbackThread
from .code import WORKER_NAMES, names_of
from .code import label as label_of
from .launchers import LocalLauncher
from .maps import NO_INITIAL
from .processor import Processor
from .records import Submission
from .reports import Reports
from .scheduler import Scheduler
from .sinks import PrintSink, Sink
from .status import status_rows
from .supervisor import Supervisor
from .tasks import Task, TaskGroup

log = logging.getLogger("ipyworkers.kernel")

STARTUP_TIMEOUT = 30.0
INTERRUPT_WAIT = 2.0
PONG_SECONDS = 0.5
"""A live worker answers a heartbeat within milliseconds; one silent this long while it is
interrupted is stopped or stuck in code that holds the interpreter."""

_live_clusters: weakref.WeakSet[Cluster] = weakref.WeakSet()


def live_clusters() -> list[Cluster]:
    """Clusters started in this process and not yet stopped."""
    return list(_live_clusters)


def max_workers() -> int:
    """More workers than this on one machine is almost always a typo (each is a process)."""
    return max(8, 4 * (os.cpu_count() or 1))


class Cluster:
    """A set of worker processes and the work and variables that move between them.

    >>> with Cluster(2) as cluster:
    ...     cluster.run("x = 21", on=1)
    ...     cluster.run("y = x * 2", on=2, block=True)   # x moves 1 -> 2
    ...     cluster.pull("y")
    {'y': 42}
    """

    def __init__(self, n_workers: int | None = None, *, launcher: Any = None,
                 namespace: dict[str, Any] | None = None, startup_timeout: float = STARTUP_TIMEOUT,
                 colors: str = "nocolor", default_sink: Sink | None = None, force: bool = False):
        n = (os.cpu_count() or 1) if n_workers is None else n_workers
        self.launcher = launcher or LocalLauncher()
        members.check_count(n, self.launcher, force, n_workers)
        self._initial = n
        self._members: list[int] = []
        self._launcher_of: dict[int, Any] = {}
        self._force = force
        self.namespace: dict[str, Any] = {} if namespace is None else namespace
        self.hidden_names: Any = set()
        self.startup_timeout = startup_timeout
        self.colors = colors
        self.default_sink = default_sink
        self.events = ev.EventLog()
        self._running = False
        self._callbacks: CallbackThread | None = None
        self._supervisor = Supervisor(self.launcher, n, startup_timeout=startup_timeout, colors=colors,
                                      on_message=self._on_message, on_lost=self._on_lost)
        self._scheduler = Scheduler(self._supervisor.queue, self._kernel_has)
        self._scheduler.canceller = self.cancel
        self._reports = Reports(self._scheduler, self._supervisor, self.events, self._default_sink)
        self._apply = self._reports.apply
        self._supervisor.on_tick = self._on_tick

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def n_workers(self) -> int:
        """How many workers this cluster has (those that died and were not removed included)."""
        return len(self._members) if self._members else self._initial

    @property
    def member_ids(self) -> list[int]:
        """The ids of this cluster's workers: 1..n at start, then as ``add``/``remove`` leave them."""
        return sorted(self._members)

    @property
    def worker_ids(self) -> list[int]:
        return sorted(w for w in self._members if self._supervisor.alive(w))

    @property
    def runtime_dir(self) -> Any:
        """This session's private directory (sockets, logs, cell output past what is kept in
        memory), a ``Path``; removed when the cluster stops (then None)."""
        return self._supervisor.runtime_dir

    @property
    def flow(self):
        """The dataflow state (read it only for inspection)."""
        return self._scheduler.flow

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Cluster:
        """Start the workers; on any failure or interrupt, stop every process started and raise."""
        if self._running:
            raise ClusterError("cluster is already running")
        self._callbacks = CallbackThread()
        self._scheduler._callbacks = self._callbacks
        self._supervisor.open()
        self._members = []
        try:
            self._add_workers(self._supervisor.next_ids(self._initial), self.launcher)
        except BaseException:
            self._supervisor.stop()
            self._callbacks.stop()
            raise
        self._running = True
        _live_clusters.add(self)
        return self

    def _add_workers(self, ids: Iterable[int], launcher: Any) -> None:
        for handle in self._supervisor.spawn(ids, launcher):
            self._scheduler.add_worker(handle.id, handle.peer_address)
            self._launcher_of[handle.id] = launcher
            if handle.id not in self._members:
                self._members.append(handle.id)
            self.events.record(ev.WORKER_STARTED, worker=handle.id, pid=handle.pid)
        table = self._scheduler.peer_addresses()
        for wid in table:
            self._supervisor.post(wid, p.Peers(table))

    def stop(self) -> None:
        """Stop every worker: a polite request, then SIGTERM, then SIGKILL of its group."""
        was_running, self._running = self._running, False
        self._supervisor.stop()
        for wid in list(self._scheduler.progress):
            self._apply(self._scheduler.remove_worker(wid, "the cluster was stopped"))
            self.events.record(ev.WORKER_STOPPED, worker=wid)
        if self._callbacks is not None:
            self._callbacks.stop()
        _live_clusters.discard(self)
        if was_running:
            log.debug("cluster stopped")

    def restart(self, ids: Iterable[int] | int | None = None) -> None:
        """Replace workers with fresh processes (their variables are lost)."""
        self._require_running()
        targets = self.check_ids(ids)
        for wid in targets:
            self._supervisor.retire(wid)
            self._apply(self._scheduler.remove_worker(wid, f"worker {wid} was restarted"))
            self.events.record(ev.WORKER_STOPPED, worker=wid)
        by_launcher: dict[int, tuple[Any, list[int]]] = {}
        for wid in targets:
            launcher = self._launcher_of.get(wid, self.launcher)
            by_launcher.setdefault(id(launcher), (launcher, []))[1].append(wid)
        for launcher, wids in by_launcher.values():
            self._add_workers(wids, launcher)

    def add(self, n: int, launcher: Any = None) -> list[int]:
        """Start ``n`` more workers (with ``launcher``, default the cluster's own); they get
        the next ids. Names held by the other workers stay where they are. Returns the ids."""
        return members.add(self, n, launcher)

    def remove(self, ids: Iterable[int] | int) -> list[str]:
        """Stop these workers for good; their ids are not reused. Returns the names whose
        only copy they held (those are lost: read them first, or ``send`` them elsewhere)."""
        return members.remove(self, ids)

    def join_command(self) -> str | None:
        """The command a host runs to join, once a ``Join`` launcher has started: it names
        the address and the 0600 credentials file, never a secret."""
        return members.join_command(self)

    def interrupt(self, ids: Iterable[int] | int | None = None, wait: float = INTERRUPT_WAIT) -> dict[int, str]:
        """KeyboardInterrupt in what these workers run, or wait for inputs for; they keep their
        variables. Waits up to ``wait`` seconds and returns, for each busy worker, what
        happened: 'interrupted', or why it did not stop."""
        self._require_running()
        busy = self._scheduler.busy_tasks(w for w in self.check_ids(ids) if self._supervisor.alive(w))
        asked = time.monotonic()
        for wid, task in busy.items():
            self._supervisor.interrupt(wid, task.id)
        deadline = asked + wait
        for task in busy.values():
            task.wait_quietly(deadline - time.monotonic())
        return {wid: self._interrupt_outcome(wid, task, asked, wait) for wid, task in busy.items()}

    def _interrupt_outcome(self, wid: int, task: Task, asked: float, wait: float) -> str:
        if task.done():
            return "interrupted"
        row = self._supervisor.row(wid) or {}
        silent = wait >= PONG_SECONDS and not self._supervisor.answered_since(wid, asked)
        if row.get("unresponsive") or silent:
            return (f"worker {wid} is unresponsive (stopped, or stuck in code that holds the interpreter); "
                    f"restart it: %workers restart {wid}")
        return (f"worker {wid} did not stop: its code ignores or catches KeyboardInterrupt; "
                f"restart it to stop it for good (its variables are lost): %workers restart {wid}")

    def cancel(self, task: Any) -> None:
        """Drop a task not yet started (its dependents are cancelled too); interrupt it if it runs.
        Given a map's iterator or a processor, stop the whole map."""
        if not isinstance(task, Task):
            task.cancel()
            return
        self._apply(self._scheduler.cancel(task, self._supervisor.unpost))

    def tasks_of_cell(self, cell: int) -> list[Task]:
        """The tasks notebook cell ``In[cell]`` submitted, while the cluster still tracks them."""
        return celltasks.tasks_of_cell(self, cell)

    def status(self) -> list[dict[str, Any]]:
        """A row per worker: id, pid, host, state, current task, queued count, names held."""
        return status_rows(self.member_ids, self._scheduler.worker_rows(), self._supervisor.row)

    # -- submitting work -----------------------------------------------------------------------

    def run(self, code: str, on: int | Sequence[int], block: bool = False, *, sink: Sink | None = None,
            cell: int | None = None, want_result: bool = True, label: str | None = None) -> Task | TaskGroup:
        """Run ``code`` on worker ``on`` (or on each of a list of workers).

        Names the code reads are brought from wherever their current value lives,
        after the task that produces them. Returns a ``Task`` (a ``TaskGroup`` for a
        list); with ``block=True``, waits and raises the remote error, if any.
        """
        self._require_running()
        ids = self.check_ids(on, allow_all=False)
        reads, writes = self._names(names_of(code))
        kernel_values = self._kernel_values(reads)
        subs = [Submission(wid, code, reads, writes, label or label_of(code), sink or self._default_sink(), cell,
                           want_result, kernel_values=kernel_values) for wid in ids]
        tasks = self._submit(subs)
        handle: Task | TaskGroup = tasks[0] if isinstance(on, int) else TaskGroup(tasks)
        return self._finish(handle, block)

    def run_parallel(self, cell: str, *, default: int | None = None, auto: bool = False,
                     workers: Sequence[int] | None = None, block: bool = False, sink: Sink | None = None,
                     cell_number: int | None = None) -> TaskGroup:
        """Run a cell whose statements carry ``# @ID`` tags, each on its worker; the
        variables they share move between workers by themselves. Untagged statements
        before the first tag are setup: each worker that reads what they bind runs them.

        ``auto=True``: place the statements on ``workers`` (default: all) by their
        dependencies and the times earlier runs measured; tags pin their statements."""
        self._require_running()
        group = parallel_cells.run(self, cell, default=default, auto=auto, workers=workers,
                                   sink=sink or self._default_sink(), cell_number=cell_number)
        return self._finish(group, block)

    def plan_parallel(self, cell: str, *, default: int | None = None, auto: bool = False,
                      workers: Sequence[int] | None = None) -> str:
        """The per-worker programs of a ``%%parallel`` cell, with their sends and receives
        (and, with ``auto``, the predicted makespan); runs nothing."""
        return parallel_cells.show(self, cell, default=default, auto=auto, workers=workers)

    def export_parallel(self, cell: str, directory: str, *, default: int | None = None, auto: bool = False,
                        workers: Sequence[int] | None = None) -> list:
        """Write the cell's program as ``worker_<k>.py`` per worker plus ``run.py``, which
        runs it on a new cluster outside Jupyter (``python DIR/run.py``); returns the paths."""
        return parallel_cells.export_cell(self, cell, directory, default=default, auto=auto, workers=workers)

    # -- function calls and maps (kernel/maps.py, kernel/processor.py) ------------------------------

    def submit(self, fn: Callable, *args: Any, on: int | Sequence[int] | None = None, **kwargs: Any) -> Task:
        """``fn(*args, **kwargs)`` (a plain call, no IPython cell) on the live worker with the
        fewest open tasks, among ``on`` if given; returns its ``Task``."""
        return maps.submit(self, fn, args, kwargs, on)

    def as_completed(self, tasks: Iterable[Task], timeout: float | None = None):
        """Yield ``tasks`` as they end, first ended first."""
        return maps.as_completed(tasks, timeout)

    def map(self, fn: Callable, *iterables: Iterable, chunksize: int | None = None,
            on: Sequence[int] | None = None, progress: Any = None) -> list:
        """``[fn(*xs) for xs in zip(*iterables)]`` on the workers, in input order, read as it
        goes in batches (``chunksize`` items, or chosen by itself). Raises the first error with
        its remote traceback. ``progress``: None (a bar in a notebook), False, or ``f(done, total)``."""
        return maps.map_list(self, fn, iterables, what="map()", chunksize=chunksize, on=on, progress=progress)

    def imap(self, fn: Callable, *iterables: Iterable, chunksize: int | None = None,
             on: Sequence[int] | None = None, progress: Any = None) -> maps.MapResults:
        """Like ``map``, but the results come as an iterator, in input order, as they are ready."""
        return maps.imap(self, fn, iterables, what="imap()", chunksize=chunksize, on=on, progress=progress)

    def imap_unordered(self, fn: Callable, *iterables: Iterable, chunksize: int | None = None,
                       on: Sequence[int] | None = None, progress: Any = None) -> maps.MapResults:
        """Like ``imap``, but each result comes as soon as it is ready, in any order."""
        return maps.imap(self, fn, iterables, what="imap_unordered()", ordered=False, chunksize=chunksize,
                         on=on, progress=progress)

    def starmap(self, fn: Callable, iterable: Iterable, chunksize: int | None = None, *,
                on: Sequence[int] | None = None, progress: Any = None) -> list:
        """``[fn(*args) for args in iterable]`` on the workers, in input order."""
        return maps.map_list(self, fn, [iterable], what="starmap()", star=True, chunksize=chunksize, on=on,
                             progress=progress)

    def mapreduce(self, mapper: Callable, reducer: Callable, *iterables: Iterable, chunksize: int | None = None,
                  on: Sequence[int] | None = None, progress: Any = None, initial: Any = NO_INITIAL) -> Any:
        """``reduce(reducer, map(mapper, *iterables))``, folded on the workers as results come,
        then across workers (``reducer`` must be associative and commutative). ``initial``
        starts the fold, as in ``functools.reduce``."""
        return maps.mapreduce(self, mapper, reducer, iterables, initial=initial, chunksize=chunksize, on=on,
                              progress=progress)

    def processor(self, mapper: Callable, collector: Callable | None = None, *, chunksize: int | None = None,
                  on: Sequence[int] | None = None, progress: Any = None) -> Processor:
        """``with cluster.processor(f, collector=g) as p: p.add_task(x)``: ``f(x)`` on the workers,
        each result to ``g`` here; leaving the ``with`` waits for all, raises the first error."""
        return Processor(self, mapper, collector, chunksize=chunksize, on=on, progress=progress)

    def _names(self, names: CodeNames) -> tuple[frozenset[str], frozenset[str]]:
        """Reads and writes as the dataflow tracks them: builtins only once rebound, and the
        names each worker provides for itself never."""
        rebound = self._scheduler.defined(names.builtin_reads)
        reads = (names.reads | rebound) - WORKER_NAMES
        return frozenset(reads), frozenset((names.writes | names.deletes) - WORKER_NAMES)

    def _kernel_values(self, reads: Iterable[str]) -> dict[str, Any]:
        """The kernel values a task may read, pickled now, outside every lock; a value that
        will not pickle stands as its error, which fails the task that needs it."""
        out: dict[str, Any] = {}
        for name in self._scheduler.kernel_sources(reads):
            try:
                out[name] = dumps_value(name, self.namespace[name])
            except SerializationError as exc:
                out[name] = exc
        return out

    def _submit(self, subs: list[Submission]) -> list[Task]:
        tasks, effects = self._scheduler.submit(subs)
        self._apply(effects)
        return tasks

    def _finish(self, handle: Task | TaskGroup, block: bool) -> Task | TaskGroup:
        if block:
            self._wait_interruptibly(handle)
            if handle.error is not None:
                raise handle.error
        return handle

    def _wait_interruptibly(self, handle: Task | TaskGroup, timeout: float | None = None) -> None:
        """Wait; an interrupt (Ctrl-C, the stop button) interrupts the code on the workers."""
        try:
            handle.wait(timeout)
        except KeyboardInterrupt:
            tasks = handle.tasks if isinstance(handle, TaskGroup) else [handle]
            workers = sorted({t.worker for t in tasks if not t.done() and self._supervisor.alive(t.worker)})
            if workers:
                self.interrupt(workers, wait=0)
            raise

    def _kernel_has(self, name: str) -> bool:
        return name in self.namespace and name not in self.hidden_names

    def _default_sink(self) -> Sink:
        return self.default_sink if self.default_sink is not None else PrintSink()

    # -- explicit moves ------------------------------------------------------------------------

    def push(self, values: Mapping[str, Any], to: int | Sequence[int], block: bool = True) -> TaskGroup:
        """Put kernel-side values into workers' namespaces (they become the current values).
        Interrupted, it cancels what has not gone out yet: each worker gets a whole value or none."""
        return moves.push(self, values, to, block)

    def send(self, names: Iterable[str], frm: int, to: int | Sequence[int], block: bool = False) -> TaskGroup:
        """Copy names from worker ``frm`` to workers ``to``, directly between them."""
        return moves.send(self, names, frm, to, block)

    def pull(self, names: str | Iterable[str], frm: int | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Bring names into the kernel namespace (after the tasks that produce them) and return
        them. Fails at once if the worker it pulls from dies."""
        return moves.pull(self, names, frm, timeout)

    def who_has(self, names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """For each name: who holds its current value, its size, and the task that made it."""
        return self._scheduler.who_has(names)

    # -- waiting ----------------------------------------------------------------------------------

    def wait(self, ids: Iterable[int] | int | None = None, timeout: float | None = None) -> None:
        """Block until the work in flight on these workers ends; raise the first error."""
        self._require_running()
        group = TaskGroup(self.unfinished(self.check_ids(ids)))
        self._wait_interruptibly(group, timeout)
        if group.error is not None:
            raise group.error

    def unfinished(self, ids: Iterable[int] | None = None) -> list[Task]:
        """Tasks submitted and not yet ended, on these workers."""
        return self._scheduler.unfinished(ids)

    def tasks(self) -> list[Task]:
        with self._scheduler.lock:
            return list(self._scheduler.tasks.values())

    def note_kernel_cell(self, code: str) -> None:
        """Code ran in the kernel itself: the names it bound there are now the current values."""
        bound = [n for n in names_of(code).writes if self._kernel_has(n) and n not in WORKER_NAMES]
        if bound:
            self._scheduler.note_kernel_writes(bound)

    # -- what workers report (reader threads) ---------------------------------------------------------

    def _on_message(self, worker: int, msg: Any, parts: list) -> None:
        self._reports.on_message(worker, msg, parts)

    def _on_tick(self, now: float) -> None:
        if self._scheduler.tell_idle_news(now):
            self._supervisor.pump()

    def _on_lost(self, worker: int, reason: str) -> None:
        self._apply(self._scheduler.remove_worker(worker, reason))
        self._supervisor.forget(worker)
        self.events.record(ev.WORKER_DIED, worker=worker, reason=reason.split("(", 1)[-1].rstrip(")"))

    # -- checks ----------------------------------------------------------------------------------------

    def _require_running(self) -> None:
        if not self._running:
            raise ClusterError("no workers are running: start them first (%workers start N)")

    def check_ids(self, ids: Iterable[int] | int | None, allow_all: bool = True) -> list[int]:
        """Validate worker ids: every one must name a worker of this cluster (and, where
        work is sent, a live one)."""
        known = self._members or range(1, self._initial + 1)  # sorted only where shown
        if ids is None:
            if not allow_all:
                raise ClusterError("name at least one worker")
            return sorted(known)
        values = [ids] if isinstance(ids, int) else list(ids)
        if not values:
            raise ClusterError("name at least one worker")
        bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool) or v not in known]
        if bad:
            raise ClusterError(f"no worker {bad[0]!r}: this cluster has workers {members.ranges(sorted(known))}")
        dead = [v for v in values if not self._supervisor.alive(v)]
        if dead and not allow_all:
            raise ClusterError(f"worker {dead[0]} is dead: restart it first (%workers restart {dead[0]})")
        return list(dict.fromkeys(values))

    def live_workers(self, on: Sequence[int] | None = None) -> list[int]:
        """The live workers among ``on`` (all, if None)."""
        return [w for w in self.check_ids(on, allow_all=on is None) if self._supervisor.alive(w)]


@atexit.register
def _stop_all() -> None:
    for cluster in list(_live_clusters):
        try:
            cluster.stop()
        except Exception:
            log.exception("stopping a cluster at exit failed")
