"""Task parallelism for notebooks: tag a cell (``%%worker 2``) or its lines
(``# @1``) with workers; variables move between workers by themselves.

The house, by the process that runs each part:

* ``plan/``: pure (no processes, no I/O): which names code reads and writes, the task
  graph and variable directory, tagged cells, their automatic placement (``--auto``)
  and their export as per-worker scripts.
* ``kernel/``: the coordinator in the kernel: ``Cluster`` (the API) over ``Scheduler``
  (dataflow state, sole owner of its lock, no I/O under it) and ``Supervisor``
  (processes, links, deaths); ``launchers/`` place workers (here, SSH, Slurm, MPI, or
  by joining), ``relay.py`` passes values between workers that cannot reach each other.
* ``worker/``: the worker process, ``python -m ipyworkers.worker``.
* ``notebook/``: magics, cell outputs, the dashboard and timeline.
* ``wire.py`` (Unix, TCP and TLS links), ``addressing.py`` (their address strings),
  ``tls.py`` (a CA per session, credentials files), ``protocol.py``, ``serialize.py``,
  ``errors.py``, ``transforms.py`` (IPython's cell syntax into Python): shared by both sides.

Threads, each with one owner and one job:

Kernel process (per cluster)
  caller's thread      the API: validates, submits, waits (interruptibly).
  ipyworkers-send-N    writes queued frames to worker N's control link, so no caller
                       blocks on a socket and a frame is whole or absent.
  ipyworkers-read-N    reads worker N's reports and hands them to the scheduler and the
                       task's sink (``kernel/reports.py``); never runs user code.
  ipyworkers-callbacks runs ``Task.add_done_callback`` callbacks (and a map's results,
                       a processor's collector), outside every lock.
  ipyworkers-map-N     a map's feeder: cuts its input into batches and submits them,
                       a few in flight per worker (``kernel/jobs.py``).
  ipyworkers-map-input-N  reads a map's input when it is a plain iterator, into a
                       bounded buffer.
  ipyworkers-monitor   polls worker processes for exits, sends heartbeats, and tells
                       workers of a peer idle after work that went well.
  ipyworkers-accept    takes connections on a TCP/TLS listener (one per listener).
  ipyworkers-handshake one per such connection: TLS, the challenge and the hello, so a
                       silent peer holds up no start (ends within ~15 s at most).
  ipyworkers-spawn     starts worker processes (a long-lived thread, because Linux's
                       parent-death signal follows the thread that forked).
  ipyworkers-dashboard folds events into the timeline and redraws (when shown).
  Processes besides the workers: a launcher's own (an ssh client per remote worker,
  mpiexec, srun), and, once remote workers are asked for, a janitor that removes the
  runtime directory and credential files if the kernel is killed.

Worker process
  main                 runs tasks, one at a time, in arrival order (``TaskRunner``).
  control              reads the control link; dispatches by record type.
  peer-accept          accepts authenticated peer links.
  peer-server          one per incoming peer link: stream records and value requests.
  value-sender         one per value request: waits until the value exists, sends it.
  peer-client-N        one per link this worker opened: replies to its requests.
  output-flush         flushes captured output every 50 ms; tells the kernel when a
                       function call has run long enough to show as started.
  shell-build          builds the IPython shell while the worker already serves
                       (function calls need none; a cell waits for it).
  channel-flush        sends batched stream messages.
  parent-watch         exits when the parent is gone (besides PR_SET_PDEATHSIG).
  A forked group guard process kills the worker's process group when the worker dies
  (a remote worker first makes a group of its own, so the guard never hits another rank).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__
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

if TYPE_CHECKING:
    from .kernel.cluster import Cluster
    from .kernel.tasks import Task, TaskGroup
    from .plan.analysis import CodeNames, analyze

_LAZY = {"Cluster": ".kernel.cluster", "Task": ".kernel.tasks", "TaskGroup": ".kernel.tasks",
         "CodeNames": ".plan.analysis", "analyze": ".plan.analysis"}
"""Imported on first use: a worker process (``python -m ipyworkers.worker``) imports this
package too, and needs none of the kernel's modules, so it starts serving sooner."""


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ipyworkers' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "__version__",
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
