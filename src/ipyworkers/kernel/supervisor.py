"""The supervisor: worker processes, their links, startup, deaths, stop and restart.

It alone creates and removes the session's runtime directory (a worker never does, so
one broken worker cannot take the directory from the others). Startup is ordered: the
listener is bound before any worker is told where it is, and a start that fails or is
interrupted part way stops every process it started, reaped, before it raises.

Workers beyond this machine connect to a TCP listener (mutual TLS with the session's
own CA, made on first need; plain TCP only for a launcher marked ``insecure``), one per
distinct ``listen`` setting, bound on first use. Every worker, local or remote, passes
the same checks at its hello: the launch it claims, then the versions.

A worker's death is seen as its link closing, or by the monitor thread polling the
processes; a worker that answers neither a heartbeat nor an interrupt for
``UNRESPONSIVE_SECONDS`` (stopped, or stuck in C code holding the GIL) is marked
unresponsive.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import addressing, tls, wire
from .. import protocol as p
from ..errors import AuthenticationError, WireError, WorkerStartError
from ..protocol import local_versions
from . import janitor
from .acceptor import Acceptor, receive_hello, refuse
from .clocks import hello_offset, in_kernel_clock, place_clock
from .credential_files import CredentialFiles
from .launchers import JoinSlot, LaunchContext
from .links import DROPPED, SENT, Ticket, WorkerLink
from .relay import Relay
from .resources import Sampler

log = logging.getLogger("ipyworkers.kernel")

STOP_GRACE = 1.0
MONITOR_SECONDS = 0.2
PING_SECONDS = 1.0
UNRESPONSIVE_SECONDS = 2.0
UP, LOST, STOPPING = "up", "lost", "stopping"


@dataclass
class WorkerHandle:
    id: int
    process: Any
    link: WorkerLink
    pid: int
    host: str
    peer_address: str
    state: str = UP
    ping: Ticket | None = None
    ping_sent: float | None = None
    ping_seq: int = 0
    last_pong: float = 0.0
    unresponsive: bool = False
    launcher: str = "local"
    clock_offset: float = 0.0
    """Add to a time this worker reports to get the kernel's clock (0 on this host)."""
    clock_error: float = math.inf
    """How far ``clock_offset`` may be off, for a worker on another host: half the shortest
    ping round trip yet (each pong's clock refines it), or unknown (the hello's guess)."""


