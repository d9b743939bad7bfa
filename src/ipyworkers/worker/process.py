"""The worker process: ``python -m ipyworkers.worker``.

The main thread runs tasks (``TaskRunner``); IO threads keep serving while it does.
The worker exits when its control link closes or its parent dies, and takes its
process group (user subprocesses too) with it. It never touches the session's
runtime directory beyond its own socket: that directory is the kernel's.

A local worker is a child of the kernel (``--parent-pid``, ``--runtime-dir``, the key on
stdin) and listens for peers on a Unix socket. A remote one (started over SSH, by
srun or mpiexec, or by hand with the join command) has ``--credentials FILE`` (or ``-``
for stdin), puts itself in a process group of its own, and listens for peers on
TCP/TLS, advertising the address its control link leaves from. Its id comes from
``--id``, from ``--first-id`` plus its MPI/Slurm rank, or, for a worker that joins, from
the kernel's ``Welcome``.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import shutil
import signal
import socket
import ssl
import sys
import threading
import time
from typing import Any

from .. import addressing, wire
from .. import protocol as p
from ..errors import WireError
from ..tls import Credentials
from .channels import Channels
from .fetcher import Fetcher, PeerClient
from .namespace import Namespace
from .output import TaskStream
from .runner import TaskRunner, configure_main_thread
from .shell import make_shell
from .values import ValueServer

log = logging.getLogger("ipyworkers.worker")

PARENT_POLL_SECONDS = 0.25
FLUSH_SECONDS = 0.05
STREAM_REPORT_TICKS = 4
PR_SET_PDEATHSIG = 1
GUARD_KERNEL_SECONDS = 0.5
WELCOME_SECONDS = 30.0
RANK_VARIABLES = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID")


class Worker:
    def __init__(self, worker_id: int, n_workers: int, conn: wire.Connection, listener: wire.Listener,
                 key: bytes, parent_pid: int | None, colors: str, peer_tls: ssl.SSLContext | None = None):
        self.id = worker_id
        self.n_workers = n_workers
        self.conn = conn
        self.key = key
        self.peer_tls = peer_tls
        self.exiting = False
        self.parent_pid = parent_pid
        self.colors = colors
        self.channels = Channels(self)
        self.namespace = Namespace({
            "worker_id": worker_id, "n_workers": n_workers, "send": self.channels.send,
            "recv": self.channels.recv, "close": self.channels.close, "stream": self.channels.stream,
        })
        self.fetcher = Fetcher(self)
        self.values = ValueServer(self, listener)
        self.runner = TaskRunner(self)
        self._handlers = {
            p.Run: self._on_run,
            p.Interrupt: lambda msg, parts: self.runner.interrupt(msg.task),
            p.Forget: lambda msg, parts: self.namespace.record_outcome(msg.task, msg.reason),
            p.Get: lambda msg, parts: self.values.answer(self.conn, msg),
            p.Peers: self._on_peers,
            p.Value: lambda msg, parts: self.fetcher.relayed(msg, parts),
            p.Ping: lambda msg, parts: self.emit(p.Pong(msg.seq, time.monotonic())),
            p.PeerIdle: lambda msg, parts: self.channels.on_peer_idle(msg.worker, msg.epochs, msg.reason, msg.failed),
            p.PeerBusy: lambda msg, parts: self.channels.on_peer_busy(msg.worker),
            p.PeerLost: lambda msg, parts: self.channels.on_peer_lost(msg.worker, msg.reason),
            p.Shutdown: lambda msg, parts: self.runner.stop(),
        }

    # -- plumbing --------------------------------------------------------------------------

    def emit(self, msg: Any, parts: list | tuple = ()) -> None:
        try:
            self.conn.send(msg, parts)
        except WireError:
            if not self.exiting:
                self.die()

    def peer_link(self, dest: int) -> PeerClient:
        return self.fetcher.link(dest)

    def flush_output(self, wait: bool = True) -> None:
        """Send what tasks printed and is still buffered. ``wait=False`` (the flush thread)
        skips a stream another thread is sending on right now."""
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, TaskStream):
                stream.send_buffered(wait)
            else:
                stream.flush()

    def die(self) -> None:
        """The kernel is gone: take this process group, user subprocesses too, down."""
        try:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        finally:
            os._exit(1)

    # -- threads ----------------------------------------------------------------------------

    def serve_forever(self) -> None:
        self.values.start()
        for target, name in ((self._control_loop, "control"), (self._watch_parent, "parent-watch"),
                             (self._flush_loop, "output-flush")):
            threading.Thread(target=target, name=name, daemon=True).start()
        sys.stdout = TaskStream("stdout", sys.__stdout__, self.emit, lambda: self.runner.current_output_task)
        sys.stderr = TaskStream("stderr", sys.__stderr__, self.emit, lambda: self.runner.current_output_task)
        self.runner.make_shell = lambda: make_shell(self.runner, self.namespace.ns, self.colors)
        self.runner.loop()
        self.flush_output()
        self.exiting = True  # a clean exit (0): under mpiexec or srun, a killed rank can take the others along
        self.conn.close()
        self.values.close()
        os._exit(0)

    def _control_loop(self) -> None:
        try:
            while True:
                msg, parts = self.conn.recv()
                handler = self._handlers.get(type(msg))
                if handler is None:
                    log.warning("unexpected %s on the control link", type(msg).__name__)
                    continue
                try:
                    handler(msg, parts)
                except Exception:
                    log.exception("handling %s failed", type(msg).__name__)
        except WireError as exc:
            log.debug("control link closed: %s", exc)
            if not self.exiting:
                self.die()

    def _on_peers(self, msg: p.Peers, parts: list) -> None:
        self.fetcher.addresses.update(msg.addresses)
        if msg.addresses:
            self.n_workers = max(self.n_workers, *msg.addresses)
            self.namespace._provided["n_workers"] = self.namespace.ns["n_workers"] = self.n_workers

    def _on_run(self, msg: p.Run, parts: list) -> None:
        self.fetcher.prefetch(msg)
        self.runner.submit(msg, parts)

    def _watch_parent(self) -> None:
        if self.parent_pid is None:
            return
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            if os.getppid() != self.parent_pid:
                self.die()

    def _flush_loop(self) -> None:
        ticks = 0
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush_output(wait=False)
            self.runner.announce_long_call()
            ticks += 1
            if ticks % STREAM_REPORT_TICKS == 0:
                self.channels.report_all()


# -- starting --------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ipyworkers.worker")
    parser.add_argument("--connect", required=True, help="the coordinator's address (a path, tcp:// or tls://)")
    parser.add_argument("--credentials", help="the session's credentials file ('-': read it from stdin)")
    parser.add_argument("--id", type=int, help="this worker's id (joined workers get one from the kernel)")
    parser.add_argument("--first-id", type=int, help="id of rank 0 under mpiexec or srun: id = first + rank")
    parser.add_argument("--token", default="", help="the launch this worker belongs to (not a secret)")
    parser.add_argument("--n-workers", type=int, default=0)
    parser.add_argument("--runtime-dir", help="local workers: the session's runtime directory")
    parser.add_argument("--parent-pid", type=int, help="local workers: the kernel's pid")
    parser.add_argument("--peer-listen", default=None, help="HOST:PORT to listen on for peers (default: all, any)")
    parser.add_argument("--peer-advertise", default=None,
                        help="HOST[:PORT] other workers reach this one at (default: where the control link leaves)")
    parser.add_argument("--colors", default="nocolor")
    return parser.parse_args(argv)


def _read_credentials(path: str | None) -> Credentials:
    """The session key comes through stdin, the environment or a credentials file (with
    the TLS certificates), never the command line."""
    if path is not None:
        try:
            text = sys.stdin.read() if path == "-" else open(path).read()
            return Credentials.loads(text)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"ipyworkers worker: cannot read the credentials {path!r}: {exc}") from None
    key_hex = os.environ.pop("IPYWORKERS_KEY", None) or sys.stdin.readline().strip()
    if not key_hex:
        raise SystemExit("ipyworkers worker: no session key on stdin or in IPYWORKERS_KEY")
    if key_hex.startswith("#") or key_hex.startswith("-----"):
        return Credentials.loads(key_hex + "\n" + sys.stdin.read())
    return Credentials(bytes.fromhex(key_hex))


def _worker_id(args: argparse.Namespace) -> int:
    if args.id is not None:
        return args.id
    if args.first_id is not None:
        for name in RANK_VARIABLES:
            if os.environ.get(name, "").isdigit():
                return args.first_id + int(os.environ[name])
        raise SystemExit(f"ipyworkers worker: --first-id needs a rank in one of {', '.join(RANK_VARIABLES)}")
    return 0


def _set_parent_death_signal(sig: int) -> bool:
    """Linux: the OS itself sends ``sig`` when our parent dies, even if this process is
    stuck in C code holding the GIL, where no thread of ours could notice."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _own_group() -> None:
    """A remote worker leads a process group of its own, so that taking its group down
    never touches another rank of the same mpiexec or srun, nor the shell that ran it."""
    if os.getpgrp() != os.getpid():
        try:
            os.setsid()
        except OSError:
            os.setpgid(0, 0)


