"""The supervisor: worker processes, their links, startup, deaths, stop and restart.

It alone creates and removes the session's runtime directory (a worker never does, so
one broken worker cannot take the directory from the others). Startup is ordered: the
listener is bound before any worker is told where it is, and a start that fails or is
interrupted part way stops every process it started, reaped, before it raises.

A worker's death is seen as its link closing, or by the monitor thread polling the
processes; a worker that answers neither a heartbeat nor an interrupt for
``UNRESPONSIVE_SECONDS`` (stopped, or stuck in C code holding the GIL) is marked
unresponsive.
"""

from __future__ import annotations

import logging
import os
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

from .. import protocol as p
from .. import wire
from ..errors import AuthenticationError, WireError, WorkerStartError
from ..protocol import local_versions
from .launchers import WorkerProcess
from .links import DROPPED, Ticket, WorkerLink

log = logging.getLogger("ipyworkers.kernel")

STOP_GRACE = 1.0
MONITOR_SECONDS = 0.2
PING_SECONDS = 1.0
UNRESPONSIVE_SECONDS = 2.0
HELLO_SECONDS = 5.0
UP, LOST, STOPPING = "up", "lost", "stopping"


@dataclass
class WorkerHandle:
    id: int
    process: WorkerProcess
    link: WorkerLink
    pid: int
    host: str
    peer_address: str
    state: str = UP
    ping_sent: float | None = None
    ping_seq: int = 0
    unresponsive: bool = False
    last_pong: float = 0.0


