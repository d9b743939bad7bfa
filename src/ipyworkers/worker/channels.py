"""Streams between workers: ``send(obj, to=ID)``, ``recv(frm=ID)``, ``close(to=ID)``
and ``for item in stream(frm=ID)``, inside worker code.

A channel is FIFO per pair of workers and rides the authenticated peer link from the
producer to the consumer, with the same zero-copy serialisation as any value. Flow
control is by credit: a producer has at most ``WINDOW`` messages (and about
``WINDOW_BYTES``) not yet taken by the consumer, so a fast producer blocks instead of
filling memory. Small messages are batched, as Nagle's algorithm does: one frame
carries up to ``BATCH`` of them, and a batch waits at most ``BATCH_DELAY`` seconds,
so per-message cost is paid per batch. A failure at either end travels to the other
as an abort, and a death shows as the link closing, so neither end hangs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .. import protocol as p
from ..errors import ChannelError
from ..serialize import dumps_value, loads_value

WINDOW = 256
WINDOW_BYTES = 32 << 20
BATCH = 32
BATCH_BYTES = 256 << 10
BATCH_DELAY = 0.001




@dataclass
class StreamStats:
    count: int = 0
    bytes: int = 0
    first: float = 0.0
    last: float = 0.0

    def add(self, nbytes: int) -> None:
        now = time.monotonic()
        if not self.count:
            self.first = now
        self.count += 1
        self.bytes += nbytes
        self.last = now


class Outbound:
    """This worker's side of a stream to ``dest``: the credit window."""

    def __init__(self, dest: int):
        self.dest = dest
        self.cond = threading.Condition()
        self.in_flight = 0
        self.bytes_in_flight = 0
        self.broken: str | None = None
        self.open = False
        self.batch: list[list] = []
        self.batch_bytes = 0
        self.flushing = threading.Lock()

    def try_acquire(self, nbytes: int) -> bool:
        with self.cond:
            if self.broken is not None:
                raise ChannelError(self.broken)
            if self.in_flight and (self.in_flight >= WINDOW or self.bytes_in_flight + nbytes > WINDOW_BYTES):
                return False
            self.in_flight += 1
            self.bytes_in_flight += nbytes
            return True

    def acquire(self, nbytes: int) -> None:
        with self.cond:
            while self.broken is None and self.in_flight and (
                self.in_flight >= WINDOW or self.bytes_in_flight + nbytes > WINDOW_BYTES
            ):
                self.cond.wait()
            if self.broken is not None:
                raise ChannelError(self.broken)
            self.in_flight += 1
            self.bytes_in_flight += nbytes

    def release(self, count: int, nbytes: int) -> None:
        with self.cond:
            self.in_flight = max(0, self.in_flight - count)
            self.bytes_in_flight = max(0, self.bytes_in_flight - nbytes)
            self.cond.notify_all()

    def fail(self, reason: str) -> None:
        with self.cond:
            if self.broken is None:
                self.broken = reason
            self.cond.notify_all()

    def reset(self) -> None:
        with self.cond:
            self.in_flight = self.bytes_in_flight = 0
            self.broken = None
            self.open = False


_CLOSED = object()
_ABORTED = object()


class Inbound:
    """This worker's side of a stream from ``source``: what arrived, not yet taken.

    The end of a stream, and a producer's failure, are items in the same FIFO, each
    taken once: a later stream from the same producer queues behind them. Only the
    producer's death sticks, until it is back.
    """

    def __init__(self, source: int):
        self.source = source
        self.cond = threading.Condition()
        self.items: deque[tuple[Any, Any]] = deque()
        self.dead: str | None = None
        self.discarding = False
        self.conn: Any = None
        self.credit = 0
        self.credit_bytes = 0
        self.stats = StreamStats()

    def reopen(self, conn: Any) -> None:
        """A new stream starts on ``conn``."""
        with self.cond:
            self.discarding = False
            self.dead = None
            self.conn = conn
            self.cond.notify_all()

    def _append(self, item: Any, detail: Any) -> None:
        with self.cond:
            if not self.discarding:
                self.items.append((item, detail))
                self.cond.notify_all()

    def put_many(self, messages: list[tuple[list, int]]) -> None:
        with self.cond:
            if self.discarding:
                return
            self.items.extend(messages)
            for _, nbytes in messages:
                self.stats.add(nbytes)
            self.cond.notify_all()

    def close(self) -> None:
        self._append(_CLOSED, None)

    def abort(self, reason: str) -> None:
        self._append(_ABORTED, reason)

    def gone(self, reason: str) -> None:
        with self.cond:
            self.dead = reason
            self.cond.notify_all()

    def abandon(self) -> None:
        """The consumer failed: drop the rest of this stream."""
        with self.cond:
            self.items.clear()
            self.discarding = True

    def get(self) -> list | object:
        """The next message's parts, or ``_CLOSED``; raises if the producer failed or died."""
        with self.cond:
            while not self.items and self.dead is None:
                self._grant_locked()
                self.cond.wait()
            if not self.items:
                raise ChannelError(self.dead)
            item, detail = self.items.popleft()
            if item is _ABORTED:
                raise ChannelError(detail)
            if item is not _CLOSED:
                self.credit += 1
                self.credit_bytes += detail
                if self.credit >= BATCH or not self.items:
                    self._grant_locked()
            return item

    def _grant_locked(self) -> None:
        if self.credit and self.conn is not None:
            credit, nbytes = self.credit, self.credit_bytes
            self.credit = self.credit_bytes = 0
            try:
                self.conn.send(p.Credit(0, credit, nbytes))
            except Exception:
                pass


