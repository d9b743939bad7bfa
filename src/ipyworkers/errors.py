"""Every error ipyworkers raises, under one base, ``IpyworkersError``."""

from __future__ import annotations


class IpyworkersError(Exception):
    """Base of every ipyworkers error."""


class ClusterError(IpyworkersError):
    """Misuse of a cluster: not started, unknown worker, bad argument."""


class WorkerStartError(ClusterError):
    """A worker did not start; the message holds the tail of its output."""


class WireError(IpyworkersError, OSError):
    """A link broke or the other end broke the protocol. The one error for a closed link."""


class ConnectionClosed(WireError):
    """The other end closed the link."""


class FrameError(WireError):
    """A frame header announced something we refuse to read."""


class AuthenticationError(WireError):
    """The other end did not prove it holds the session key."""


class SerializationError(IpyworkersError):
    """A value could not be pickled or unpickled; the message names it."""


class ChannelError(IpyworkersError):
    """The other end of a stream failed, died, or is not there; the message says which."""


class TagError(IpyworkersError, ValueError):
    """A statement's worker tag is missing or names no worker; the message says which line."""


class TaskError(IpyworkersError):
    """A task ended without running its code to the end, for a reason outside that code."""

    verb = "ended"

    def __init__(self, worker: int, task: int, message: str):
        super().__init__(message)
        self.worker = worker
        self.task = task

    def __str__(self) -> str:
        return f"task #{self.task} on worker {self.worker} {self.verb}: {self.args[0]}"


class TaskCancelled(TaskError):
    """A task did not run: an input it needs failed or was lost, or it was cancelled."""

    verb = "was cancelled"


class TaskFailed(TaskError):
    """A task could not run or finish for a reason outside its code (a dead worker, a value
    that would not unpickle)."""

    verb = "failed"


class RemoteError(IpyworkersError):
    """User code raised on a worker; the traceback points at the cell's lines."""

    def __init__(self, worker: int, task: int, ename: str, evalue: str, traceback: list[str]):
        super().__init__(f"{ename}: {evalue}")
        self.worker = worker
        self.task = task
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback

    def __str__(self) -> str:
        return f"{self.ename}: {self.evalue} (task #{self.task} on worker {self.worker})"

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of the local traceback of the magic."""
        return [f"[worker {self.worker}] task #{self.task}", *self.traceback]