class Supervisor:
    def __init__(self, launcher: Any, n_workers: int, *, startup_timeout: float, colors: str,
                 on_message: Callable[[int, Any, list], None], on_lost: Callable[[int, str], None]):
        self.launcher = launcher
        self.n_workers = n_workers
        self.on_tick: Callable[[float], None] | None = None
        """Called on the monitor thread every ``MONITOR_SECONDS``, holding no lock."""
        self.startup_timeout = startup_timeout
        self.colors = colors
        self._on_message = on_message
        self._on_lost = on_lost
        self.handles: dict[int, WorkerHandle] = {}
        self._posted: set[WorkerLink] = set()
        self.max_id = 0
        self.credential_files = CredentialFiles()
        self._lock = threading.Lock()
        self._key = b""
        self.runtime_dir: Path | None = None
        self._listener: wire.Listener | None = None
        self._network: dict[tuple[str, str], wire.Listener] = {}
        self._acceptors: dict[int, Acceptor] = {}
        self._session: tls.Session | None = None
        self._janitor: Any = None
        self.relay = Relay(self.post, self.alive)
        self._spawner: ThreadPoolExecutor | None = None
        self._monitor: threading.Thread | None = None
        self.resources = Sampler()
        """CPU and memory of the local workers, sampled by the monitor thread."""
        self._stopping = threading.Event()

    # -- opening and closing --------------------------------------------------------------

    def open(self) -> None:
        self._key = os.urandom(32)
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="ipyworkers-"))
        os.chmod(self.runtime_dir, 0o700)
        self._stopping.clear()
        try:
            self._listener = wire.Listener(str(self.runtime_dir / "control.sock"), self._key,
                                           backlog=max(16, self.n_workers))
        except BaseException:
            self._remove_runtime()
            raise
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="ipyworkers-spawn")
        self._monitor = threading.Thread(target=self._watch, name="ipyworkers-monitor", daemon=True)
        self._monitor.start()

    def stop(self) -> None:
        """A polite request, then SIGTERM, then SIGKILL of each worker's process group."""
        self._stopping.set()
        with self._lock:
            handles = list(self.handles.values())
            self.handles.clear()
        for handle in handles:
            handle.state = STOPPING
            handle.link.post(p.Shutdown())
        deadline = time.monotonic() + STOP_GRACE
        for handle in handles:
            handle.process.wait(max(0.0, deadline - time.monotonic()))
        for handle in handles:
            handle.process.terminate(grace=STOP_GRACE)
            handle.link.close()
        self.credential_files.drop()
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(timeout=2)
        if self._spawner is not None:
            self._spawner.shutdown(wait=True)
        self._remove_runtime()

    def _remove_runtime(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for acceptor in self._acceptors.values():
            acceptor.close()
        self._acceptors.clear()
        self._network.clear()
        self._session = None
        janitor.stop(self._janitor)
        self._janitor = None
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None

    # -- listeners and credentials ------------------------------------------------------------

    def listener_for(self, launcher: Any) -> wire.Listener:
        """The Unix listener for local workers; a TCP/TLS one (bound on first use, every
        interface unless the launcher says) for the others."""
        if not getattr(launcher, "remote", False):
            return self._listener
        scheme = "tcp" if launcher.insecure else "tls"
        listen = launcher.listen or "0.0.0.0:0"
        listener = self._network.get((scheme, listen))
        if listener is None:
            host, port = addressing.split_host_port(listen if ":" in listen else f"{listen}:0")
            creds = self.credentials(launcher.insecure, coordinator=True)
            listener = wire.Listener(addressing.format_address(scheme, host, port), self._key,
                                     backlog=64, tls=creds.context(server=True))
            self._network[(scheme, listen)] = listener
            self._acceptors[id(listener)] = Acceptor(listener)
        if self._janitor is None:
            self._janitor = self._spawner.submit(janitor.start, self.runtime_dir, os.getpid()).result()
        return listener

    def credentials(self, insecure: bool, coordinator: bool = False) -> tls.Credentials:
        """The session's credentials (its CA made on first need): the key alone if insecure."""
        if insecure:
            return tls.Credentials(self._key)
        if self._session is None:
            self._session = tls.new_session(self._key)
        return self._session.coordinator if coordinator else self._session.worker

    # -- starting workers ---------------------------------------------------------------------

    def next_ids(self, count: int) -> list[int]:
        return list(range(self.max_id + 1, self.max_id + 1 + count))

    def spawn(self, ids: Iterable[int], launcher: Any = None) -> list[WorkerHandle]:
        """Start workers and wait until each says hello; on any failure or interrupt, stop
        every process this call started (reaped, so no zombie) and raise."""
        launcher = launcher or self.launcher
        ids = list(ids)
        self.max_id = max([self.max_id, *ids])
        listener = self.listener_for(launcher)
        creds = self.credentials(launcher.insecure) if getattr(launcher, "remote", False) else tls.Credentials(
            self._key)
        ctx = LaunchContext(listener.address, creds, self.runtime_dir, self.colors, self.max_id,
                            secrets.token_hex(8), advertise=getattr(launcher, "advertise", None))
        ctx.write_credentials = lambda: self.credential_files.write(creds, ctx.connect_address(), self.runtime_dir)
        started: dict[int, Any] = {}
        acceptor = self._acceptors.get(id(listener))
        if acceptor is not None:
            acceptor.open()
        try:
            self._launch(launcher, ids, ctx, started)
            handles = self._await_hellos(started, listener, getattr(launcher, "name", "local"))
        except BaseException:
            for process in started.values():
                process.terminate(grace=0.2)
            raise
        finally:
            if acceptor is not None:
                acceptor.close_start()
        with self._lock:
            for handle in handles:
                self.handles[handle.id] = handle
        for handle in handles:
            handle.link.start()
            if handle.clock_offset:  # another host's clock: place it now, not at the first heartbeat
                self._ping(handle, time.monotonic())
        return handles

    def _launch(self, launcher: Any, ids: list[int], ctx: LaunchContext, started: dict[int, Any]) -> None:
        """Processes are started from one long-lived thread: Linux's parent-death signal
        fires when the *thread* that forked a child ends, so it must not be a thread
        that ends before the kernel does."""
        future: Future = self._spawner.submit(launcher.start, ids, ctx, started)
        try:
            future.result()
        except (OSError, RuntimeError, ValueError) as exc:
            raise WorkerStartError(f"the {getattr(launcher, 'name', 'worker')} launcher could not start "
                                   f"worker(s) {', '.join(map(str, ids))}: {exc}") from exc
        except BaseException:
            try:
                future.result(timeout=10)
            except BaseException:
                pass
            raise

    def _await_hellos(self, started: dict[int, Any], listener: wire.Listener, kind: str) -> list[WorkerHandle]:
        deadline = time.monotonic() + self.startup_timeout
        waiting = dict(started)
        handles: list[WorkerHandle] = []
        try:
            while waiting:
                self._check_startup(waiting, deadline)
                handle = self._accept_one(waiting, listener, kind)
                if handle is not None:
                    handles.append(handle)
                    del waiting[handle.id]
        except BaseException:
            for handle in handles:
                handle.link.close()
            raise
        return handles

    def _check_startup(self, waiting: dict[int, Any], deadline: float) -> None:
        for wid, process in waiting.items():
            if process.poll() is not None:
                raise WorkerStartError(f"worker {wid}{_on(process)} exited during startup "
                                       f"({process.exit_description()}); its last output:\n{process.log_tail()}")
        if time.monotonic() > deadline:
            late = ", ".join(map(str, sorted(waiting)))
            first = waiting[min(waiting)]
            raise WorkerStartError(f"worker(s) {late} did not report ready within {self.startup_timeout} s; "
                                   f"last output{_on(first)}:\n{first.log_tail()}")

    def _next_hello(self, listener: wire.Listener) -> tuple[wire.Connection, Any] | None:
        acceptor = self._acceptors.get(id(listener))
        if acceptor is not None:
            return acceptor.next(timeout=0.05)
        try:
            conn = listener.accept(timeout=0.05)
        except (TimeoutError, AuthenticationError):
            return None
        hello = receive_hello(conn)
        return None if hello is None else (conn, hello)

    def _accept_one(self, waiting: dict[int, Any], listener: wire.Listener, kind: str) -> WorkerHandle | None:
        got = self._next_hello(listener)
        if got is None:
            return None
        conn, hello = got
        wid = _claim(hello, waiting) if isinstance(hello, p.Hello) else None
        if wid is None:
            refuse(conn, "no worker of this cluster is waiting to start with that id or launch")
            return None
        self._check_versions(hello, conn, wid)
        try:
            conn.send(p.Welcome(wid, self.max_id))
        except WireError:
            conn.close()
            return None
        process = waiting[wid]
        if isinstance(process, JoinSlot):
            process.pid, process.host = hello.pid, hello.host
        link = WorkerLink(wid, conn, self._on_worker_message, self._on_link_closed)
        offset = 0.0 if conn.local_host is None else hello_offset(time.monotonic(), hello.clock)
        return WorkerHandle(wid, process, link, hello.pid, hello.host, hello.peer_address, launcher=kind,
                            clock_offset=offset)

    @staticmethod
    def _check_versions(hello: p.Hello, conn: wire.Connection, wid: int) -> None:
        ours = local_versions()
        for what, mine in ours.items():
            theirs = hello.versions.get(what)
            if theirs != mine:
                message = (f"worker {wid} on {hello.host} runs {what} {theirs}, "
                           f"the kernel runs {what} {mine}: they must match")
                refuse(conn, message)
                raise WorkerStartError(message)

    # -- links ------------------------------------------------------------------------------------

    def post(self, wid: int, msg: Any, parts: list | tuple = ()) -> Ticket:
        handle = self.handles.get(wid)
        if handle is None or handle.state != UP:
            ticket = Ticket(msg, parts)
            ticket.state = DROPPED
            return ticket
        return handle.link.post(msg, parts)

    def queue(self, wid: int, msg: Any, parts: list | tuple = ()) -> Ticket:
        """``post`` for a caller that holds a lock and will ``pump`` once it does not."""
        handle = self.handles.get(wid)
        if handle is None or handle.state != UP:
            return self.post(wid, msg, parts)
        self._posted.add(handle.link)
        return handle.link.post(msg, parts, wake=False)

    def pump(self) -> None:
        """Let the calling thread (holding no lock) write the small frames just posted."""
        while self._posted:
            try:
                link = self._posted.pop()
            except KeyError:
                return
            link.pump()

    def unpost(self, ticket: Ticket) -> bool:
        for handle in list(self.handles.values()):
            if handle.link.cancel(ticket):
                return True
        return False

    def alive(self, wid: int) -> bool:
        handle = self.handles.get(wid)
        return handle is not None and handle.state == UP

    def interrupt(self, wid: int, task: int | None = None) -> None:
        """Send the interrupt, and a ping behind it: whether the worker answers tells a
        worker that ignores interrupts from one that answers nothing."""
        self.post(wid, p.Interrupt(task))
        handle = self.handles.get(wid)
        if handle is not None:
            self._ping(handle, time.monotonic())

    def answered_since(self, wid: int, since: float) -> bool:
        handle = self.handles.get(wid)
        return handle is not None and handle.last_pong >= since

    def on_pong(self, wid: int, pong: p.Pong) -> None:
        handle = self.handles.get(wid)
        if handle is not None:
            now = time.monotonic()
            if handle.clock_offset and handle.ping_sent is not None:
                handle.clock_offset, handle.clock_error = place_clock(handle.clock_offset, handle.clock_error,
                                                                      handle.ping_sent, now, pong.clock)
            handle.last_pong = now
            handle.ping_sent = None
            handle.unresponsive = False

    def _on_worker_message(self, wid: int, msg: Any, parts: list) -> None:
        handle = self.handles.get(wid)
        if handle is not None and handle.clock_offset:
            msg = in_kernel_clock(msg, handle.clock_offset)
        if isinstance(msg, p.Relay):
            self.relay.request(wid, msg)
        elif not (isinstance(msg, p.Value) and self.relay.answer(msg, parts)):
            self._on_message(wid, msg, parts)

    # -- deaths and restarts ------------------------------------------------------------------------

    def _on_link_closed(self, wid: int, reason: str) -> None:
        handle = self.handles.get(wid)
        if handle is None:
            return
        if getattr(handle.process, "link_is_life", False):
            handle.process.terminate(grace=0)
        if handle.state == UP:
            self._lose(handle)

    def _lose(self, handle: WorkerHandle) -> None:
        with self._lock:
            if handle.state != UP or self._stopping.is_set():
                return
            handle.state = LOST
        handle.process.wait(timeout=0.0 if getattr(handle.process, "link_is_life", False) else 2.0)
        how = handle.process.exit_description()
        handle.process.signal_group(signal.SIGKILL)
        handle.link.close()
        log.debug("worker %d died (%s)", handle.id, how)
        self.relay.lost(handle.id)
        self._on_lost(handle.id, f"worker {handle.id} died ({how})")

    def retire(self, wid: int) -> None:
        """Stop one worker for good (for a restart): kill its group, close its link."""
        with self._lock:
            handle = self.handles.pop(wid, None)
        if handle is None:
            return
        handle.state = STOPPING
        handle.link.post(p.Shutdown())
        handle.process.wait(STOP_GRACE if getattr(handle.process, "link_is_life", False) else 0.0)
        handle.process.terminate(grace=STOP_GRACE)
        handle.link.close(flush_seconds=0.5)
        self.relay.lost(wid)

    def forget(self, wid: int) -> None:
        with self._lock:
            handle = self.handles.get(wid)
            if handle is not None and handle.state == LOST:
                del self.handles[wid]

    def _watch(self) -> None:
        """Catches deaths a link does not show (say, a forked child of user code keeping the
        socket open) and sends the heartbeats."""
        last_ping = 0.0
        while not self._stopping.wait(MONITOR_SECONDS):
            for handle in list(self.handles.values()):
                if handle.state == UP and handle.process.poll() is not None:
                    self._lose(handle)
            self.resources.maybe_sample({h.id: h.pid for h in list(self.handles.values())
                                         if h.state == UP and h.launcher == "local"})
            now = time.monotonic()
            if self.on_tick is not None:
                self.on_tick(now)
            if now - last_ping >= PING_SECONDS:
                last_ping = now
                self._heartbeat(now)

    def _heartbeat(self, now: float) -> None:
        for handle in list(self.handles.values()):
            if handle.state != UP:
                continue
            if handle.ping_sent is None:
                self._ping(handle, now)
            elif handle.ping.state == SENT:
                handle.unresponsive = now - handle.ping_sent > UNRESPONSIVE_SECONDS
            else:  # still in our own outbox, behind a large push: says nothing of the worker
                handle.ping_sent = now

    @staticmethod
    def _ping(handle: WorkerHandle, now: float) -> None:
        handle.ping_seq += 1
        handle.ping_sent = now
        handle.ping = handle.link.post(p.Ping(handle.ping_seq))

    def row(self, wid: int) -> dict[str, Any] | None:
        handle = self.handles.get(wid)
        if handle is None:
            return None
        return {"pid": handle.pid, "host": handle.host, "lost": handle.state != UP,
                "unresponsive": handle.unresponsive and handle.state == UP, "launcher": handle.launcher,
                "address": handle.peer_address, "relayed_from": sorted(self.relay.routes.get(wid, ())),
                **self.resources.figures(wid)}


def _claim(hello: p.Hello, waiting: dict[int, Any]) -> int | None:
    """The id a hello takes: the one it names, if the launch it names waits for it; or, for
    a worker that joined with no id, the lowest id waiting for a joiner."""
    if hello.worker and hello.worker in waiting and waiting[hello.worker].accepts(hello):
        return hello.worker
    if not hello.worker:
        for wid in sorted(waiting):
            if waiting[wid].accepts(hello):
                return wid
    return None


def _on(process: Any) -> str:
    host = getattr(process, "host", "")
    return f" on {host}" if host else ""