def _start_group_guard(kernel_pid: int | None, runtime_dir: str | None) -> None:
    """Fork a tiny guard that kills this process group when this worker dies, however it
    dies: the parent-death signal reaches only the worker, not the processes its user
    code started. If the kernel died too (killed, so it could not clean up), the guard
    also removes the session's runtime directory. Forked before any thread exists, so
    the child is a clean copy."""
    worker_pid = os.getpid()
    if os.fork() != 0:
        return
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *_: _guard_fire(kernel_pid, runtime_dir))
        if _set_parent_death_signal(signal.SIGTERM) and os.getppid() == worker_pid:
            while True:
                signal.pause()
        _guard_fire(kernel_pid, runtime_dir)
    finally:
        os._exit(0)


def _guard_fire(kernel_pid: int | None, runtime_dir: str | None) -> None:
    """Kill the group at once, from outside it; then, for a local worker, look at the
    kernel: a killed kernel whose threads are still being torn down is not yet a zombie,
    so wait for it a little before removing its runtime directory."""
    group = os.getpgrp()
    os.setpgid(0, 0)
    os.killpg(group, signal.SIGKILL)
    if kernel_pid is None or not runtime_dir:
        os._exit(0)
    deadline = time.monotonic() + GUARD_KERNEL_SECONDS
    while _alive(kernel_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if not _alive(kernel_pid):
        shutil.rmtree(runtime_dir, ignore_errors=True)
    os._exit(0)


def _alive(pid: int) -> bool:
    """Running, and not a zombie (a killed kernel stays one until its parent reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _peer_listener(args: argparse.Namespace, conn: wire.Connection, creds: Credentials,
                   wid: int) -> tuple[wire.Listener, str]:
    """Local workers: a Unix socket in the runtime directory. Remote ones: TCP (TLS in a
    secure session) on every interface, advertised at the address the control link
    leaves from (so at an interface the kernel's network reaches)."""
    local_host = conn.local_host
    if local_host is None and args.peer_listen is None:
        if not args.runtime_dir:
            raise SystemExit("ipyworkers worker: a worker on a Unix socket needs --runtime-dir")
        path = os.path.join(args.runtime_dir, f"peer-{wid or 'joined'}-{os.getpid()}.sock")
        return wire.Listener(path, creds.key), path
    scheme = "tls" if creds.secure else "tcp"
    bind = args.peer_listen or ("[::]:0" if local_host and ":" in local_host else "0.0.0.0:0")
    host, port = addressing.split_host_port(bind)
    listener = wire.Listener(addressing.format_address(scheme, host, port), creds.key, tls=creds.context(server=True))
    host, port = addressing.host_and_port(args.peer_advertise or local_host or socket.gethostname(), listener.port)
    return listener, addressing.format_address(scheme, host, port)


def _welcome(conn: wire.Connection) -> p.Welcome:
    """The kernel's answer to our hello: our id, or why we were refused."""
    conn.sock.settimeout(WELCOME_SECONDS)
    try:
        msg, _ = conn.recv()
    except (WireError, OSError) as exc:
        raise SystemExit(f"ipyworkers worker: the coordinator closed the link before taking this worker: {exc}") \
            from None
    conn.sock.settimeout(None)
    if isinstance(msg, p.Refused):
        raise SystemExit(f"ipyworkers worker: refused by the coordinator: {msg.reason}")
    if not isinstance(msg, p.Welcome):
        raise SystemExit(f"ipyworkers worker: unexpected {type(msg).__name__} instead of a welcome")
    return msg


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    creds = _read_credentials(args.credentials)
    local = args.parent_pid is not None
    if local and sys.platform.startswith("linux"):
        _set_parent_death_signal(signal.SIGKILL)
    if local and os.getppid() != args.parent_pid:
        raise SystemExit("ipyworkers worker: parent is already gone")
    if not local:
        _own_group()
    if sys.platform.startswith("linux"):
        _start_group_guard(args.parent_pid, args.runtime_dir)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    wid = _worker_id(args)
    try:
        conn = wire.connect(args.connect, creds.key, tls=creds.context(server=False))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"ipyworkers worker on {socket.gethostname()}: cannot join the coordinator at "
                         f"{args.connect}: {exc}") from None
    listener, peer_address = _peer_listener(args, conn, creds, wid)
    conn.send(p.Hello(wid, os.getpid(), socket.gethostname(), peer_address, p.local_versions(), args.token,
                    time.monotonic()))
    welcome = _welcome(conn)
    worker = Worker(welcome.worker, max(welcome.n_workers, args.n_workers), conn, listener, creds.key,
                    args.parent_pid, args.colors, peer_tls=creds.context(server=False))
    configure_main_thread(worker.runner)
    worker.serve_forever()
