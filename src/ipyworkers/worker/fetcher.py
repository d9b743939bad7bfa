"""Values from other workers: the peer links this worker opened, and a task's inputs.

A task's remote inputs are requested as soon as the task arrives (while earlier tasks
may still run here), over a link to the worker that holds them; the bytes come
straight from there. Each link has a reader thread that completes the requests and
passes stream replies (credit, refusals) to the channels.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

from .. import protocol as p
from .. import wire
from ..errors import ChannelError, WireError

log = logging.getLogger("ipyworkers.worker")


class InputUnavailable(Exception):
    """An input of a task cannot be had.

    ``root`` names the original failure (a failed task, a dead worker); a task
    cancelled for it passes the same root on to the tasks that depend on it.
    """

    def __init__(self, message: str, root: str | None = None):
        super().__init__(message)
        self.root = root


class PeerClient:
    """This worker's link to another worker: value requests, and streams to it."""

    def __init__(self, worker: Any, source: int, address: str):
        self.worker = worker
        self.source = source
        self.address = address
        self._lock = threading.Lock()
        self._conn: wire.Connection | None = None
        self._pending: dict[int, tuple[Future, str]] = {}
        self._next = 0
        self.broken: str | None = None
        self._reader: threading.Thread | None = None

    def _ensure_connected(self) -> None:
        """Connect on first use (lock held)."""
        if self.broken is not None or self._conn is not None:
            return
        try:
            self._conn = wire.connect(self.address, self.worker.key)
            self._conn.send(p.PeerHello(self.worker.id))
        except (OSError, WireError) as exc:
            self.broken = f"cannot reach worker {self.source}: {exc}"
            log.debug("peer link to worker %d refused: %s", self.source, exc)
            return
        self._reader = threading.Thread(target=self._read, name=f"peer-client-{self.source}", daemon=True)
        self._reader.start()

    def request(self, name: str, version: int) -> Future:
        future: Future = Future()
        with self._lock:
            self._ensure_connected()
            if self.broken is not None:
                future.set_exception(InputUnavailable(f"{self.broken}, to fetch {name!r}"))
                return future
            self._next += 1
            req = self._next
            self._pending[req] = (future, name)
            conn = self._conn
        try:
            conn.send(p.Get(req, name, version))
        except WireError:
            self._fail(f"worker {self.source} died before sending {{name!r}}")
        return future

    def post(self, msg: Any, parts: list | tuple = ()) -> None:
        """A stream record to this peer (no reply expected)."""
        with self._lock:
            self._ensure_connected()
            broken, conn = self.broken, self._conn
        if broken is not None:
            raise ChannelError(f"worker {self.source} cannot be reached: the stream to it is broken")
        try:
            conn.send(msg, parts)
        except WireError as exc:
            raise ChannelError(f"worker {self.source} died: the stream to it is broken") from exc

    def _read(self) -> None:
        conn = self._conn
        try:
            while True:
                msg, parts = conn.recv()
                if not isinstance(msg, p.Value):
                    self.worker.channels.on_reply(self.source, msg)
                    continue
                with self._lock:
                    future, _ = self._pending.pop(msg.req, (None, None))
                if future is not None:
                    future.set_result((msg.status, msg.info, parts))
        except WireError:
            self._fail(f"worker {self.source} died during the transfer of {{name!r}}")
            self.worker.channels.on_link_lost(self.source)

    def _fail(self, message: str) -> None:
        with self._lock:
            self.broken = message
            pending, self._pending = self._pending, {}
        for future, name in pending.values():
            future.set_exception(InputUnavailable(message.format(name=name)))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class Fetcher:
    """The links to other workers, and the inputs of each task as they arrive."""

    def __init__(self, worker: Any):
        self.worker = worker
        self.peers: dict[int, PeerClient] = {}
        self.addresses: dict[int, str] = {}
        self.staged: dict[int, dict[str, Future]] = {}
        self._lock = threading.Lock()

    def link(self, dest: int, address: str | None = None) -> PeerClient:
        address = address or self.addresses.get(dest)
        if address is None:
            raise ChannelError(f"worker {dest} is not running")
        with self._lock:
            peer = self.peers.get(dest)
            if peer is None or peer.address != address or peer.broken:
                peer = self.peers[dest] = PeerClient(self.worker, dest, address)
        return peer

    def prefetch(self, run: p.Run) -> None:
        """Request a task's remote inputs now (on the control thread, as the task arrives)."""
        staged = {}
        for name, version, source in run.deps:
            if source in (self.worker.id, 0):
                continue
            address = run.peers.get(source)
            if address is None:
                future: Future = Future()
                future.set_exception(InputUnavailable(f"worker {source}, which holds {name!r}, is gone"))
            else:
                future = self.link(source, address).request(name, version)
            future.started = time.monotonic()
            staged[name] = future
        if staged:
            self.staged[run.task] = staged

    def take(self, task: int) -> dict[str, Future]:
        return self.staged.pop(task, {})

    def close(self) -> None:
        for peer in list(self.peers.values()):
            peer.close()
