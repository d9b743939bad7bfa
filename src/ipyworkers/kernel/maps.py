"""Fine-grained work on the running workers: futures (``submit``), maps (``map``,
``imap``, ``imap_unordered``, ``starmap``) and ``mapreduce``.

A map is a *job*. Its feeder thread takes items from the input only as it goes (a
sized input is sliced, any other iterable is read by a thread of its own into a small
buffer), cuts them into batches and keeps at most ``PER_WORKER`` batches in flight on
each worker (one, before any has come back and when they are long), and at most
``UNCONSUMED_PER_WORKER`` per worker whose results the caller has not taken yet: memory
stays bounded however long the input. A batch is one task
(one bar on the timeline) and one round trip; its results come back as one list.

Batch size: ``chunksize`` if given. Otherwise batches start at one item and double
until one comes back; then each aims at ``batching.TARGET_SECONDS`` of worker time,
never more than ``batching.MAX_CHUNK`` items nor, when ``len()`` is known, more than
``multiprocessing.Pool``'s chunk (a quarter of an even share), and they shrink towards
the end of a known input so the workers finish together. A partial batch waits at
most ``sources.LINGER_SECONDS`` for more input.

The function travels once per worker (keyed by a digest of its pickle; see
``worker/calls.py``), the items once per batch.

A worker that dies: a map's batches on it run again on the others (up to
``MAX_TRIES`` times each). A ``mapreduce`` also loses what the dead worker had folded:
so every ``CHECKPOINT_BATCHES`` batches a worker hands its partial result to the kernel
(which folds it into its own), and the batches folded there since are kept, pickled,
until then; on a death those run again elsewhere too. At the end, with more than
``TREE_FANIN`` workers holding partials, they fold in pairs on the workers first.
"""

from __future__ import annotations

import functools
import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import ClusterError, RemoteError, SerializationError, TaskFailed
from ..protocol import NOTHING
from ..serialize import dumps_value
from .batching import Chunker, Progress
from .scheduler import Submission
from .shipping import ship
from .sinks import Sink
from .sources import make_source
from .tasks import Task, TaskGroup

PER_WORKER = 3
LONG_BATCH_SECONDS = 0.1
"""Batches this long (and the first ones, before any has come back) go out one at a time
per worker, as a worker finishes one: a round trip is little beside them, and a worker
slowed down by something else holds no queue the others could have taken."""
UNCONSUMED_PER_WORKER = 8
MAX_TRIES = 3
TREE_FANIN = 4
"""With more workers than this holding partial results, they fold in pairs on the
workers (a tree), a round at a time, before the kernel folds the rest."""
CHECKPOINT_BATCHES = 32
MISSING_FUNCTION = "FunctionNotShipped"
NO_INITIAL = object()
NONE: frozenset[str] = frozenset()

_ids = itertools.count(1)


# -- small helpers -----------------------------------------------------------------------------------


def name_of(fn: Any) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def check_callable(fn: Any, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"{what} must be callable, not {type(fn).__name__} {fn!r:.60}")


def check_chunksize(chunksize: Any) -> int | None:
    if chunksize is None:
        return None
    if not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1:
        raise ValueError(f"chunksize must be a whole number >= 1 (or None to choose by itself), not {chunksize!r}")
    return chunksize


class QuietSink(Sink):
    """A function call's errors reach the caller as exceptions, and cancelled batches are
    the caller's own doing: neither is printed again in the cell. Output still is."""

    def __init__(self, inner: Sink):
        self._inner = inner

    def stream(self, worker, name, text):
        self._inner.stream(worker, name, text)

    def display(self, worker, data, metadata, transient, update):
        self._inner.display(worker, data, metadata, transient, update)

    def clear(self, worker, wait):
        self._inner.clear(worker, wait)

    def error(self, worker, ename, evalue, traceback):
        pass

    def note(self, worker, text):
        if "cancelled" not in text:
            self._inner.note(worker, text)


