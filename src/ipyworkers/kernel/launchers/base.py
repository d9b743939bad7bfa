"""What every launcher shares: the context it is given and the handles it returns.

A launcher's ``start(ids, ctx, started)`` starts workers ``ids`` so that they connect
back to ``ctx`` (an address and credentials), putting a handle for each into
``started`` as soon as it exists (so a start that fails half way stops what it began).
The supervisor polls and stops workers through those handles only:

* ``WorkerProcess``: one local process per worker (a local worker, an ``ssh`` client);
* ``BatchMember``: one of the workers of a shared process (``mpiexec``, ``srun``, a
  Slurm batch job), which ends once its last member is stopped;
* ``JoinSlot``: a worker that joins by itself; nothing here to poll or kill, its
  control link is its life.

A handle's ``accepts(hello)`` says whether a worker's hello is the one it waits for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...tls import Credentials
from .. import addresses


@dataclass
class LaunchContext:
    """Where workers connect, with what, and what else they need to know."""

    address: str
    """The listener's address as bound (a path, or ``tls://0.0.0.0:PORT``)."""
    credentials: Credentials
    runtime_dir: Path
    colors: str
    n_workers: int
    """The highest worker id once this launch is done."""
    token: str
    """Names this launch (not a secret): a hello must carry it to claim a slot."""
    advertise: str | None = None
    credentials_path: str | None = None
    """A 0600 copy of the worker credentials on this host (made on request)."""
    write_credentials: Callable[[], str] | None = None

    @property
    def key(self) -> bytes:
        return self.credentials.key

    def connect_address(self, host: str | None = None) -> str:
        """The address for workers on ``host`` (None: any host) to connect to."""
        from ... import addressing

        scheme, target = addressing.parse_address(self.address)
        if scheme == "unix":
            return self.address
        name, port = addresses.advertised(target[0], target[1], self.advertise, host)
        return addressing.format_address(scheme, name, port)

    def credentials_file(self) -> str:
        if self.credentials_path is None:
            self.credentials_path = self.write_credentials()
        return self.credentials_path


class Launcher:
    """Base of every launcher. ``remote``: workers connect over TCP/TLS (to a listener on
    ``listen``, default every interface), not a Unix socket."""

    remote = True
    name = "launcher"

    def __init__(self, *, python: str = "python3", listen: str | None = None, advertise: str | None = None,
                 insecure: bool = False, env: dict[str, str] | None = None, worker_args: list[str] | None = None):
        self.python = python
        self.listen = listen
        self.advertise = advertise
        self.insecure = insecure
        self.env = dict(env or {})
        self.worker_args = list(worker_args or [])

    def start(self, ids: list[int], ctx: LaunchContext, started: dict[int, Any]) -> None:
        raise NotImplementedError

    def worker_command(self, ctx: LaunchContext, credentials: str, host: str | None = None,
                       ids: str | None = None) -> list[str]:
        """``python -m ipyworkers.worker`` with everything but secrets on its command line."""
        cmd = [self.python, "-m", "ipyworkers.worker", "--connect", ctx.connect_address(host),
               "--credentials", credentials, "--token", ctx.token, "--n-workers", str(ctx.n_workers),
               "--colors", ctx.colors]
        if ids is not None:
            cmd += ids.split()
        return cmd + self.worker_args


def find_tool(name: str) -> str:
    """``name`` on PATH, else beside this Python (a venv's ``bin``, where ``pip install
    mpich`` puts ``mpiexec``), else the bare name (the error then says it is missing)."""
    import shutil

    return (shutil.which(name) or shutil.which(name, path=os.path.dirname(sys.executable)) or name)


def parent_death_signal(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """For ``preexec_fn``: a launcher's own process (ssh, mpiexec, srun) gets ``sig`` when
    the kernel dies, and ends its workers its own way."""

    def set_it() -> None:
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0)
        except (OSError, AttributeError):
            pass

    return set_it


@dataclass
class WorkerProcess:
    worker_id: int
    popen: subprocess.Popen
    log_path: Path
    token: str | None = None
    host: str = ""

    def accepts(self, hello: Any) -> bool:
        if self.token is not None:
            return hello.token == self.token and hello.worker == self.worker_id
        return hello.pid == self.popen.pid

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def exit_description(self) -> str:
        return describe_code(self.popen.returncode)

    def signal_group(self, sig: int) -> None:
        """Signal the worker's process group: its own subprocesses go too."""
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self, grace: float = 1.0) -> None:
        """SIGTERM, then SIGKILL what ignores it; always reaps, always clears the group."""
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            if self.wait(grace) is None:
                self.signal_group(signal.SIGKILL)
                self.popen.wait()
        self.signal_group(signal.SIGKILL)


def describe_code(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class Batch:
    """One process that runs several workers (``mpiexec``, ``srun``), or a batch job.
    It is stopped once every one of its members has been stopped."""

    def __init__(self, process: Any, ids: list[int], token: str, host: str = ""):
        self.process = process
        self.live = set(ids)
        self.token = token
        self.host = host
        self._lock = threading.Lock()

    def members(self) -> dict[int, BatchMember]:
        return {wid: BatchMember(wid, self) for wid in sorted(self.live)}

    def release(self, wid: int, grace: float) -> None:
        with self._lock:
            self.live.discard(wid)
            last = not self.live
        if last:
            self.process.terminate(grace)


@dataclass
class BatchMember:
    worker_id: int
    batch: Batch
    released: bool = False
    gone: threading.Event = field(default_factory=threading.Event)
    link_is_life = True

    @property
    def pid(self) -> int:
        return self.batch.process.pid

    @property
    def host(self) -> str:
        return self.batch.host

    def accepts(self, hello: Any) -> bool:
        return hello.token == self.batch.token and hello.worker == self.worker_id

    def poll(self) -> int | None:
        return self.batch.process.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        """Until this worker is gone (its link closed), or the whole batch ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.gone.wait(0.05):
            code = self.batch.process.poll()
            if code is not None:
                return code
            if deadline is not None and time.monotonic() >= deadline:
                return None
        return 0

    def log_tail(self, lines: int = 20) -> str:
        return self.batch.process.log_tail(lines)

    def exit_description(self) -> str:
        return self.batch.process.exit_description()

    def signal_group(self, sig: int) -> None:
        """Only the worker itself can be signalled, through its link; the batch goes with
        its last member."""
        if sig == signal.SIGKILL:
            self.terminate(0.5)

    def terminate(self, grace: float = 1.0) -> None:
        self.gone.set()
        if not self.released:
            self.released = True
            self.batch.release(self.worker_id, max(grace, 0.5))


@dataclass
class JoinSlot:
    """A worker that joins with the join command: nothing here to poll or kill."""

    worker_id: int
    host: str = ""
    pid: int = 0
    listener_address: str = ""
    gone: threading.Event = field(default_factory=threading.Event)
    link_is_life = True

    def accepts(self, hello: Any) -> bool:
        return hello.worker == 0 or hello.worker == self.worker_id

    def poll(self) -> int | None:
        return 0 if self.gone.is_set() else None

    def wait(self, timeout: float | None = None) -> int | None:
        return 0 if self.gone.wait(timeout) else None

    def log_tail(self, lines: int = 20) -> str:
        return f"(no worker has joined at {self.listener_address} yet: run the join command on a host)"

    def exit_description(self) -> str:
        return "its link closed"

    def signal_group(self, sig: int) -> None:
        self.gone.set()

    def terminate(self, grace: float = 1.0) -> None:
        self.gone.set()
