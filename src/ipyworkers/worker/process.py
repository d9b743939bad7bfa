"""The worker process: ``python -m ipyworkers.worker``.

The main thread runs tasks (``TaskRunner``); IO threads keep serving while it does.
The worker exits when its control link closes or its parent dies, and takes its
process group (user subprocesses too) with it. It never touches the session's
runtime directory beyond its own socket: that directory is the kernel's.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from typing import Any

from .. import protocol as p
from .. import wire
from ..errors import WireError
from .channels import Channels
from .fetcher import Fetcher, PeerClient
from .namespace import Namespace
from .output import TaskStream
from .runner import TaskRunner, install_sigint
from .shell import make_shell
from .values import ValueServer

log = logging.getLogger("ipyworkers.worker")

PARENT_POLL_SECONDS = 0.25
FLUSH_SECONDS = 0.05
STREAM_REPORT_TICKS = 4
PR_SET_PDEATHSIG = 1


class Worker:
    def __init__(self, worker_id: int, n_workers: int, conn: wire.Connection, listener: wire.Listener,
                 key: bytes, parent_pid: int | None, colors: str):
        self.id = worker_id
        self.n_workers = n_workers
        self.conn = conn
        self.key = key
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
            p.Peers: lambda msg, parts: self.fetcher.addresses.update(msg.addresses),
            p.Ping: lambda msg, parts: self.emit(p.Pong(msg.seq)),
            p.PeerIdle: lambda msg, parts: self.channels.on_peer_idle(msg.worker, msg.epochs, msg.reason),
            p.PeerBusy: lambda msg, parts: self.channels.on_peer_busy(msg.worker),
            p.PeerLost: lambda msg, parts: self.channels.on_peer_lost(msg.worker, msg.reason),
            p.Shutdown: lambda msg, parts: self.runner.stop(),
        }

    # -- plumbing --------------------------------------------------------------------------

    def emit(self, msg: Any, parts: list | tuple = ()) -> None:
        try:
            self.conn.send(msg, parts)
        except WireError:
            self.die()

    def peer_link(self, dest: int) -> PeerClient:
        return self.fetcher.link(dest)

    def flush_output(self) -> None:
        for stream in (sys.stdout, sys.stderr):
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
            self.die()

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
            self.flush_output()
            self.runner.announce_long_call()
            ticks += 1
            if ticks % STREAM_REPORT_TICKS == 0:
                self.channels.report_all()


# -- starting --------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ipyworkers.worker")
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--n-workers", type=int, required=True)
    parser.add_argument("--connect", required=True, help="the coordinator's address")
    parser.add_argument("--runtime-dir", required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--colors", default="nocolor")
    return parser.parse_args(argv)


def _read_key() -> bytes:
    """The session key comes through stdin (or the environment), never the command line."""
    key_hex = os.environ.pop("IPYWORKERS_KEY", None) or sys.stdin.readline().strip()
    if not key_hex:
        raise SystemExit("ipyworkers worker: no session key on stdin or in IPYWORKERS_KEY")
    return bytes.fromhex(key_hex)


def _set_parent_death_signal(sig: int) -> bool:
    """Linux: the OS itself sends ``sig`` when our parent dies, even if this process is
    stuck in C code holding the GIL, where no thread of ours could notice."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _start_group_guard(kernel_pid: int, runtime_dir: str) -> None:
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


def _guard_fire(kernel_pid: int, runtime_dir: str) -> None:
    if not _alive(kernel_pid):
        shutil.rmtree(runtime_dir, ignore_errors=True)
    os.killpg(0, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running, and not a zombie (a killed kernel stays one until its parent reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    key = _read_key()
    if sys.platform.startswith("linux"):
        _set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != args.parent_pid:
        raise SystemExit("ipyworkers worker: parent is already gone")
    if sys.platform.startswith("linux"):
        _start_group_guard(args.parent_pid, args.runtime_dir)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    conn = wire.connect(args.connect, key)
    peer_path = os.path.join(args.runtime_dir, f"peer-{args.id}-{os.getpid()}.sock")
    listener = wire.Listener(peer_path, key)
    worker = Worker(args.id, args.n_workers, conn, listener, key, args.parent_pid, args.colors)
    conn.send(p.Hello(args.id, os.getpid(), socket.gethostname(), peer_path, p.local_versions()))
    install_sigint(worker.runner)
    worker.serve_forever()