def least_loaded(cluster, on: int | Sequence[int] | None) -> int:
    """The live worker among ``on`` with the fewest open tasks (the lowest id on a tie)."""
    ids = cluster.live_workers([on] if isinstance(on, int) else on)
    if not ids:
        raise ClusterError("no live workers to run on")
    scheduler = cluster._scheduler
    with scheduler.lock:
        return min(ids, key=lambda w: (scheduler.progress[w].open if w in scheduler.progress else 1 << 30, w))


# -- futures -----------------------------------------------------------------------------------------


def submit(cluster, fn: Callable, args: tuple, kwargs: dict, on: int | Sequence[int] | None) -> Task:
    cluster._require_running()
    check_callable(fn, "the function given to submit()")
    worker = least_loaded(cluster, on)
    name = name_of(fn)
    key, parts = ship(fn, "function")
    try:
        arguments = dumps_value("arguments", (args, kwargs or None))
    except SerializationError as exc:
        raise SerializationError(f"cannot send the arguments of {name}(): {exc}") from None
    sub = Submission(worker, None, NONE, NONE, f"{name}()", QuietSink(cluster._default_sink()),
                     call={"fn": key, "name": name, "args": 1}, payload={key: parts, "args": arguments},
                     note=f"{name}(...)")
    return cluster._submit([sub])[0]


def as_completed(tasks: Iterable[Task], timeout: float | None = None):
    """Yield the tasks as they end (done, failed or cancelled), first ended first."""
    tasks = list(tasks)
    ended: queue.SimpleQueue = queue.SimpleQueue()
    for task in tasks:
        task.add_done_callback(ended.put)
    deadline = None if timeout is None else time.monotonic() + timeout
    for _ in range(len(tasks)):
        while True:
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                raise TimeoutError(f"{sum(not t.done() for t in tasks)} of {len(tasks)} tasks not done "
                                   f"after {timeout} s")
            try:
                yield ended.get(timeout=left)
                break
            except queue.Empty:
                continue


# -- jobs ---------------------------------------------------------------------------------------------


class Batch:
    __slots__ = ("index", "start", "count", "parts", "worker", "task", "tries", "counted")

    def __init__(self, index: int, start: int, count: int, parts: list):
        self.index, self.start, self.count, self.parts = index, start, count, parts
        self.worker = 0
        self.task: Task | None = None
        self.tries = 0
        self.counted = False