class Supervisor:
    def __init__(self, launcher: Any, n_workers: int, *, startup_timeout: float, colors: str,
                 on_message: Callable[[int, Any, list], None], on_lost: Callable[[int, str], None]):
        self.launcher = launcher
        self.n_workers = n_workers
        self.startup_timeout = startup_timeout
        self.colors = colors
        self._on_message = on_message
        self._on_lost = on_lost
        self.handles: dict[int, WorkerHandle] = {}
        self._lock = threading.Lock()
        self._key = b""
        self.runtime_dir: Path | None = None
        self._listener: wire.Listener | None = None
        self._spawner: ThreadPoolExecutor | None = None
        self._monitor: threading.Thread | None = None
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
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(timeout=2)
        if self._spawner is not None:
            self._spawner.shutdown(wait=True)
        self._remove_runtime()

    def _remove_runtime(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None

    # -- starting workers ---------------------------------------------------------------------

    def spawn(self, ids: Iterable[int]) -> list[WorkerHandle]:
        """Start workers and wait until each says hello; on any failure or interrupt, stop
        every process this call started (reaped, so no zombie) and raise."""
        started: dict[int, WorkerProcess] = {}
        try:
            for wid in ids:
                self._launch(wid, started)
            handles = self._await_hellos(started)
        except BaseException:
            for process in started.values():
                process.terminate(grace=0.2)
            raise
        with self._lock:
            for handle in handles:
                self.handles[handle.id] = handle
        for handle in handles:
            handle.link.start()
        return handles

    def _launch(self, wid: int, started: dict[int, WorkerProcess]) -> None:
        """Processes are started from one long-lived thread: Linux's parent-death signal
        fires when the *thread* that forked a child ends, so it must not be a thread
        that ends before the kernel does."""
        future: Future = self._spawner.submit(
            self.launcher.launch, wid, self.n_workers, self._listener.address, self._key,
            self.runtime_dir, self.colors)
        try:
            started[wid] = future.result()
        except BaseException:
            try:
                started[wid] = future.result(timeout=10)
            except BaseException:
                pass
            raise

    def _await_hellos(self, started: dict[int, WorkerProcess]) -> list[WorkerHandle]:
        deadline = time.monotonic() + self.startup_timeout
        waiting = dict(started)
        handles: list[WorkerHandle] = []
        try:
            while waiting:
                self._check_startup(waiting, deadline)
                handle = self._accept_one(waiting)
                if handle is not None:
                    handles.append(handle)
                    del waiting[handle.id]
        except BaseException:
            for handle in handles:
                handle.link.close()
            raise
        return handles

    def _check_startup(self, waiting: dict[int, WorkerProcess], deadline: float) -> None:
        for wid, process in waiting.items():
            if process.poll() is not None:
                raise WorkerStartError(f"worker {wid} exited during startup ({process.exit_description()}); "
                                       f"its last output:\n{process.log_tail()}")
        if time.monotonic() > deadline:
            late = ", ".join(map(str, sorted(waiting)))
            raise WorkerStartError(f"worker(s) {late} did not report ready within {self.startup_timeout} s; "
                                   f"last output:\n{waiting[min(waiting)].log_tail()}")

    def _accept_one(self, waiting: dict[int, WorkerProcess]) -> WorkerHandle | None:
        try:
            conn = self._listener.accept(timeout=0.05)
        except (TimeoutError, AuthenticationError):
            return None
        try:
            conn.sock.settimeout(HELLO_SECONDS)
            hello, _ = conn.recv()
            conn.sock.settimeout(None)
        except (WireError, OSError) as exc:
            log.debug("a worker's hello did not arrive: %s", exc)
            conn.close()
            return None
        process = waiting.get(hello.worker) if isinstance(hello, p.Hello) else None
        if process is None or process.pid != hello.pid:
            conn.close()
            return None
        self._check_versions(hello, conn)
        link = WorkerLink(hello.worker, conn, self._on_message, self._on_link_closed)
        return WorkerHandle(hello.worker, process, link, hello.pid, hello.host, hello.peer_address)

    @staticmethod
    def _check_versions(hello: p.Hello, conn: wire.Connection) -> None:
        ours = local_versions()
        for what, mine in ours.items():
            theirs = hello.versions.get(what)
            if theirs != mine:
                conn.close()
                raise WorkerStartError(f"worker {hello.worker} on {hello.host} runs {what} {theirs}, "
                                       f"the kernel runs {what} {mine}: they must match")

    # -- links ------------------------------------------------------------------------------------

    def post(self, wid: int, msg: Any, parts: list | tuple = ()) -> Ticket:
        handle = self.handles.get(wid)
        if handle is None or handle.state != UP:
            ticket = Ticket(msg, parts)
            ticket.state = DROPPED
            return ticket
        return handle.link.post(msg, parts)

    def unpost(self, ticket: Ticket) -> bool:
        for handle in list(self.handles.values()):
            if handle.link.cancel(ticket):
                return True
        return False

    def alive(self, wid: int) -> bool:
        handle = self.handles.get(wid)
        return handle is not None and handle.state == UP

    def interrupt(self, wid: int, task: int | None = None) -> None:
        self.post(wid, p.Interrupt(task))

    def on_pong(self, wid: int) -> None:
        handle = self.handles.get(wid)
        if handle is not None:
            handle.ping_sent = None
            handle.unresponsive = False
            handle.last_pong = time.monotonic()

    def probe(self, wid: int) -> None:
        """Ask the worker for a pong now, unless one is already awaited: a worker that
        answers none while it is being interrupted is unresponsive, not just deaf to it."""
        handle = self.handles.get(wid)
        if handle is None or handle.state != UP or handle.ping_sent is not None:
            return
        handle.ping_seq += 1
        handle.ping_sent = time.monotonic()
        handle.link.post(p.Ping(handle.ping_seq))

    def answered_since(self, wid: int, since: float) -> bool:
        """Whether the worker has answered a heartbeat since ``since`` (a monotonic time)."""
        handle = self.handles.get(wid)
        return handle is not None and handle.last_pong >= since

    # -- deaths and restarts ------------------------------------------------------------------------

    def _on_link_closed(self, wid: int, reason: str) -> None:
        handle = self.handles.get(wid)
        if handle is not None and handle.state == UP:
            self._lose(handle)

    def _lose(self, handle: WorkerHandle) -> None:
        with self._lock:
            if handle.state != UP or self._stopping.is_set():
                return
            handle.state = LOST
        handle.process.wait(timeout=2.0)
        how = handle.process.exit_description()
        handle.process.signal_group(signal.SIGKILL)
        handle.link.close()
        log.debug("worker %d died (%s)", handle.id, how)
        self._on_lost(handle.id, f"worker {handle.id} died ({how})")

    def retire(self, wid: int) -> None:
        """Stop one worker for good (for a restart): kill its group, close its link."""
        with self._lock:
            handle = self.handles.pop(wid, None)
        if handle is None:
            return
        handle.state = STOPPING
        handle.process.terminate(grace=STOP_GRACE)
        handle.link.close()

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
            now = time.monotonic()
            if now - last_ping >= PING_SECONDS:
                last_ping = now
                self._heartbeat(now)

    def _heartbeat(self, now: float) -> None:
        for handle in list(self.handles.values()):
            if handle.state != UP:
                continue
            if handle.ping_sent is not None:
                handle.unresponsive = now - handle.ping_sent > UNRESPONSIVE_SECONDS
                continue
            handle.ping_seq += 1
            handle.ping_sent = now
            handle.link.post(p.Ping(handle.ping_seq))

    def row(self, wid: int) -> dict[str, Any] | None:
        handle = self.handles.get(wid)
        if handle is None:
            return None
        return {"pid": handle.pid, "host": handle.host, "lost": handle.state != UP,
                "unresponsive": handle.unresponsive and handle.state == UP}
