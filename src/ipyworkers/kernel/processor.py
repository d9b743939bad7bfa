"""A streaming processor: tasks added one at a time, each result handed to a collector.

    with cluster.processor(mapper, collector=results.append) as p:
        for line in open(path):
            p.add_task(line)
    # here every task has run and the collector has seen every result

Tasks go out in batches (a job: see ``jobs.py``); ``add_task`` waits only when many are
buffered. The collector runs in the kernel on the cluster's callback thread, outside
every lock, once per result, in the order results come back. Leaving the ``with`` waits
for everything and raises the first error (a remote one with its traceback); once an
error is known, ``add_task`` raises it at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .calls import check_callable
from .jobs import Job, check_chunksize
from .sources import QueueSource


class Processor:
    def __init__(self, cluster, mapper: Callable, collector: Callable | None = None, *,
                 chunksize: int | None = None, on: Sequence[int] | None = None, progress: Any = None):
        cluster._require_running()
        check_callable(mapper, "the mapper given to processor()")
        if collector is not None:
            check_callable(collector, "the collector given to processor()")
        self._source = QueueSource()
        self._job = Job(cluster, mapper, self._source, 2, kind="processor", on=on,
                        chunksize=check_chunksize(chunksize), progress=progress, collector=collector)
        self._started = False

    def start(self) -> Processor:
        if not self._started:
            self._started = True
            self._job.start()
        return self

    def __enter__(self) -> Processor:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.cancel()
            return
        self.join()

    def add_task(self, *args: Any, **kwargs: Any) -> None:
        """Queue ``mapper(*args, **kwargs)``; raises the first error once one is known."""
        if self._job.error is not None:
            raise self._job.error
        self.start()
        if not self._source.put((args, kwargs or None)) and self._job.error is not None:
            raise self._job.error

    def join(self) -> None:
        """No more tasks: wait until every one has run and been collected; raise the first error."""
        self.start()
        self._source.close()
        self._job.wait()

    def cancel(self) -> None:
        """Drop the tasks not yet run and interrupt the running ones."""
        self._source.close()
        self._job.cancel()

    @property
    def done(self) -> int:
        """Tasks run and collected so far."""
        return self._job.items_done

    @property
    def added(self) -> int:
        return self._job.items_sent