class Job:
    """One map, mapreduce or processor: feeds batches, gathers results, fails as one."""

    def __init__(self, cluster, fn: Callable, source: Any, star: int, *, kind: str, on: Sequence[int] | None,
                 chunksize: int | None, progress: Any, ordered: bool = True, reducer: Callable | None = None,
                 collector: Callable | None = None, job_id: int | None = None):
        self.id = next(_ids) if job_id is None else job_id
        self.cluster = cluster
        self.kind = kind
        self.name = name_of(fn)
        self.workers = cluster.live_workers([on] if isinstance(on, int) else on)
        if not self.workers:
            raise ClusterError(f"no live workers to {kind} on")
        self.fn_key, self.fn_parts = ship(fn, "function")
        self.reduce_key = self.reduce_parts = None
        self.reducer = reducer
        self.partial: Any = NOTHING
        """What the kernel has folded of the workers' checkpointed partial results."""
        self.kept: dict[int, list[Batch]] = {}
        """Per worker, the batches folded (or to be folded) there since its last checkpoint."""
        self.checkpoints = 0
        if reducer is not None:
            self.reduce_key, self.reduce_parts = ship(reducer, "reducer")
        self.acc_key = f"acc-{self.id}-{id(self):x}"
        self.source = source
        self.star = star
        self.ordered = ordered
        self.collector = collector
        self.total = source.total
        self.chunker = Chunker(chunksize, self.total, len(self.workers))
        self.sink = QuietSink(cluster._default_sink())
        self.cond = threading.Condition(threading.RLock())
        self.inflight: dict[int, Batch] = {}
        self.load = {w: 0 for w in self.workers}
        self.shipped: set[int] = set()
        self.used: set[int] = set()
        self.ready: dict[int, list] = {}
        self.arrived: deque[list] = deque()
        self.next_out = 0
        self.unconsumed = 0
        self.max_unconsumed = UNCONSUMED_PER_WORKER * len(self.workers)
        self.batches = 0
        self.items_sent = 0
        self.items_done = 0
        self.input_done = False
        self.stopped = False
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.progress = Progress(progress, self.total)
        self._thread = threading.Thread(target=self._feed, name=f"ipyworkers-map-{self.id}", daemon=True)

    def start(self) -> Job:
        self._thread.start()
        return self

    # -- the feeder thread --------------------------------------------------------------------

    def _feed(self) -> None:
        try:
            while self._wait_capacity():
                items, exhausted = self.source.take(self.chunker.next(self.items_sent))
                if items:
                    start, count = self.items_sent, len(items)
                    try:
                        parts = dumps_value("items", items)
                    except SerializationError as exc:
                        raise SerializationError(f"cannot send items {start}..{start + count - 1} of "
                                                 f"{self.kind} {self.name}: {exc}") from None
                    del items
                    batch = Batch(self.batches, start, count, parts)
                    self.batches += 1
                    self.items_sent += count
                    self._send(batch, wait=True)
                if exhausted:
                    break
        except BaseException as exc:
            self._fail(exc)
        finally:
            with self.cond:
                self.input_done = True
                self._check_done()
                self.cond.notify_all()
            if self.error is None:
                self.progress.update(self.items_done, self.items_sent, force=self.done.is_set())

    def _alive(self) -> list[int]:
        return [w for w in self.workers if self.cluster._supervisor.alive(w)]

    def _pick(self, limit: bool) -> int | None:
        progress = self.cluster._scheduler.progress
        per_item, last = self.chunker.per_item, self.chunker.last
        room = 1 if per_item is None or per_item * last >= LONG_BATCH_SECONDS else PER_WORKER
        candidates = [w for w in self._alive() if not limit or self.load.get(w, 0) < room]
        if not candidates:
            return None
        return min(candidates, key=lambda w: (self.load.get(w, 0), getattr(progress.get(w), "open", 0), w))

    def _wait_capacity(self) -> bool:
        with self.cond:
            while not self.stopped:
                if not self._alive():
                    raise ClusterError(f"no live workers left to {self.kind} {self.name} on")
                if self.unconsumed < self.max_unconsumed and self._pick(True) is not None:
                    return True
                self.cond.wait(0.2)
            return False

    def _send(self, batch: Batch, wait: bool) -> None:
        """Submit ``batch`` to a worker (the feeder waits for room; a re-run does not)."""
        while True:
            with self.cond:
                if self.stopped:
                    self.inflight.pop(batch.index, None)
                    self._check_done()
                    return
                worker = self._pick(wait)
                if worker is None:
                    if not self._alive():
                        raise ClusterError(f"no live workers left to {self.kind} {self.name} on")
                    self.cond.wait(0.1)
                    continue
                first = worker not in self.shipped
                self.shipped.add(worker)
                self.used.add(worker)
                if batch.index not in self.inflight:
                    self.unconsumed += 1
                self.inflight[batch.index] = batch
                self.load[worker] = self.load.get(worker, 0) + 1
                batch.worker = worker
                if self.reducer is not None:
                    self.kept.setdefault(worker, []).append(batch)
            try:
                task = self.cluster._submit([self._submission(batch, worker, first)])[0]
            except ClusterError:  # the worker died just now: try another
                with self.cond:
                    self.load[worker] -= 1
                    self.shipped.discard(worker)
                continue
            batch.task = task
            task.add_done_callback(functools.partial(self._on_done, batch))
            return

    def _submission(self, batch: Batch, worker: int, first: bool) -> Submission:
        call: dict[str, Any] = {"fn": self.fn_key, "name": self.name, "star": self.star, "base": batch.start}
        payload = {"items": batch.parts}
        if first:
            payload[self.fn_key] = self.fn_parts
        if self.reduce_key is not None:
            call.update(reduce=self.reduce_key, acc=self.acc_key)
            if first:
                payload[self.reduce_key] = self.reduce_parts
        a, n = batch.start, batch.count
        label = f"{self.kind} {self.name}[{a}]" if n == 1 else f"{self.kind} {self.name}[{a}:{a + n}]"
        note = f"{self.name} of item {a}" if n == 1 else f"{self.name} of items {a}..{a + n - 1} ({n} items)"
        return Submission(worker, None, NONE, NONE, label, self.sink, want_result=self.reduce_key is None,
                          call=call, payload=payload, note=note, items=n)

    # -- batches ending (the callback thread) -------------------------------------------------------

    def _on_done(self, batch: Batch, task: Task) -> None:
        try:
            self._batch_ended(batch, task)
        except BaseException as exc:
            self._fail(exc)

    def _batch_ended(self, batch: Batch, task: Task) -> None:
        error, results = task.error, task._result
        task._result = None  # the scheduler keeps ended tasks a while: not their results too
        if error is None and self.reduce_key is None and not isinstance(results, list):
            error = ClusterError(f"the results of {task.label} on worker {task.worker} did not come back "
                                 f"(one of them would not pickle, or not unpickle here): {results!r:.200}")
        if error is not None:
            self._batch_failed(batch, task, error)
            return
        if task.started_at is not None and task.finished_at is not None:
            self.chunker.observe(batch.count, task.finished_at - task.started_at)
        checkpoint = None
        with self.cond:
            self.load[batch.worker] -= 1
            if self.inflight.pop(batch.index, None) is None or self.stopped:
                self._check_done()
                return
            if not batch.counted:
                batch.counted = True
                self.items_done += batch.count
            if self.reducer is not None and len(self.kept.get(batch.worker, ())) >= CHECKPOINT_BATCHES:
                checkpoint = self.kept.pop(batch.worker)
                self.checkpoints += 1
            if self.collector is not None or self.reduce_key is not None:
                self.unconsumed -= 1
            elif self.ordered:
                self.ready[batch.index] = results
            else:
                self.arrived.append(results)
            self._check_done()
            self.cond.notify_all()
        if checkpoint is not None:
            self._checkpoint(batch.worker, checkpoint)
        if self.collector is not None:
            collector = self.collector
            for result in results:
                collector(result)
        total = self.items_sent if self.input_done else self.total
        self.progress.update(self.items_done, total, force=self.done.is_set())

    def _batch_failed(self, batch: Batch, task: Task, error: BaseException) -> None:
        missing = isinstance(error, RemoteError) and error.ename == MISSING_FUNCTION
        lost = isinstance(error, TaskFailed)
        folded: list[Batch] = []
        with self.cond:
            self.load[batch.worker] -= 1
            if missing or lost:
                self.shipped.discard(batch.worker)
            again = (missing or lost) and not self.stopped and batch.tries + 1 < MAX_TRIES
            if not again:
                self.inflight.pop(batch.index, None)
            elif lost and self.reducer is not None:
                # what the dead worker had folded since its last checkpoint is gone with it
                folded = [b for b in self.kept.pop(batch.worker, ()) if b.index not in self.inflight]
        for redo in [batch, *folded] if again else ():
            redo.tries += 1
            self._send(redo, wait=False)
        if not again:
            self._fail(error)

    def _checkpoint(self, worker: int, batches: list[Batch]) -> None:
        """Take ``worker``'s partial result into the kernel's; then the batches folded into
        it need not be kept. If the worker dies first, they run again elsewhere."""
        sub = Submission(worker, None, NONE, NONE, f"checkpoint {self.name}", self.sink,
                         call={"collect": self.acc_key}, note=f"partial result of mapreduce {self.name}")
        try:
            task = self.cluster._submit([sub])[0]
        except ClusterError as exc:  # the worker is gone already
            task = Task(0, worker, "checkpoint")
            task._finish("failed", error=TaskFailed(worker, 0, str(exc)))
        task.add_done_callback(functools.partial(self._on_checkpoint, batches))

    def _on_checkpoint(self, batches: list[Batch], task: Task) -> None:
        try:
            error, value = task.error, task._result
            task._result = None
            redo: list[Batch] = []
            if error is None:
                if value is not NOTHING:
                    self.partial = value if self.partial is NOTHING else self.reducer(self.partial, value)
            elif isinstance(error, TaskFailed):
                with self.cond:
                    redo = [b for b in batches if b.index not in self.inflight and not self.stopped]
            else:
                raise error
            for batch in redo:
                batch.tries += 1
                self._send(batch, wait=False)
        except BaseException as exc:
            self._fail(exc)
        finally:
            with self.cond:
                self.checkpoints -= 1
                self._check_done()
                self.cond.notify_all()

    def _check_done(self) -> None:
        """(lock held) The job is over once its input is (or it stopped) and nothing is in flight."""
        if (self.input_done or self.stopped) and not self.inflight and not self.checkpoints:
            self.done.set()

    # -- stopping ------------------------------------------------------------------------------------

    def _fail(self, error: BaseException) -> None:
        """The first error ends the job: no more batches; those in flight are cancelled."""
        with self.cond:
            if self.error is None:
                self.error = error
            self.stopped = True
            tasks = []
            for index, batch in list(self.inflight.items()):
                if batch.task is not None and not batch.task.done():
                    tasks.append(batch.task)
                elif batch.task is not None:  # ended, and being sent again
                    del self.inflight[index]
            self._check_done()
            self.cond.notify_all()
        self.source.stop()
        for task in tasks:
            self.cluster.cancel(task)

    def cancel(self) -> None:
        """Stop the job: queued batches are dropped, running ones interrupted."""
        if not self.done.is_set():
            self._fail(ClusterError(f"{self.kind} {self.name} was cancelled"))

    # -- the caller's side ---------------------------------------------------------------------------

    def next_results(self) -> list:
        """The next batch's results (in input order, or as they come); StopIteration at the end."""
        try:
            with self.cond:
                while True:
                    if self.error is not None:
                        raise self.error
                    if self.ordered:
                        results = self.ready.pop(self.next_out, None)
                        if results is not None:
                            self.next_out += 1
                    else:
                        results = self.arrived.popleft() if self.arrived else None
                    if results is not None:
                        self.unconsumed -= 1
                        self.cond.notify_all()
                        return results
                    if self.input_done and not self.inflight and self.done.is_set():
                        raise StopIteration
                    self.cond.wait(0.1)
        except KeyboardInterrupt:
            self._fail(KeyboardInterrupt())
            raise

    def wait(self) -> None:
        """Until the job is over (interruptibly); raises its first error."""
        try:
            while not self.done.wait(0.1):
                pass
        except KeyboardInterrupt:
            self._fail(KeyboardInterrupt())
            raise
        if self.error is not None:
            raise self.error


