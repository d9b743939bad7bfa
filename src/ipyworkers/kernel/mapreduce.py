"""``mapreduce``: a map whose results are folded on the workers, then in the kernel.

Each batch folds its results into its worker's accumulator (``worker/calls.py``); only
the partial results travel, once each, at the end.

A worker that dies loses what it had folded: so every ``CHECKPOINT_BATCHES`` batches a
worker hands its partial result to the kernel (which folds it into its own), and the
batches folded there since are kept, pickled, until then; on a death those run again
elsewhere too. At the end, with more than ``TREE_FANIN`` workers holding partials, they
fold in pairs on the workers first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import ClusterError, TaskFailed
from ..protocol import NOTHING
from ..serialize import dumps_value
from .batching import FOLD_TARGET_SECONDS
from .calls import NONE, check_callable
from .jobs import Batch, Job, start_job
from .records import Submission
from .shipping import ship
from .tasks import Task, TaskGroup

TREE_FANIN = 4
"""With more workers than this holding partial results, they fold in pairs on the
workers (a tree), a round at a time, before the kernel folds the rest."""
CHECKPOINT_BATCHES = 32
NO_INITIAL = object()


class ReduceJob(Job):
    """A map whose batches fold into an accumulator on their worker and return nothing."""

    kind = "mapreduce"
    wants_results = False
    target_seconds = FOLD_TARGET_SECONDS

    def __init__(self, cluster, fn: Callable, source: Any, star: int, *, reducer: Callable, **options: Any):
        super().__init__(cluster, fn, source, star, **options)
        self.reducer = reducer
        self.reduce_key, self.reduce_parts = ship(reducer, "reducer")
        self.acc_key = f"acc-{self.id}-{id(self):x}"
        self.partial: Any = NOTHING
        """What the kernel has folded of the workers' checkpointed partial results."""
        self.kept: dict[int, list[Batch]] = {}
        """Per worker, the batches folded (or to be folded) there since its last checkpoint."""
        self.placed: dict[int, int] = {}
        """Per worker, how many batches have been sent there."""
        self.early: dict[int, tuple[int, Task]] = {}
        """Per worker, the collect sent as soon as the input ended (queued behind its last
        batch, so its result comes back with no round trip of its own), and ``placed`` then."""

    def _call(self, batch: Batch, first: bool) -> tuple[dict[str, Any], dict[str, list]]:
        call, payload = super()._call(batch, first)
        call.update(reduce=self.reduce_key, acc=self.acc_key)
        if first:
            payload[self.reduce_key] = self.reduce_parts
        return call, payload

    def _placed(self, batch: Batch) -> None:
        self.kept.setdefault(batch.worker, []).append(batch)
        self.placed[batch.worker] = self.placed.get(batch.worker, 0) + 1

    def _ended(self, batch: Batch) -> Callable[[], None] | None:
        if len(self.kept.get(batch.worker, ())) < CHECKPOINT_BATCHES:
            return None
        self.side_tasks += 1
        return functools.partial(self._checkpoint, batch.worker, self.kept.pop(batch.worker))

    def _lost(self, batch: Batch) -> list[Batch]:
        """What the dead worker had folded since its last checkpoint is gone with it."""
        return [b for b in self.kept.pop(batch.worker, ()) if b.index not in self.inflight]

    def _input_ended(self) -> None:
        """Ask each worker for its partial result now, behind its batches (not with many
        workers: those fold in a tree at the end)."""
        if len(self.workers) > TREE_FANIN:
            return
        with self.cond:
            placed = dict(self.placed)
        for worker in sorted(placed):
            try:
                self.early[worker] = (placed[worker], self._collect(worker))
            except ClusterError:  # the worker died just now: its batches run again elsewhere
                pass

    # -- checkpoints ------------------------------------------------------------------------------------

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
            if error is None:
                if value is not NOTHING:
                    self.partial = value if self.partial is NOTHING else self.reducer(self.partial, value)
            elif isinstance(error, TaskFailed):
                with self.cond:
                    redo = [b for b in batches if b.index not in self.inflight and not self.stopped]
                self.resend(redo)
            else:
                raise error
        except BaseException as exc:
            self._fail(exc)
        finally:
            self.side_task_ended()

    # -- the end -----------------------------------------------------------------------------------------

    def _call_task(self, worker: int, call: dict, payload: dict, label: str) -> Task:
        sub = Submission(worker, None, NONE, NONE, label, self.sink, call=call, payload=payload,
                         note=f"{label} (mapreduce {self.name})")
        return self.cluster._submit([sub])[0]

    def _collect(self, worker: int) -> Task:
        return self._call_task(worker, {"collect": self.acc_key}, {}, f"collect {self.name}")

    def _fold_pairs(self, holders: list[int]) -> list[int]:
        """One round of the tree: the second of each pair folds into the first."""
        cluster = self.cluster
        pairs = list(zip(holders[0::2], holders[1::2], strict=False))
        taken = [(a, self._collect(b)) for a, b in pairs]
        folds = []
        for a, task in taken:
            cluster._wait_interruptibly(task)
            value = task.result
            if value is not NOTHING:
                payload = {"value": dumps_value("partial result", value), self.reduce_key: self.reduce_parts}
                folds.append(self._call_task(a, {"fold": self.acc_key, "reduce": self.reduce_key}, payload,
                                             f"fold {self.name}"))
        group = TaskGroup(folds)
        cluster._wait_interruptibly(group)
        if group.error is not None:
            raise group.error
        return [a for a, _ in pairs] + holders[2 * len(pairs):]

    def gather_partials(self) -> list:
        """Each worker's partial result; with many workers, they first fold in pairs on the
        workers. After a failure the accumulators are still taken (and dropped), so none stays."""
        self._thread.join()  # it may still be sending the early collects
        alive = set(self.cluster.worker_ids)
        holders = sorted(w for w in self.used if w in alive)
        while self.error is None and len(holders) > TREE_FANIN:
            holders = self._fold_pairs(holders)
        early = TaskGroup(task for w, (_, task) in sorted(self.early.items()) if w in holders)
        self.cluster._wait_interruptibly(early)
        again = [w for w in holders if w not in self.early or self.early[w][0] != self.placed.get(w, 0)]
        tasks = TaskGroup([*early, *(self._collect(w) for w in again)])
        self.cluster._wait_interruptibly(tasks)
        if self.error is not None:
            return []
        if tasks.error is not None:
            raise tasks.error
        partials = [t.result for t in tasks if t.result is not NOTHING]
        return partials if self.partial is NOTHING else [self.partial, *partials]


def mapreduce(cluster, mapper: Callable, reducer: Callable, iterables: Iterable[Iterable], *,
              initial: Any = NO_INITIAL, **options: Any) -> Any:
    """``reduce(reducer, map(mapper, *iterables)[, initial])``, folded where the items ran."""
    check_callable(reducer, "the reducer given to mapreduce()")
    job = start_job(cluster, ReduceJob, mapper, list(iterables), what="mapreduce()", reducer=reducer, **options)
    try:
        job.wait()
    finally:
        partials = job.gather_partials()
    if initial is not NO_INITIAL:
        return functools.reduce(reducer, partials, initial)
    if not partials:
        raise TypeError("mapreduce() of no items with no initial value")
    return functools.reduce(reducer, partials)
