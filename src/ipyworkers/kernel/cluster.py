"""The coordinator: starts workers, submits tasks, moves variables, logs events.

``Cluster`` is the Python API under the magics. It lives in the kernel (or any
Python process). A reader thread per worker handles what workers report; all
state changes happen under one lock, and the dataflow rules live in
``dataflow.Dataflow``, which does no I/O.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import os
import shutil
import socket
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import wire
from ..errors import ClusterError, RemoteError, TaskCancelled, TaskFailed, WorkerStartError
from ..plan import parallel
from ..plan.analysis import CodeNames, analyze
from ..plan.dataflow import CANCELLED, DONE, FAILED, KERNEL, RUNNING, Dataflow, TaskRecord, holder_name
from . import events as ev
from .launchers import LocalLauncher, WorkerProcess
from .mapreduce import NO_INITIAL, map_items, map_reduce
from .sinks import PrintSink, Sink
from .tasks import Task, TaskGroup

STARTUP_TIMEOUT = 30.0
STOP_GRACE = 1.0
MONITOR_SECONDS = 0.2
PRUNE_EVERY = 1000
WORKER_NAMES = frozenset({"worker_id", "n_workers", "send", "recv", "close", "stream"})
"""Names every worker defines itself; like builtins, they move only once code rebinds them."""

_live_clusters: weakref.WeakSet[Cluster] = weakref.WeakSet()


def live_clusters() -> list[Cluster]:
    """Clusters started in this process and not yet stopped."""
    return list(_live_clusters)






@dataclass
class WorkerHandle:
    id: int
    process: WorkerProcess
    conn: wire.Connection
    pid: int
    host: str
    peer_address: str
    state: str = "idle"
    current: int | None = None
    reader: threading.Thread | None = None
    lost: bool = False
    tasks_done: int = field(default=0)


@functools.lru_cache(maxsize=1024)
def names_of(code: str) -> CodeNames:
    """What ``code`` reads and writes once IPython syntax is turned into Python (cached:
    the same code is often submitted many times)."""
    return analyze(_transform(code))


def _transform(code: str) -> str:
    """IPython's own cell transforms (magics, ``!cmd``), so analysis sees Python."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return code
    try:
        return TransformerManager().transform_cell(code)
    except Exception:
        return code


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
                 colors: str = "nocolor", default_sink: Sink | None = None):
        n = (os.cpu_count() or 1) if n_workers is None else n_workers
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ClusterError(f"number of workers must be a whole number >= 1, not {n_workers!r}")
        self.n_workers = n
        self.launcher = launcher or LocalLauncher()
        self.namespace: dict[str, Any] = {} if namespace is None else namespace
        self.hidden_names: set[str] = set()
        self.startup_timeout = startup_timeout
        self.colors = colors
        self.default_sink = default_sink
        self.events = ev.EventLog()
        self.flow = Dataflow()
        self._lock = threading.RLock()
        self._workers: dict[int, WorkerHandle] = {}
        self._tasks: dict[int, Task] = {}
        self._pulls: dict[int, Future] = {}
        self._req_ids = itertools.count(1)
        self._runtime_dir: Path | None = None
        self._listener: socket.socket | None = None
        self._key = b""
        self._running = False
        self._stopping = False
        self._monitor: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def worker_ids(self) -> list[int]:
        return sorted(self._workers)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Cluster:
        """Start the workers; on any failure, stop every process started and raise."""
        if self._running:
            raise ClusterError("cluster is already running")
        self._key = os.urandom(32)
        self._runtime_dir = Path(tempfile.mkdtemp(prefix="ipyworkers-"))
        os.chmod(self._runtime_dir, 0o700)
        try:
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind(str(self._runtime_dir / "control.sock"))
            self._listener.listen(max(16, self.n_workers))
            self._stopping = False
            self._spawn(range(1, self.n_workers + 1))
        except BaseException:
            self._close_runtime()
            raise
        self._running = True
        _live_clusters.add(self)
        self._monitor = threading.Thread(target=self._watch_processes, name="ipyworkers-monitor", daemon=True)
        self._monitor.start()
        return self

    def _spawn(self, ids: Iterable[int]) -> None:
        address = str(self._runtime_dir / "control.sock")
        started: dict[int, WorkerProcess] = {}
        try:
            for wid in ids:
                started[wid] = self.launcher.launch(
                    wid, self.n_workers, address, self._key, self._runtime_dir, self.colors
                )
            handles = self._await_hellos(started)
        except BaseException:
            for process in started.values():
                process.terminate(grace=0.2)
            raise
        for handle in handles:
            self._workers[handle.id] = handle
            self.flow.add_worker(handle.id)
            handle.reader = threading.Thread(
                target=self._read_worker, args=(handle,), name=f"ipyworkers-reader-{handle.id}", daemon=True
            )
            handle.reader.start()
            self.events.record(ev.WORKER_STARTED, worker=handle.id, pid=handle.pid)
        self._announce_peers()

    def _announce_peers(self) -> None:
        """Every worker learns where the others listen, for streams between them."""
        table = {h.id: h.peer_address for h in self._workers.values() if not h.lost}
        for handle in self._workers.values():
            try:
                handle.conn.send(("peers", table))
            except wire.WireError:
                pass

    def _await_hellos(self, started: dict[int, WorkerProcess]) -> list[WorkerHandle]:
        deadline = time.monotonic() + self.startup_timeout
        waiting = dict(started)
        handles: list[WorkerHandle] = []
        self._listener.settimeout(0.05)
        try:
            while waiting:
                for wid, process in waiting.items():
                    if process.poll() is not None:
                        raise WorkerStartError(
                            f"worker {wid} exited during startup ({process.exit_description()}); "
                            f"its last output:\n{process.log_tail()}"
                        )
                if time.monotonic() > deadline:
                    late = ", ".join(map(str, sorted(waiting)))
                    tail = waiting[min(waiting)].log_tail()
                    raise WorkerStartError(
                        f"worker(s) {late} did not report ready within {self.startup_timeout} s; "
                        f"last output:\n{tail}"
                    )
                handle = self._accept_one(waiting)
                if handle is not None:
                    handles.append(handle)
                    del waiting[handle.id]
        except BaseException:
            for handle in handles:
                handle.conn.close()
            raise
        finally:
            self._listener.settimeout(None)
        return handles

    def _accept_one(self, waiting: dict[int, WorkerProcess]) -> WorkerHandle | None:
        try:
            conn = wire.accept_authenticated(self._listener, self._key, timeout=5.0)
        except TimeoutError:
            return None
        except wire.AuthenticationError:
            return None
        try:
            conn.sock.settimeout(5.0)
            (kind, info), _ = conn.recv()
            conn.sock.settimeout(None)
        except (wire.WireError, OSError, ValueError):
            conn.close()
            return None
        process = waiting.get(info.get("id")) if kind == "hello" else None
        if process is None or process.pid != info.get("pid"):
            conn.close()
            return None
        return WorkerHandle(info["id"], process, conn, info["pid"], info["host"], info["peer"])

    def stop(self) -> None:
        """Stop every worker: a polite request, then SIGTERM, then SIGKILL of its group."""
        with self._lock:
            if not self._running and not self._workers:
                self._close_runtime()
                return
            self._stopping = True
            handles = list(self._workers.values())
        for handle in handles:
            handle.state = "stopping"
            try:
                handle.conn.send(("shutdown",))
            except wire.WireError:
                pass
        deadline = time.monotonic() + STOP_GRACE
        for handle in handles:
            handle.process.wait(max(0.0, deadline - time.monotonic()))
        for handle in handles:
            self._retire(handle, "the cluster was stopped")
        self._running = False
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(timeout=2)
        self._close_runtime()
        _live_clusters.discard(self)

    def _retire(self, handle: WorkerHandle, reason: str) -> None:
        handle.state = "stopping"
        handle.process.terminate(grace=STOP_GRACE)
        handle.conn.close()
        if handle.reader is not None and handle.reader is not threading.current_thread():
            handle.reader.join(timeout=2)
        with self._lock:
            if self._workers.get(handle.id) is handle:
                del self._workers[handle.id]
                failed = self.flow.remove_worker(handle.id, reason)
                self._fail_tasks(failed, reason)
                self._dispatch_ready()
        self.events.record(ev.WORKER_STOPPED, worker=handle.id)

    def _close_runtime(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runtime_dir is not None:
            shutil.rmtree(self._runtime_dir, ignore_errors=True)
            self._runtime_dir = None

    def restart(self, ids: Iterable[int] | int | None = None) -> None:
        """Replace workers with fresh processes (their variables are lost)."""
        self._require_running()
        targets = self._check_ids(ids)
        for wid in targets:
            handle = self._workers.get(wid)
            if handle is not None:
                self._retire(handle, f"worker {wid} was restarted")
        with self._lock:
            self._spawn(targets)

    def interrupt(self, ids: Iterable[int] | int | None = None) -> list[int]:
        """KeyboardInterrupt in the code running on these workers; they keep their variables.
        Returns the workers that were busy."""
        self._require_running()
        busy = []
        for wid in self._check_ids(ids):
            handle = self._workers.get(wid)
            if handle is not None and not handle.lost and handle.current is not None:
                busy.append(wid)
                try:
                    handle.conn.send(("interrupt", None))
                except wire.WireError:
                    pass
        return busy

    def status(self) -> list[dict[str, Any]]:
        """A row per worker: id, pid, host, state, current task, names held."""
        with self._lock:
            rows = []
            for wid in range(1, self.n_workers + 1):
                handle = self._workers.get(wid)
                if handle is None:
                    rows.append({"id": wid, "pid": None, "host": "", "state": "dead", "task": None, "names": []})
                    continue
                task = self._tasks.get(handle.current) if handle.current else None
                queued = sum(1 for t in self.flow.unfinished([wid]) if t.state != RUNNING)
                rows.append({
                    "id": wid, "pid": handle.pid, "host": handle.host,
                    "state": "dead" if handle.lost else ("busy" if handle.current else "idle"),
                    "task": None if task is None else f"#{task.id} {task.label}",
                    "queued": queued,
                    "names": self.flow.names_held_by(wid),
                })
            return rows

    def _watch_processes(self) -> None:
        """Worker death is usually seen as EOF on its link; this catches the rest
        (say, a forked child of user code keeping the socket open)."""
        while self._running and not self._stopping:
            time.sleep(MONITOR_SECONDS)
            for handle in list(self._workers.values()):
                if not handle.lost and handle.state != "stopping" and handle.process.poll() is not None:
                    self._on_worker_lost(handle)

    # -- submitting work -------------------------------------------------------------------

    def run(self, code: str, on: int | Sequence[int], block: bool = False, *, sink: Sink | None = None,
            cell: int | None = None, want_result: bool = True, label: str | None = None) -> Task | TaskGroup:
        """Run ``code`` on worker ``on`` (or on each of a list of workers).

        Names the code reads are brought from wherever their current value lives,
        after the task that produces them. Returns a ``Task`` (a ``TaskGroup`` for a
        list); with ``block=True``, waits and raises the remote error, if any.
        """
        self._require_running()
        ids = self._check_ids(on, allow_all=False)
        names = names_of(code)
        label = label or _label(code)
        with self._lock:
            tasks = [self._submit(wid, code, names, sink, cell, want_result, label) for wid in ids]
            self._dispatch_ready()
        handle: Task | TaskGroup = tasks[0] if isinstance(on, int) else TaskGroup(tasks)
        if block:
            handle.wait()
            if handle.error is not None:
                raise handle.error
        return handle

    def run_parallel(self, cell: str, *, default: int | None = None, block: bool = False,
                     sink: Sink | None = None, cell_number: int | None = None) -> TaskGroup:
        """Run a cell whose statements carry ``# @ID`` tags, each on its worker; the
        variables they share move between workers by themselves."""
        self._require_running()
        groups = parallel.split(_transform(cell), self._check_ids(None), default)
        with self._lock:
            tasks = [
                self._submit(g.worker, g.code, analyze(g.source), sink, cell_number, False, _label(g.source))
                for g in groups
            ]
            self._dispatch_ready()
        group = TaskGroup(tasks)
        if block:
            group.wait()
            if group.error is not None:
                raise group.error
        return group

    def apply(self, worker: int, call: dict, payload: dict[str, list], label: str,
              sink: Sink | None = None) -> Task:
        """A function call on ``worker`` (used by ``map``/``mapreduce``); queued behind its
        cells like any task, drawn on the timeline, reads and writes no variables."""
        with self._lock:
            self._check_ids(worker, allow_all=False)
            task = self._submit(worker, None, CodeNames(), sink, None, True, label)
            task.call, task.payload = call, payload
            self._dispatch_ready()
        return task

    def map(self, fn, items, *, on: Sequence[int] | None = None, progress: Any = None) -> list:
        """``[fn(item) for item in items]`` on the workers, in input order; each worker gets
        a new item as it finishes one. Raises the first error, with its remote traceback.
        ``progress``: None for a bar in a notebook, False for none, or ``callable(done, total)``."""
        return map_items(self, fn, items, on=on, progress=progress)

    def mapreduce(self, mapper, reducer, items, *, on: Sequence[int] | None = None, progress: Any = None,
                  initial: Any = NO_INITIAL) -> Any:
        """``reduce(reducer, map(mapper, items))``: each worker folds its own results with
        ``reducer`` as they come, then the kernel folds the partials, so ``reducer`` must be
        associative and commutative. ``initial`` starts the fold, as in ``functools.reduce``."""
        return map_reduce(self, mapper, reducer, items, on=on, progress=progress, initial=initial)

    def plan_parallel(self, cell: str, *, default: int | None = None) -> str:
        """The per-worker programs of a tagged cell, with their sends and receives; runs nothing."""
        workers = self._check_ids(None) if self._running else list(range(1, self.n_workers + 1))
        groups = parallel.split(_transform(cell), workers, default)
        with self._lock:
            kernel_names = {n for n in self.namespace if self._kernel_has(n)}
            steps = parallel.plan(groups, self.flow, kernel_names)
        return parallel.render(steps, workers)

    def _submit(self, worker: int, code: str | None, names: CodeNames, sink: Sink | None, cell: int | None,
                want_result: bool, label: str, sources: dict[str, int] | None = None) -> Task:
        provided = (names.reads | names.builtin_reads) & WORKER_NAMES
        reads = (names.reads - WORKER_NAMES) | ((names.builtin_reads | provided) & self.flow.latest.keys())
        record = self.flow.submit(
            worker, reads, names.writes | names.deletes, label=label,
            kernel_has=self._kernel_has, sources=sources,
        )
        task = Task(record.id, worker, label, sink if sink is not None else self._default_sink(),
                    code=code, cell=cell, want_result=want_result)
        self._tasks[record.id] = task
        if record.id % PRUNE_EVERY == 0:
            for gone in self.flow.prune():
                self._tasks.pop(gone, None)
        self.events.record(ev.TASK_QUEUED, worker=worker, task=record.id, label=label,
                           code="\n".join((code or "").strip("\n").splitlines()[:4]),
                           reads=sorted(reads), writes=sorted(record.writes))
        try:
            for dep in record.kernel_deps():
                task.kernel_parts[dep.name] = wire.dumps_value(dep.name, self.namespace[dep.name])
        except wire.SerializationError as exc:
            self.flow.finished(record.id, False, f"task #{record.id} could not start ({exc})")
            self._end_task(task, FAILED, error=TaskFailed(worker, record.id, str(exc)))
        return task

    def _kernel_has(self, name: str) -> bool:
        return name in self.namespace and name not in self.hidden_names

    def _default_sink(self) -> Sink:
        return self.default_sink if self.default_sink is not None else PrintSink()

    def _dispatch_ready(self) -> None:
        """Send every task the dataflow allows now (call with the lock held)."""
        dispatch, cancelled = self.flow.ready()
        for record in cancelled:
            self._on_cancelled_before_dispatch(record)
        for record in dispatch:
            self._send_task(record)

    def _send_task(self, record: TaskRecord) -> None:
        task = self._tasks[record.id]
        handle = self._workers.get(record.worker)
        spec = {
            "id": record.id,
            "code": task.code,
            "cell": task.cell,
            "deps": [(d.name, d.version, d.source) for d in record.deps],
            "peers": {d.source: self._workers[d.source].peer_address for d in record.remote_deps()
                      if d.source in self._workers},
            "writes": sorted(record.writes),
            "want_result": task.want_result,
        }
        spec["kernel_values"], parts = wire.pack_values(task.kernel_parts)
        spec["payload"], payload_parts = wire.pack_values(task.payload)
        spec["payload_parts"] = len(payload_parts)
        spec["apply"] = task.call
        parts += payload_parts
        task.kernel_parts, task.payload = {}, {}
        try:
            handle.conn.send(("run", spec), parts)
        except (wire.WireError, AttributeError):
            return
        task.state = record.state

    def _on_cancelled_before_dispatch(self, record: TaskRecord) -> None:
        task = self._tasks[record.id]
        message = f"input {record.missing_input!r} is unavailable because {record.reason}"
        self._end_task(task, CANCELLED, error=TaskCancelled(record.worker, record.id, message))
        handle = self._workers.get(record.worker)
        if handle is not None and not handle.lost:
            try:
                handle.conn.send(("forget", record.id, record.reason))
            except wire.WireError:
                pass

    def _end_task(self, task: Task, state: str, result: Any = None, error: BaseException | None = None,
                  at: float | None = None) -> None:
        if not task._finish(state, result, error, at):
            return
        if isinstance(error, (TaskCancelled, TaskFailed)):
            task.sink.note(task.worker, str(error))
        kind = {DONE: ev.TASK_FINISHED, FAILED: ev.TASK_FAILED, CANCELLED: ev.TASK_CANCELLED}[state]
        self.events.record(kind, worker=task.worker, task=task.id, at=task.finished_at,
                           error=None if error is None else str(error))

    def _fail_tasks(self, records: Iterable[TaskRecord], reason: str) -> None:
        for record in records:
            task = self._tasks.get(record.id)
            if task is not None:
                self._end_task(task, FAILED, error=TaskFailed(record.worker, record.id, reason))

    # -- explicit moves ----------------------------------------------------------------------

    def push(self, values: Mapping[str, Any], to: int | Sequence[int], block: bool = True) -> TaskGroup:
        """Put kernel-side values into workers' namespaces (they become the current values)."""
        self._require_running()
        ids = self._check_ids(to, allow_all=False)
        names = list(values)
        _check_names(names)
        with self._lock:
            self.namespace.update(values)
            self.flow.note_kernel_writes(names, label="push")
            group = self._moves(names, ids, KERNEL, "push")
        return _finish_move(group, block)

    def send(self, names: Iterable[str], frm: int, to: int | Sequence[int], block: bool = False) -> TaskGroup:
        """Copy names from worker ``frm`` to workers ``to``, directly between them."""
        self._require_running()
        (source,) = self._check_ids(frm, allow_all=False)
        ids = self._check_ids(to, allow_all=False)
        names = list(names)
        _check_names(names)
        with self._lock:
            for name in names:
                self._require_defined(name)
            try:
                group = self._moves(names, [i for i in ids if i != source], source, "send")
            except ValueError as exc:
                raise ClusterError(str(exc)) from None
        return _finish_move(group, block)

    def _moves(self, names: list[str], ids: list[int], source: int, verb: str) -> TaskGroup:
        code_names = CodeNames(reads=frozenset(names))
        label = f"{verb} {', '.join(names)}"
        tasks = [self._submit(wid, None, code_names, None, None, False, label, sources=dict.fromkeys(names, source))
                 for wid in ids]
        self._dispatch_ready()
        return TaskGroup(tasks)

    def pull(self, names: str | Iterable[str], frm: int | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Bring names into the kernel namespace (after the tasks that produce them) and return them."""
        self._require_running()
        names = [names] if isinstance(names, str) else list(names)
        _check_names(names)
        if frm is not None:
            self._check_ids(frm, allow_all=False)
        requests = []
        with self._lock:
            for name in names:
                version, source = self._pull_source(name, frm)
                req = next(self._req_ids)
                future: Future = Future()
                self._pulls[req] = future
                requests.append((name, version, source, req, future))
                self._workers[source].conn.send(("get", req, name, version))
        values = {}
        for name, version, source, req, future in requests:
            values[name] = self._await_pull(name, version, source, req, future, timeout)
        self.namespace.update(values)
        return values

    def _pull_source(self, name: str, frm: int | None) -> tuple[int, int]:
        version = self._require_defined(name)
        producer = self.flow.tasks[version]
        _, holders = self.flow.where(name)
        if producer.worker == KERNEL and frm is None:
            raise ClusterError(f"{name!r} already lives in the kernel")
        candidates = [producer.worker, *sorted(holders)]
        if frm is not None:
            if frm not in candidates:
                raise ClusterError(f"worker {frm} does not hold the current value of {name!r}")
            candidates = [frm]
        alive = [c for c in candidates if c in self._workers and not self._workers[c].lost]
        if not alive:
            raise ClusterError(f"{name!r} was lost: {holder_name(producer.worker)} is gone")
        return version, alive[0]

    def _await_pull(self, name: str, version: int, source: int, req: int, future: Future,
                    timeout: float | None) -> Any:
        started = time.monotonic()
        try:
            status, info, parts = future.result(timeout)
        except TimeoutError:
            raise TimeoutError(f"{name!r} did not arrive from worker {source} within {timeout} s") from None
        finally:
            self._pulls.pop(req, None)
        if status == "failed":
            raise TaskCancelled(source, version, f"{name!r} is unavailable because {info}")
        if status == "error":
            raise wire.SerializationError(info)
        if status == "missing":
            raise NameError(f"name {name!r} is not defined on worker {source}")
        value = wire.loads_value(name, parts, "the kernel")
        size = sum(len(p) for p in parts)
        with self._lock:
            self.flow.pulled(name, version, size)
        ended = time.monotonic()
        self.events.record(ev.TRANSFER, worker=KERNEL, at=ended, name=name, source=source, dest=KERNEL,
                           bytes=size, start=max(info, started), end=ended, version=version)
        return value

    def _require_defined(self, name: str) -> int:
        version, _ = self.flow.where(name)
        if version is None:
            raise NameError(f"name {name!r} is not defined on any worker")
        return version

    def who_has(self, names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """For each name: who holds its current value, its size, and the task that made it."""
        with self._lock:
            wanted = sorted(self.flow.latest) if names is None else list(names)
            out = {}
            for name in wanted:
                version, holders = self.flow.where(name)
                if version is None:
                    out[name] = {"holders": [], "size": None, "task": None, "state": "undefined"}
                    continue
                producer = self.flow.tasks[version]
                out[name] = {
                    "holders": sorted(holders),
                    "size": self.flow.sizes.get((name, version)),
                    "task": version,
                    "state": producer.state,
                }
            return out

    # -- waiting -------------------------------------------------------------------------------

    def wait(self, ids: Iterable[int] | int | None = None, timeout: float | None = None) -> None:
        """Block until the work in flight on these workers ends; raise the first error."""
        self._require_running()
        targets = self._check_ids(ids)
        group = TaskGroup(self.unfinished(targets))
        group.wait(timeout)
        if group.error is not None:
            raise group.error

    def unfinished(self, ids: Iterable[int] | None = None) -> list[Task]:
        """Tasks submitted and not yet ended, on these workers."""
        with self._lock:
            return [self._tasks[r.id] for r in self.flow.unfinished(ids)]

    def note_kernel_cell(self, code: str) -> None:
        """Code ran in the kernel itself: the names it bound there are now the current values."""
        names = names_of(code)
        bound = [n for n in names.writes if self._kernel_has(n)]
        if bound:
            with self._lock:
                self.flow.note_kernel_writes(bound)

    def tasks(self) -> list[Task]:
        with self._lock:
            return list(self._tasks.values())

    # -- what workers report -------------------------------------------------------------------

    def _read_worker(self, handle: WorkerHandle) -> None:
        try:
            while True:
                msg, parts = handle.conn.recv()
                self._on_message(handle, msg, parts)
        except (wire.WireError, OSError, EOFError):
            pass
        self._on_worker_lost(handle)

    def _on_message(self, handle: WorkerHandle, msg: tuple, parts: list) -> None:
        kind = msg[0]
        if kind in ("started", "finished", "unrun", "fetched") and msg[1] not in self._tasks:
            return
        if kind == "stream":
            self._task_sink(msg[1]).stream(handle.id, msg[2], msg[3])
        elif kind == "display":
            self._task_sink(msg[1]).display(handle.id, msg[2], msg[3], msg[4], msg[5])
        elif kind == "clear":
            self._task_sink(msg[1]).clear(handle.id, msg[2])
        elif kind == "started":
            self._on_started(handle, msg[1], msg[2])
        elif kind == "finished":
            self._on_finished(handle, msg[1], msg[2], parts)
        elif kind == "unrun":
            self._on_unrun(handle, *msg[1:])
        elif kind == "fetched":
            self._on_fetched(handle, *msg[1:])
        elif kind == "stream-stats":
            _, source, count, size, t0, t1 = msg
            self.events.record(ev.TRANSFER, worker=handle.id, at=t1, name="stream", source=source,
                               dest=handle.id, bytes=size, start=t0, end=t1, count=count)
        elif kind == "value":
            future = self._pulls.get(msg[1])
            if future is not None:
                future.set_result((msg[2], msg[3], parts))

    def _task_sink(self, task_id: int | None) -> Sink:
        task = self._tasks.get(task_id) if task_id is not None else None
        return task.sink if task is not None else self._default_sink()

    def _on_started(self, handle: WorkerHandle, task_id: int, at: float) -> None:
        with self._lock:
            self.flow.started(task_id)
            handle.current = task_id
            task = self._tasks[task_id]
            task.state = RUNNING
            task.started_at = at
        self.events.record(ev.TASK_STARTED, worker=handle.id, task=task_id, at=at)

    def _on_finished(self, handle: WorkerHandle, task_id: int, info: dict, parts: list) -> None:
        task = self._tasks[task_id]
        error = info["error"]
        result = None
        if error is None and parts:
            try:
                result = wire.loads_value("result", parts, "the kernel")
            except wire.SerializationError:
                result = None
        with self._lock:
            handle.current = None
            handle.tasks_done += 1
            root = None if error is None else f"task #{task_id} on worker {handle.id} failed ({error[0]}: {error[1]})"
            self.flow.finished(task_id, error is None, root, info["sizes"], info["written"])
            self.flow.missing(task_id, info["missing"])
            if error is None:
                self._end_task(task, DONE, result=result, at=info["t1"])
            else:
                ename, evalue, traceback = error
                task.sink.error(handle.id, ename, evalue, traceback)
                self._end_task(task, FAILED, error=RemoteError(handle.id, task_id, ename, evalue, traceback),
                               at=info["t1"])
            self._dispatch_ready()

    def _on_unrun(self, handle: WorkerHandle, task_id: int, message: str, root: str | None, at: float) -> None:
        """The task never ran: cancelled for ``root`` (an input's original failure), or,
        with no root, failed getting its inputs."""
        with self._lock:
            task = self._tasks[task_id]
            if root is not None:
                self.flow.cancelled(task_id, root)
                self._end_task(task, CANCELLED, error=TaskCancelled(handle.id, task_id, message), at=at)
            else:
                self.flow.finished(task_id, False, f"task #{task_id} on worker {handle.id} failed ({message})")
                self._end_task(task, FAILED, error=TaskFailed(handle.id, task_id, message), at=at)
            self._dispatch_ready()

    def _on_fetched(self, handle: WorkerHandle, task_id: int, name: str, version: int, source: int,
                    size: int, t0: float, t1: float) -> None:
        with self._lock:
            self.flow.fetched(task_id, name, size)
            self._dispatch_ready()
        self.events.record(ev.TRANSFER, worker=handle.id, task=task_id, at=t1, name=name, source=source,
                           dest=handle.id, bytes=size, start=t0, end=t1, version=version)

    def _on_worker_lost(self, handle: WorkerHandle) -> None:
        with self._lock:
            if handle.lost or handle.state == "stopping" or self._stopping:
                return
            handle.lost = True
        handle.process.wait(timeout=2.0)
        how = handle.process.exit_description()
        handle.process.signal_group(9)
        reason = f"worker {handle.id} died ({how})"
        with self._lock:
            running = self._tasks.get(handle.current) if handle.current else None
            if running is not None:
                running.sink.note(handle.id, reason)
            failed = self.flow.remove_worker(handle.id, reason)
            for record in failed:
                task = self._tasks.get(record.id)
                if task is not None:
                    self._end_task(task, FAILED, error=TaskFailed(record.worker, record.id, reason))
            self._dispatch_ready()
        handle.conn.close()
        self.events.record(ev.WORKER_DIED, worker=handle.id, reason=how)

    # -- checks ------------------------------------------------------------------------------

    def _require_running(self) -> None:
        if not self._running:
            raise ClusterError("no workers are running: start them first (%workers start N)")

    def _check_ids(self, ids: Iterable[int] | int | None, allow_all: bool = True) -> list[int]:
        """Validate worker ids: every one must name a worker of this cluster."""
        if ids is None:
            if not allow_all:
                raise ClusterError("name at least one worker")
            return list(range(1, self.n_workers + 1))
        values = [ids] if isinstance(ids, int) else list(ids)
        if not values:
            raise ClusterError("name at least one worker")
        bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= self.n_workers]
        if bad:
            raise ClusterError(
                f"no worker {bad[0]!r}: this cluster has workers 1..{self.n_workers}"
            )
        alive = [v for v in values if v in self._workers and not self._workers[v].lost]
        dead = [v for v in values if v not in alive]
        if dead and not allow_all:
            raise ClusterError(f"worker {dead[0]} is dead: restart it first (%workers restart {dead[0]})")
        return list(dict.fromkeys(values))


def _label(code: str) -> str:
    for line in code.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line[:60]
    return "(empty)"


def _check_names(names: list[str]) -> None:
    if not names:
        raise ClusterError("name at least one variable")
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise ClusterError(f"{name!r} is not a variable name")


def _finish_move(group: TaskGroup, block: bool) -> TaskGroup:
    if block:
        group.wait()
        if group.error is not None:
            raise group.error
    return group


@atexit.register
def _stop_all() -> None:
    for cluster in list(_live_clusters):
        try:
            cluster.stop()
        except Exception:
            pass