class MapResults:
    """The results of ``imap``/``imap_unordered``, as they come; ``cancel()`` (or dropping
    the iterator, or ``Cluster.cancel(it)``) stops the map."""

    def __init__(self, job: Job):
        self._job = job
        self._current: Any = iter(())

    def __iter__(self) -> MapResults:
        return self

    def __next__(self) -> Any:
        while True:
            try:
                return next(self._current)
            except StopIteration:
                self._current = iter(self._job.next_results())

    def cancel(self) -> None:
        self._job.cancel()

    close = cancel

    def __enter__(self) -> MapResults:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    def __del__(self) -> None:
        job = getattr(self, "_job", None)
        if job is not None and not job.done.is_set():
            job.cancel()


# -- the API's entry points ------------------------------------------------------------------------------


def start_map(cluster, fn: Callable, iterables: Sequence[Iterable], *, what: str, star: bool = False,
              ordered: bool = True, chunksize: int | None = None, on: Sequence[int] | None = None,
              progress: Any = None, reducer: Callable | None = None) -> Job:
    cluster._require_running()
    check_callable(fn, f"the function given to {what}")
    if reducer is not None:
        check_callable(reducer, f"the reducer given to {what}")
    chunksize = check_chunksize(chunksize)
    job_id = next(_ids)
    source, mode = make_source(iterables, what, job_id)
    if star:
        mode = 1
    try:
        job = Job(cluster, fn, source, mode, kind="mapreduce" if reducer else "map", on=on, chunksize=chunksize,
                  progress=progress, ordered=ordered, reducer=reducer, job_id=job_id)
    except BaseException:
        source.stop()
        raise
    return job.start()


