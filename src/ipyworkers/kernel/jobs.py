"""The engine under every map, ``mapreduce`` and processor: a *job*.

Its feeder thread takes items from the input only as it goes (a sized input is sliced,
any other iterable is read by a thread of its own into a small buffer; ``sources.py``),
cuts them into batches (``batching.py``) and keeps a few in flight on each worker: the
one it runs and, queued behind, ``QUEUED_SECONDS`` of work (at most ``PER_WORKER`` in
all; none queued before any has come back and when they are long); and at most
``UNCONSUMED_PER_WORKER`` per worker whose results the caller has not taken yet:
memory stays bounded however long the input. A batch is one task (one bar on the
timeline) and one round trip; its results come back as one list.

The function travels once per worker (keyed by a digest of its pickle; see
``worker/calls.py``), the items once per batch.

A worker that dies: the batches on it run again on the others (up to ``MAX_TRIES``
times each). ``mapreduce.py`` adds what a fold on the workers needs on top.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import ClusterError, RemoteError, SerializationError, TaskFailed
from ..serialize import dumps_value
from .batching import TARGET_SECONDS, Chunker, Progress
from .calls import NONE, QuietSink, check_callable, name_of
from .records import Submission
from .shipping import ship
from .sources import make_source
from .tasks import Task

PER_WORKER = 3
QUEUED_SECONDS = 0.005
"""Behind the batch a worker runs, this much work waits there (at least one batch, at
most ``PER_WORKER`` in all): enough to cover the round trip of the batch that ends, so
the worker never waits for the next; no more, since at the end of the input what is
queued on one worker is what the others wait for."""
LONG_BATCH_SECONDS = 0.1
"""Batches this long (and the first ones, before any has come back) go out one at a time
per worker, as a worker finishes one: a round trip is little beside them, and a worker
slowed down by something else holds no queue the others could have taken."""
UNCONSUMED_PER_WORKER = 8
MAX_TRIES = 3
MISSING_FUNCTION = "FunctionNotShipped"

_ids = itertools.count(1)


def check_chunksize(chunksize: Any) -> int | None:
    if chunksize is None:
        return None
    if not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1:
        raise ValueError(f"chunksize must be a whole number >= 1 (or None to choose by itself), not {chunksize!r}")
    return chunksize


class Batch:
    __slots__ = ("index", "start", "count", "parts", "worker", "task", "tries", "counted")

    def __init__(self, index: int, start: int, count: int, parts: list):
        self.index, self.start, self.count, self.parts = index, start, count, parts
        self.worker = 0
        self.task: Task | None = None
        self.tries = 0
        self.counted = False


class Job:
    """One map or processor: feeds batches, gathers results, fails as one.

    A subclass changes what a batch asks of its worker (``_call``), and hears of batches
    placed, ended and lost (``_placed``, ``_ended``, ``_lost``); ``side_tasks`` counts
    other tasks of the job that must end before it is over."""

    kind = "map"
    wants_results = True
    """Whether a batch's results come back to the kernel (not so when folded there)."""
    target_seconds = TARGET_SECONDS

    def __init__(self, cluster, fn: Callable, source: Any, star: int, *, on: Sequence[int] | None,
                 chunksize: int | None, progress: Any, ordered: bool = True, collector: Callable | None = None,
                 job_id: int | None = None, kind: str | None = None):
        self.id = next(_ids) if job_id is None else job_id
        self.cluster = cluster
        self.kind = kind or self.kind
        self.name = name_of(fn)
        self.workers = cluster.live_workers([on] if isinstance(on, int) else on)
        if not self.workers:
            raise ClusterError(f"no live workers to {self.kind} on")
        self.fn_key, self.fn_parts = ship(fn, "function")
        self.source = source
        self.star = star
        self.ordered = ordered
        self.collector = collector
        self.total = source.total
        self.chunker = Chunker(chunksize, self.total, len(self.workers), self.target_seconds)
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
        self.side_tasks = 0
        self.input_done = False
        self.stopped = False
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.progress = Progress(progress, self.total)
        self._thread = threading.Thread(target=self._feed, name=f"ipyworkers-map-{self.id}", daemon=True)

    def start(self) -> Job:
        self._thread.start()
        return self

    # -- what a subclass may change ---------------------------------------------------------------

    def _call(self, batch: Batch, first: bool) -> tuple[dict[str, Any], dict[str, list]]:
        """(call, payload) of ``batch``; ``first`` when its worker has not got the function yet."""
        call: dict[str, Any] = {"fn": self.fn_key, "name": self.name, "star": self.star, "base": batch.start}
        payload = {"items": batch.parts}
        if first:
            payload[self.fn_key] = self.fn_parts
        return call, payload

    def _placed(self, batch: Batch) -> None:
        """(lock held) ``batch`` is about to go to ``batch.worker``."""

    def _ended(self, batch: Batch) -> Callable[[], None] | None:
        """(lock held) ``batch`` ended well; what to do once the lock is released, if anything."""
        return None

    def _lost(self, batch: Batch) -> list[Batch]:
        """(lock held) ``batch``'s worker died: other batches to run again besides it."""
        return []

    def _input_ended(self) -> None:
        """Every batch of the input has been sent (the feeder thread; no lock held)."""

    # -- the feeder thread --------------------------------------------------------------------

    def _feed(self) -> None:
        try:
            while self._wait_capacity():
                items, exhausted = self.source.take(self.chunker.next(self.items_sent))
                if items:
                    self._send(self._batch(items), wait=True)
                if exhausted:
                    break
        except BaseException as exc:
            self._fail(exc)
        finally:
            with self.cond:
                self.input_done = True
                self._check_done()
                self.cond.notify_all()
            if not self.stopped:
                self._input_ended()
            if self.error is None:
                self.progress.update(self.items_done, self.items_sent, force=self.done.is_set())

    def _batch(self, items: list) -> Batch:
        start, count = self.items_sent, len(items)
        try:
            parts = dumps_value("items", items)
        except SerializationError as exc:
            raise SerializationError(f"cannot send items {start}..{start + count - 1} of "
                                     f"{self.kind} {self.name}: {exc}") from None
        batch = Batch(self.batches, start, count, parts)
        self.batches += 1
        self.items_sent += count
        return batch

    def _alive(self) -> list[int]:
        return [w for w in self.workers if self.cluster._supervisor.alive(w)]

    def _pick(self, limit: bool) -> int | None:
        progress = self.cluster._scheduler.progress
        room = self._room()
        candidates = [w for w in self._alive() if not limit or self.load.get(w, 0) < room]
        if not candidates:
            return None
        return min(candidates, key=lambda w: (self.load.get(w, 0), getattr(progress.get(w), "open", 0), w))

    def _room(self) -> int:
        """Batches in flight allowed on one worker."""
        seconds = self.chunker.seconds()
        if seconds is None or seconds >= LONG_BATCH_SECONDS:
            return 1
        return min(PER_WORKER, 1 + math.ceil(QUEUED_SECONDS / max(seconds, 1e-9)))

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
                self._placed(batch)
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
        call, payload = self._call(batch, first)
        a, n = batch.start, batch.count
        label = f"{self.kind} {self.name}[{a}]" if n == 1 else f"{self.kind} {self.name}[{a}:{a + n}]"
        note = f"{self.name} of item {a}" if n == 1 else f"{self.name} of items {a}..{a + n - 1} ({n} items)"
        return Submission(worker, None, NONE, NONE, label, self.sink, want_result=self.wants_results,
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
        if error is None and self.wants_results and not isinstance(results, list):
            error = ClusterError(f"the results of {task.label} on worker {task.worker} did not come back "
                                 f"(one of them would not pickle, or not unpickle here): {results!r:.200}")
        if error is not None:
            self._batch_failed(batch, task, error)
            return
        if task.started_at is not None and task.finished_at is not None:
            self.chunker.observe(batch.count, task.finished_at - task.started_at)
        with self.cond:
            self.load[batch.worker] -= 1
            if self.inflight.pop(batch.index, None) is None or self.stopped:
                self._check_done()
                return
            if not batch.counted:
                batch.counted = True
                self.items_done += batch.count
            then = self._ended(batch)
            if self.collector is not None or not self.wants_results:
                self.unconsumed -= 1
            elif self.ordered:
                self.ready[batch.index] = results
            else:
                self.arrived.append(results)
            self._check_done()
            self.cond.notify_all()
        if then is not None:
            then()
        if self.collector is not None:
            collector = self.collector
            for result in results:
                collector(result)
        total = self.items_sent if self.input_done else self.total
        self.progress.update(self.items_done, total, force=self.done.is_set())

    def _batch_failed(self, batch: Batch, task: Task, error: BaseException) -> None:
        missing = isinstance(error, RemoteError) and error.ename == MISSING_FUNCTION
        lost = isinstance(error, TaskFailed)
        also: list[Batch] = []
        with self.cond:
            self.load[batch.worker] -= 1
            if missing or lost:
                self.shipped.discard(batch.worker)
            again = (missing or lost) and not self.stopped and batch.tries + 1 < MAX_TRIES
            if not again:
                self.inflight.pop(batch.index, None)
            elif lost:
                also = self._lost(batch)
        if again:
            self.resend([batch, *also])
        else:
            self._fail(error)

    def resend(self, batches: Iterable[Batch]) -> None:
        """Run ``batches`` again (their worker died), each counting one more try."""
        for batch in batches:
            batch.tries += 1
            self._send(batch, wait=False)

    def side_task_ended(self) -> None:
        with self.cond:
            self.side_tasks -= 1
            self._check_done()
            self.cond.notify_all()

    def _check_done(self) -> None:
        """(lock held) The job is over once its input is (or it stopped) and nothing is in flight."""
        if (self.input_done or self.stopped) and not self.inflight and not self.side_tasks:
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


def start_job(cluster, job_class: type[Job], fn: Callable, iterables: Sequence[Iterable], *, what: str,
              star: bool = False, chunksize: int | None = None, **options: Any) -> Job:
    """Check the arguments, make the job's source and start it."""
    cluster._require_running()
    check_callable(fn, f"the function given to {what}")
    chunksize = check_chunksize(chunksize)
    job_id = next(_ids)
    source, mode = make_source(iterables, what, job_id)
    try:
        job = job_class(cluster, fn, source, 1 if star else mode, chunksize=chunksize, job_id=job_id, **options)
    except BaseException:
        source.stop()
        raise
    return job.start()
