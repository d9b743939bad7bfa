"""Values from other workers: the peer links this worker opened, and a task's inputs.

A task's remote inputs are requested as soon as the task arrives (while earlier tasks
may still run here), over a link to the worker that holds them; the bytes come
straight from there. Each link has a reader thread that completes the requests and
passes stream replies (credit, refusals) to the channels.

A worker this one cannot connect to (another network, a firewall, a Unix socket on
another host) is reached through the kernel instead: ``Relay`` on the control link, the
kernel fetches the value and passes it on. The kernel's status shows such pairs.
Streams are not relayed: sending to such a worker raises, saying why.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

from .. import addressing, wire
from .. import protocol as p
from ..errors import ChannelError, WireError

log = logging.getLogger("ipyworkers.worker")

PEER_CONNECT_SECONDS = 5.0


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
        self.unreachable = False
        self._reader: threading.Thread | None = None

    def _ensure_connected(self) -> None:
        """Connect on first use (lock held)."""
        if self.broken is not None or self._conn is not None:
            return
        try:
            if self.worker.conn.local_host is not None and addressing.parse_address(self.address)[0] == "unix":
                raise OSError("it listens on a Unix socket on another host")
            tls = self.worker.peer_tls if self.address.startswith("tls://") else None
            self._conn = wire.connect(self.address, self.worker.key, timeout=PEER_CONNECT_SECONDS, tls=tls)
            self._conn.send(p.PeerHello(self.worker.id))
        except (OSError, WireError, ValueError) as exc:
            self.broken = f"cannot reach worker {self.source} at {self.address} from worker {self.worker.id}: {exc}"
            self.unreachable = True
            self.worker.fetcher.mark_unreachable(self.source, self.address, self.broken)
            log.debug("peer link to worker %d failed: %s", self.source, exc)
            return
        self._reader = threading.Thread(target=self._read, name=f"peer-client-{self.source}", daemon=True)
        self._reader.start()

    def request(self, name: str, version: int) -> Future:
        future: Future = Future()
        with self._lock:
            self._ensure_connected()
            unreachable = self.unreachable
        if unreachable:
            return self.worker.fetcher.link(self.source, self.address).request(name, version)
        with self._lock:
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
            if self.unreachable:
                raise ChannelError(f"{broken}; streams are not relayed through the kernel")
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
                    future.set_result((msg.status, self._local_time(msg), parts))
        except WireError:
            self._fail(f"worker {self.source} died during the transfer of {{name!r}}")
            self.worker.channels.on_link_lost(self.source)

    def _local_time(self, msg: p.Value) -> Any:
        """'ok' carries when the holder began to serve, in *its* clock: over the network
        that clock is another host's, so the transfer is timed from the request instead."""
        if msg.status == "ok" and self.worker.conn.local_host is not None:
            return 0.0
        return msg.info

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
        self.unreachable: dict[str, str] = {}
        self._relays: dict[int, tuple[Future, str]] = {}
        self._next_relay = 0
        self._lock = threading.Lock()

    def link(self, dest: int, address: str | None = None) -> PeerClient | RelayClient:
        address = address or self.addresses.get(dest)
        if address is None:
            raise ChannelError(f"worker {dest} is not running")
        with self._lock:
            if address in self.unreachable:
                return RelayClient(self, dest, address, self.unreachable[address])
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

    def mark_unreachable(self, source: int, address: str, reason: str) -> None:
        with self._lock:
            self.unreachable[address] = reason

    def relay(self, source: int, name: str, version: int) -> Future:
        """Ask the kernel for ``name`` from ``source``; the answer comes as ``Value``."""
        future: Future = Future()
        with self._lock:
            self._next_relay += 1
            req = self._next_relay
            self._relays[req] = (future, name)
        self.worker.emit(p.Relay(req, source, name, version))
        return future

    def relayed(self, msg: p.Value, parts: list) -> None:
        with self._lock:
            future, _ = self._relays.pop(msg.req, (None, None))
        if future is not None:
            future.set_result((msg.status, 0.0 if msg.status == "ok" else msg.info, parts))

    def take(self, task: int) -> dict[str, Future]:
        return self.staged.pop(task, {})

    def close(self) -> None:
        for peer in list(self.peers.values()):
            peer.close()


class RelayClient:
    """Values from a worker this one cannot reach, through the kernel."""

    def __init__(self, fetcher: Fetcher, source: int, address: str, reason: str):
        self.fetcher = fetcher
        self.source = source
        self.address = address
        self.reason = reason
        self.broken = None

    def request(self, name: str, version: int) -> Future:
        return self.fetcher.relay(self.source, name, version)

    def post(self, msg: Any, parts: list | tuple = ()) -> None:
        raise ChannelError(f"{self.reason}; streams are not relayed through the kernel")

    def close(self) -> None:
        pass