class Channels:
    """The channel endpoints of one worker, and the functions user code calls."""

    def __init__(self, worker: Any):
        self.worker = worker
        self._lock = threading.Lock()
        self.outbound: dict[int, Outbound] = {}
        self.inbound: dict[int, Inbound] = {}
        self.sending_to: set[int] = set()
        self.receiving_from: set[int] = set()
        self._pending = threading.Event()
        threading.Thread(target=self._flush_loop, name="channel-flush", daemon=True).start()

    # -- what user code calls ---------------------------------------------------------------

    def send(self, obj: Any, to: int) -> None:
        """Queue ``obj`` for worker ``to``; blocks while ``WINDOW`` messages wait there."""
        out = self.outbound.get(to) or self._checked_outbound(to)
        parts = dumps_value("message", obj)
        nbytes = sum(map(len, parts))
        peer = self.worker.peer_link(to)
        if not out.open:
            peer.post(p.ChanOpen(self.worker.id, 0))
            out.open = True
        if not out.try_acquire(nbytes):
            self._flush(out)
            out.acquire(nbytes)
        self.sending_to.add(to)
        with out.cond:
            out.batch.append(parts)
            out.batch_bytes += nbytes
            full = len(out.batch) >= BATCH or out.batch_bytes >= BATCH_BYTES
        if full:
            self._flush(out)
        else:
            self._pending.set()

    def _flush(self, out: Outbound) -> None:
        """Send what ``out`` has batched, as one frame, in order."""
        with out.flushing:
            with out.cond:
                batch, out.batch, out.batch_bytes = out.batch, [], 0
            if batch:
                counts = [len(parts) for parts in batch]
                try:
                    self.worker.peer_link(out.dest).post(
                        p.Chans(self.worker.id, 0, counts), [part for parts in batch for part in parts])
                except ChannelError as exc:
                    out.fail(str(exc))
                    raise

    def flush_all(self) -> None:
        for out in list(self.outbound.values()):
            try:
                self._flush(out)
            except ChannelError:
                pass

    def _flush_loop(self) -> None:
        while True:
            self._pending.wait()
            time.sleep(BATCH_DELAY)
            self._pending.clear()
            self.flush_all()

    def recv(self, frm: int) -> Any:
        """The next object from worker ``frm``; blocks until it comes. ``EOFError`` after ``close``."""
        item = self._next(frm)
        if item is _CLOSED:
            raise EOFError(f"the stream from worker {frm} is closed")
        return item

    def close(self, to: int) -> None:
        """End the stream to worker ``to``: its ``stream(frm=...)`` loop stops after the last item."""
        self._check_peer(to, "to")
        out = self._outbound(to)
        if not out.open:
            self.worker.peer_link(to).post(p.ChanOpen(self.worker.id, 0))
        self._flush(out)
        self.worker.peer_link(to).post(p.ChanClose(self.worker.id, 0))
        out.reset()
        self.sending_to.discard(to)

    def stream(self, frm: int) -> Iterator[Any]:
        """Each object worker ``frm`` sends, until it calls ``close(to=...)``."""
        self._check_peer(frm, "frm")
        while True:
            item = self._next(frm)
            if item is _CLOSED:
                return
            yield item

    def _next(self, frm: int) -> Any:
        inbound = self.inbound.get(frm) or self._checked_inbound(frm)
        self.receiving_from.add(frm)
        if self._pending.is_set():
            self.flush_all()
        parts = inbound.get()
        if parts is _CLOSED:
            self.receiving_from.discard(frm)
            self._report(inbound)
            return _CLOSED
        return loads_value("message", parts, f"worker {self.worker.id}")

    def _checked_outbound(self, dest: Any) -> Outbound:
        self._check_peer(dest, "to")
        return self._outbound(dest)

    def _checked_inbound(self, source: Any) -> Inbound:
        self._check_peer(source, "frm")
        return self._inbound(source)

    def _check_peer(self, other: Any, argument: str) -> None:
        n = self.worker.n_workers
        if not isinstance(other, int) or isinstance(other, bool) or not 1 <= other <= n:
            raise ValueError(f"{argument}={other!r}: there is no such worker (workers are 1..{n})")
        if other == self.worker.id:
            raise ValueError(f"{argument}={other}: a worker cannot stream to itself")

    # -- endpoints ------------------------------------------------------------------------------

    def _outbound(self, dest: int) -> Outbound:
        out = self.outbound.get(dest)
        if out is None:
            with self._lock:
                out = self.outbound.setdefault(dest, Outbound(dest))
        return out

    def _inbound(self, source: int) -> Inbound:
        inbound = self.inbound.get(source)
        if inbound is None:
            with self._lock:
                inbound = self.inbound.setdefault(source, Inbound(source))
        return inbound

    # -- what the links deliver (IO threads) --------------------------------------------------------

    def on_peer_message(self, source: int, msg: tuple, parts: list, conn: Any) -> None:
        inbound = self._inbound(source)
        if isinstance(msg, p.Chans):
            messages, pos = [], 0
            for count in msg.counts:
                message = parts[pos : pos + count]
                pos += count
                messages.append((message, sum(map(len, message))))
            inbound.put_many(messages)
        elif isinstance(msg, p.ChanOpen):
            inbound.reopen(conn)
        elif isinstance(msg, p.ChanClose):
            inbound.close()
            self._report(inbound)
        elif isinstance(msg, p.ChanAbort):
            inbound.abort(msg.reason)

    def on_peer_gone(self, source: int) -> None:
        inbound = self.inbound.get(source)
        if inbound is not None:
            inbound.gone(f"worker {source} died before closing its stream")

    def on_reply(self, dest: int, msg: tuple) -> None:
        if isinstance(msg, p.Credit):
            self._outbound(dest).release(msg.count, msg.size)
        elif isinstance(msg, p.ChanRefused):
            self._outbound(dest).fail(msg.reason)

    def on_link_lost(self, dest: int) -> None:
        self._outbound(dest).fail(f"worker {dest} died: the stream to it is broken")

    # -- task boundaries ------------------------------------------------------------------------------

    def task_started(self) -> None:
        self.sending_to.clear()
        self.receiving_from.clear()
        for out in list(self.outbound.values()):
            if out.broken is not None:
                out.reset()

    def task_ended(self, failure: str | None) -> None:
        """At the end of a task: flush what it sent; if it failed, tell the other ends of its
        open streams, so they stop instead of hanging."""
        if failure is None:
            self.flush_all()
            self.report_all()
            return
        self._task_failed(failure)
        self.report_all()

    def epochs_sent(self) -> dict[int, int]:
        """The last stream epoch opened to each worker."""
        return {}

    def on_peer_idle(self, worker: int, epochs: dict[int, int], reason: str) -> None:
        """``worker`` has nothing to run: a stream from it that has not started will not."""

    def on_peer_busy(self, worker: int) -> None:
        """``worker`` has work again."""

    def on_peer_lost(self, worker: int, reason: str) -> None:
        self.on_peer_gone(worker)
        self.on_link_lost(worker)

    def _task_failed(self, reason: str) -> None:
        self.flush_all()
        for dest in self.sending_to:
            try:
                self.worker.peer_link(dest).post(p.ChanAbort(self.worker.id, 0, f"{reason}, before closing its stream"))
            except Exception:
                pass
            self._outbound(dest).reset()
        for source in self.receiving_from:
            inbound = self._inbound(source)
            inbound.abandon()
            try:
                inbound.conn.send(p.ChanRefused(0, f"worker {self.worker.id} stopped receiving: {reason}"))
            except Exception:
                pass

    def report_all(self) -> None:
        for inbound in list(self.inbound.values()):
            self._report(inbound)

    def _report(self, inbound: Inbound) -> None:
        """Aggregated stream traffic for the timeline: one event per report, not per message."""
        with inbound.cond:
            stats, inbound.stats = inbound.stats, StreamStats()
        if stats.count:
            self.worker.emit(p.StreamStats(inbound.source, stats.count, stats.bytes, stats.first, stats.last))
