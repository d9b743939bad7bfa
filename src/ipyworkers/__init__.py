"""Task parallelism for notebooks: tag a cell (``%%worker 2``) or its lines
(``# @1``) with workers; variables move between workers by themselves."""

from .errors import (
    ChannelError,
    ClusterError,
    IpyworkersError,
    RemoteError,
    TaskCancelled,
    TaskFailed,
    WorkerStartError,
)
from .files import chunks, range_lines, read_range
from .kernel.cluster import Cluster
from .kernel.tasks import Task, TaskGroup
from .plan.analysis import CodeNames, analyze

__version__ = "0.1.0"

__all__ = [
    "Cluster", "ClusterError", "IpyworkersError", "WorkerStartError", "RemoteError", "Task", "TaskCancelled",
    "TaskFailed", "TaskGroup", "CodeNames", "analyze", "load_ipython_extension",
    "unload_ipython_extension", "current", "output", "ChannelError", "chunks", "range_lines", "read_range",
]


def current() -> Cluster | None:
    """The cluster that ``%workers start`` started in this kernel, for the Python API."""
    from .notebook.magics import current as _current

    return _current()


def output(cell: int, stream: str = "stdout", worker: int | None = None) -> str:
    """Everything a non-blocking cell (``In [cell]``) printed, whole: the cell shows only the tail."""
    from .notebook.outputs import output as _output

    return _output(cell, stream, worker)


def load_ipython_extension(ipython) -> None:
    from .notebook.magics import load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    from .notebook.magics import unload

    unload(ipython)
