"""What ``Cluster`` calls for fine-grained work: futures (``calls.py``), maps (``map``,
``imap``, ``imap_unordered``, ``starmap``: here, over ``jobs.py``), ``mapreduce``
(``mapreduce.py``). The streaming processor is in ``processor.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .calls import as_completed, submit
from .jobs import Job, start_job
from .mapreduce import NO_INITIAL, mapreduce

__all__ = ["NO_INITIAL", "MapResults", "as_completed", "imap", "map_list", "mapreduce", "submit"]


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


def map_list(cluster, fn: Callable, iterables: Sequence[Iterable], **options: Any) -> list:
    """All the results, in input order (``map``, ``starmap``)."""
    job = start_job(cluster, Job, fn, iterables, **options)
    out: list = []
    try:
        while True:
            try:
                out.extend(job.next_results())
            except StopIteration:
                return out
    finally:
        job.cancel()


def imap(cluster, fn: Callable, iterables: Sequence[Iterable], **options: Any) -> MapResults:
    return MapResults(start_job(cluster, Job, fn, iterables, **options))