def map_list(cluster, fn, iterables, **options) -> list:
    job = start_map(cluster, fn, iterables, **options)
    out: list = []
    try:
        while True:
            try:
                out.extend(job.next_results())
            except StopIteration:
                return out
    finally:
        job.cancel()


def imap(cluster, fn, iterables, **options) -> MapResults:
    return MapResults(start_map(cluster, fn, iterables, **options))


def mapreduce(cluster, mapper, reducer, iterables, *, initial: Any = NO_INITIAL, **options) -> Any:
    job = start_map(cluster, mapper, iterables, what="mapreduce()", reducer=reducer, **options)
    try:
        job.wait()
    finally:
        partials = _gather_partials(cluster, job)
    if initial is not NO_INITIAL:
        return functools.reduce(reducer, partials, initial)
    if not partials:
        raise TypeError("mapreduce() of no items with no initial value")
    return functools.reduce(reducer, partials)


def _call_task(cluster, job: Job, worker: int, call: dict, payload: dict, label: str) -> Task:
    sub = Submission(worker, None, NONE, NONE, label, job.sink, call=call, payload=payload,
                     note=f"{label} (mapreduce {job.name})")
    return cluster._submit([sub])[0]


def _gather_partials(cluster, job: Job) -> list:
    """Each worker's partial result; with many workers, they first fold in pairs on the
    workers. After a failure the accumulators are still taken (and dropped), so none stays."""
    alive = set(cluster.worker_ids)
    holders = sorted(w for w in job.used if w in alive)
    collect = functools.partial(_call_task, cluster, job)
    while job.error is None and len(holders) > TREE_FANIN:
        pairs = list(zip(holders[0::2], holders[1::2], strict=False))
        taken = [(a, collect(b, {"collect": job.acc_key}, {}, f"collect {job.name}")) for a, b in pairs]
        folds = []
        for a, task in taken:
            cluster._wait_interruptibly(task)
            value = task.result
            if value is not NOTHING:
                payload = {"value": dumps_value("partial result", value), job.reduce_key: job.reduce_parts}
                folds.append(collect(a, {"fold": job.acc_key, "reduce": job.reduce_key}, payload,
                                     f"fold {job.name}"))
        group = TaskGroup(folds)
        cluster._wait_interruptibly(group)
        if group.error is not None:
            raise group.error
        holders = [a for a, _ in pairs] + holders[2 * len(pairs):]
    tasks = TaskGroup(collect(w, {"collect": job.acc_key}, {}, f"collect {job.name}") for w in holders)
    cluster._wait_interruptibly(tasks)
    if job.error is not None:
        return []
    if tasks.error is not None:
        raise tasks.error
    partials = [t.result for t in tasks if t.result is not NOTHING]
    return partials if job.partial is NOTHING else [job.partial, *partials]
