"""Streams between workers: ``send(obj, to=ID)``, ``recv(frm=ID)``, ``close(to=ID)``
and ``for item in stream(frm=ID)``, inside worker code.

A channel is FIFO per pair of workers and rides the authenticated peer link from the
producer to the consumer, with the same zero-copy serialisation as any value. Flow
control is by credit: a producer has at most ``WINDOW`` messages (and about
``WINDOW_BYTES``) not yet taken by the consumer, so a fast producer blocks instead of
filling memory. Small messages are batched, as Nagle's algorithm does: one frame
carries up to ``BATCH`` of them, and a batch waits at most ``BATCH_DELAY`` seconds,
so per-message cost is paid per batch.

Each stream is separate. The producer numbers the streams it opens to a consumer (the
*epoch*: 1, 2, ...) and every record, credit and refusal carries that number, so nothing
of an old stream (its messages still in flight, its credit, its abort) leaks into a new
one: the consumer drops what belongs to a stream it gave up or the producer dropped.

Neither end hangs on the other:

* a failure travels as a record: the producer's as ``ChanAbort``, the consumer's as
  ``ChanRefused`` (the consumer also drops the rest of the stream it was reading);
* a death shows as the link closing, and as ``PeerLost`` from the kernel, which also
  covers a worker that never opened a link to us;
* a failure before the first ``send`` or ``recv`` leaves no stream to carry a record, so
  the kernel tells each worker when another one has nothing left to run (``PeerIdle``)
  or has work again (``PeerBusy``). A consumer waiting on an idle producer, with all that
  producer sent here already taken, or a producer waiting for credit from an idle
  consumer, raises once the other end has been idle, and this end waiting, for
  ``IDLE_GRACE``: the other end's cell may only be about to arrive ("Run all" submits
  cells one after the other, a consumer's often first).

That news comes through the kernel, and stream records straight from the producer, so
one could overtake the other. It cannot: a task that streamed ends with a round trip on
each stream link (``ChanSync``), before the runner reports it finished, so by the time a
consumer hears that its producer is idle, all the producer sent is here.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .. import protocol as p
from ..errors import ChannelError
from ..serialize import dumps_value, loads_value

log = logging.getLogger("ipyworkers.worker")

WINDOW = 64
WINDOW_BYTES = 32 << 20
BATCH = 32
BATCH_BYTES = 256 << 10
BATCH_DELAY = 0.001
SYNC_TIMEOUT = 1.0
"""The longest a task's end waits for a consumer to confirm it has taken in all the task
streamed to it; only a consumer stuck holding the GIL would take that long."""
IDLE_GRACE = 0.4
"""How long the other end must have been idle, and this end waiting on it, before the
wait fails: long enough for a cell submitted just after this one to reach the other
end (its ``PeerBusy`` cancels the failure), short enough to fail well within a second."""

NEVER_RAN = "it has run nothing since this worker started"
"""Why a worker we have heard nothing of is idle: the kernel says ``PeerBusy`` as soon
as a worker gets its first task."""

_tokens = itertools.count(1)


@dataclass(frozen=True)
class Idle:
    """The other worker has nothing running or queued since ``since`` (``PeerIdle``), or is
    dead (``PeerLost``, or its link closed). ``epoch``: the last stream it opened to this
    worker."""

    since: float
    reason: str
    epoch: int = 0
    dead: bool = False
    failed: bool = False

    @property
    def final(self) -> bool:
        """Nothing will come: the worker died, or its last task failed. An idle worker whose
        work went well may still get the cell that streams (a user runs the producer cell,
        then the consumer cell, by hand): a wait on it ends only by an interrupt."""
        return self.dead or self.failed


def _never_ran() -> Idle:
    return Idle(-math.inf, NEVER_RAN)


def _before_closing(source: int, reason: str) -> str:
    """The consumer's error: 'worker 1 died (exit code 1)' becomes 'worker 1 died before
    closing its stream (exit code 1)', so the message reads the same whichever news of the
    death (the link closing, or the kernel's ``PeerLost``) came first."""
    head = f"worker {source} died"
    if reason.startswith(head):
        return f"{head} before closing its stream{reason[len(head):]}"
    return f"{reason}, before closing its stream"


def _stream_broken(dest: int, reason: str) -> str:
    """The producer's error, worded as when its link to ``dest`` closes."""
    head = f"worker {dest} died"
    if reason.startswith(head):
        return f"{head}: the stream to it is broken{reason[len(head):]}"
    return f"{reason}: the stream to it is broken"


def _reply(conn: Any, record: Any) -> None:
    """A consumer's answer on the link its producer opened; lost if that link is."""
    try:
        conn.send(record)
    except OSError as exc:  # WireError is an OSError
        log.debug("could not send %s on a stream link: %s", type(record).__name__, exc)


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
    """This worker's side of the streams to ``dest``: the open one's epoch, its credit window
    and its batch. The state is guarded by ``cond``; nothing is sent while it is held."""

    def __init__(self, dest: int):
        self.dest = dest
        self.cond = threading.Condition()
        self.epoch = 0
        """The stream open now; 0 if none."""
        self.last = 0
        """The last epoch opened (``Finished`` reports it); the next one is one more."""
        self.in_flight = 0
        self.bytes_in_flight = 0
        self.broken: str | None = None
        self.drop = False
        """Broken because ``dest`` was not taking the stream: it must drop what it holds."""
        self.idle: Idle | None = _never_ran()
        self.batch: list[list] = []
        self.batch_bytes = 0
        self.flushing = threading.Lock()
        """Held while a batch is sent, so batches leave in the order they were made."""

    def begin(self) -> int:
        """Open a stream unless one is open: its epoch, or 0. Raises if the stream is broken."""
        with self.cond:
            if self.broken is not None:
                raise ChannelError(self.broken)
            if self.epoch:
                return 0
            self.last += 1
            self.epoch = self.last
            self.in_flight = self.bytes_in_flight = 0
            return self.epoch

    def put(self, parts: list, nbytes: int, block: bool) -> bool | None:
        """Batch one message if the window has room for it: whether the batch is now full;
        None if there is no room and not ``block``. Blocking, wait for credit; but if ``dest``
        is idle (and stays so for ``IDLE_GRACE``) nobody will ever take what waits there, so
        raise instead, naming why."""
        with self.cond:
            started = time.monotonic()
            while True:
                if self.broken is not None:
                    raise ChannelError(self.broken)
                if not self.in_flight or (self.in_flight < WINDOW
                                          and self.bytes_in_flight + nbytes <= WINDOW_BYTES):
                    self.in_flight += 1
                    self.bytes_in_flight += nbytes
                    self.batch.append(parts)
                    self.batch_bytes += nbytes
                    return len(self.batch) >= BATCH or self.batch_bytes >= BATCH_BYTES
                if not block:
                    return None
                timeout = None
                if self.idle is not None and self.idle.final:
                    timeout = max(self.idle.since, started) + IDLE_GRACE - time.monotonic()
                    if timeout <= 0:
                        self.broken = f"worker {self.dest} is not receiving: {self.idle.reason}"
                        self.drop = True
                        raise ChannelError(self.broken)
                self.cond.wait(timeout)

    def take_batch(self) -> tuple[int, list[list]]:
        with self.cond:
            batch, self.batch, self.batch_bytes = self.batch, [], 0
            return self.epoch, batch

    def release(self, epoch: int, count: int, nbytes: int) -> None:
        """Credit from the consumer; an earlier stream's credit frees nothing of this one."""
        with self.cond:
            if epoch != self.epoch:
                return
            self.in_flight = max(0, self.in_flight - count)
            self.bytes_in_flight = max(0, self.bytes_in_flight - nbytes)
            self.cond.notify_all()

    def refuse(self, epoch: int, reason: str) -> None:
        """The consumer stopped receiving ``epoch``: if that is the open stream, it is broken."""
        with self.cond:
            if epoch == self.epoch and self.broken is None:
                self.broken = reason
            self.cond.notify_all()

    def fail(self, reason: str) -> None:
        with self.cond:
            if self.broken is None:
                self.broken = reason
            self.cond.notify_all()

    def lost(self, reason: str) -> None:
        """``dest`` died or was restarted: a new process numbers streams from 1 again."""
        with self.cond:
            if self.broken is None:
                self.broken = _stream_broken(self.dest, reason)
            self.last = 0
            self.idle = Idle(time.monotonic(), reason, dead=True)
            self.cond.notify_all()

    def set_idle(self, idle: Idle | None) -> None:
        with self.cond:
            self.idle = idle
            self.cond.notify_all()

    def end(self) -> None:
        """The open stream was closed: the next ``send`` opens a new one."""
        with self.cond:
            self.epoch = 0
            self.in_flight = self.bytes_in_flight = 0

    def retire(self) -> tuple[int, str | None]:
        """Forget a broken or failed stream, so the next ``send`` opens a new one. Returns its
        epoch, and why ``dest`` must drop it, if it must."""
        with self.cond:
            epoch, drop = self.epoch, (self.broken if self.drop else None)
            self.epoch = 0
            self.in_flight = self.bytes_in_flight = 0
            self.broken = None
            self.drop = False
            self.batch, self.batch_bytes = [], 0
            return epoch, drop


_CLOSED = object()
_ABORTED = object()
_NOTHING = object()


class Inbound:
    """This worker's side of the streams from ``source``: what arrived, not yet taken.

    Queued items are keyed by ``(link, epoch)``: ``link`` counts the links the producer
    opened to us (a restarted producer numbers its streams from 1 again). A stream's end,
    and the producer's failure, are items in the same FIFO, each taken once: a later
    stream from the same producer queues behind them. Records of a stream that has ended
    here (closed, aborted, given up by this worker, dropped by the producer) are dropped
    on arrival. The state is guarded by ``cond``; replies go out after it is released.
    """

    def __init__(self, source: int, me: int):
        self.source = source
        self.me = me
        self.cond = threading.Condition()
        self.items: deque[tuple[tuple[int, int], Any, Any]] = deque()
        self.conn: Any = None
        self.link = 0
        self.gone = False
        """The current link has closed."""
        self.opened = 0
        """The last epoch opened on the current link."""
        self.ended = 0
        """The last epoch whose end arrived, or that this worker gave up."""
        self.reading: tuple[int, int] | None = None
        """The stream the consumer is in: it took part of it, or waits on it."""
        self.over: set[tuple[int, int]] = set()
        """Queued aborted streams whose producer task is over (the producer went idle or died
        after the abort): a task that starts later did not ask for them."""
        self.orphan: tuple[tuple[int, int], str] | None = None
        """The last aborted stream dropped unread, and its abort: the reason to give a
        consumer that then waits for more."""
        self.idle: Idle | None = _never_ran()
        self.credit = 0
        self.credit_bytes = 0
        self.credit_key: tuple[int, int] | None = None
        self.stats = StreamStats()

    # -- what arrives (the link's reader thread) ----------------------------------------------------

    def _live(self, conn: Any, epoch: int) -> bool:
        """Whether a record belongs to the stream open now on the current link."""
        return conn is self.conn and epoch == self.opened and epoch > self.ended

    def _end_locked(self, epoch: int, marker: object, detail: Any) -> None:
        self.items.append(((self.link, epoch), marker, detail))
        self.ended = epoch
        self.cond.notify_all()

    def _purge_locked(self, key: tuple[int, int]) -> None:
        if any(k == key for k, _, _ in self.items):
            self.items = deque(item for item in self.items if item[0] != key)

    def open(self, conn: Any, epoch: int) -> None:
        with self.cond:
            if conn is not self.conn:
                self.conn, self.link, self.gone = conn, self.link + 1, False
                self.opened = self.ended = 0
            if epoch <= self.opened:
                return
            if self.opened > self.ended:
                self._end_locked(self.opened, _ABORTED,
                                 f"worker {self.source} started a new stream before closing this one")
            self.opened = epoch
            self.cond.notify_all()

    def put_many(self, conn: Any, epoch: int, messages: list[tuple[list, int]]) -> None:
        with self.cond:
            if not self._live(conn, epoch):
                log.debug("dropped %d messages of ended stream %d from worker %d", len(messages), epoch, self.source)
                return
            key = (self.link, epoch)
            self.items.extend((key, parts, nbytes) for parts, nbytes in messages)
            for _, nbytes in messages:
                self.stats.add(nbytes)
            self.cond.notify_all()

    def close(self, conn: Any, epoch: int) -> None:
        with self.cond:
            if self._live(conn, epoch):
                self._end_locked(epoch, _CLOSED, None)

    def abort(self, conn: Any, epoch: int, reason: str) -> None:
        with self.cond:
            if self._live(conn, epoch):
                self._end_locked(epoch, _ABORTED, reason)
                if self.idle is not None and not self.idle.dead and self.idle.epoch >= epoch:
                    self.over.add((self.link, epoch))  # the idle news overtook the abort

    def _all_over_locked(self, upto: int | None = None) -> None:
        """Mark queued aborted streams as over: all of them, or with ``upto``, those of earlier
        links and of the current one up to that epoch."""
        self.over.update(key for key, item, _ in self.items if item is _ABORTED and (
            upto is None or key[0] < self.link or key[1] <= upto))

    def drop(self, conn: Any, epoch: int, reason: str) -> None:
        """The producer gave the stream up, seeing this worker idle: drop what it sent. A
        consumer that did start on it after all learns why it ends."""
        with self.cond:
            if not self._live(conn, epoch):
                return
            key = (self.link, epoch)
            self._purge_locked(key)
            if self.reading == key:
                self._end_locked(epoch, _ABORTED, f"worker {self.source} gave up this stream ({reason})")
            else:
                self.ended = epoch
            self.cond.notify_all()

    def link_gone(self) -> None:
        """The producer's link closed: it died. Its open stream ends here, in order."""
        with self.cond:
            self.gone = True
            dead = self.idle if self.idle is not None and self.idle.dead else None
            reason = dead.reason if dead is not None else f"worker {self.source} died"
            if self.opened > self.ended:
                self._end_locked(self.opened, _ABORTED, _before_closing(self.source, reason))
            self._all_over_locked()
            if dead is None:
                self.idle = Idle(time.monotonic(), reason, dead=True)
            self.cond.notify_all()

    def lost(self, reason: str) -> None:
        """The kernel says the producer died or was restarted (it may never have linked to us)."""
        with self.cond:
            self.idle = Idle(time.monotonic(), reason, dead=True)
            self._all_over_locked()
            self.cond.notify_all()

    def set_idle(self, idle: Idle | None) -> None:
        with self.cond:
            self.idle = idle
            if idle is not None:
                self._all_over_locked(idle.epoch)
            self.cond.notify_all()

    # -- what the consumer does (the task's thread) -----------------------------------------------

    def get(self) -> Any:
        """The next message's parts, or ``_CLOSED``. Raises if the stream was aborted, or if
        nothing more can come: the producer is dead, or idle with all it sent here taken."""
        started = time.monotonic()
        while True:
            item, detail = _NOTHING, None
            with self.cond:
                if self.items:
                    key, item, detail = self.items.popleft()
                    if item is _CLOSED or item is _ABORTED:
                        self.reading = None
                        reply = None
                    else:
                        self.reading = key
                        reply = self._count_credit_locked(key, detail)
                else:
                    if self.opened > self.ended:
                        self.reading = (self.link, self.opened)
                    reply = self._grant_locked()
                    if reply is None:
                        self.cond.wait(self._check_idle_locked(started))
                        continue
            if reply is not None:
                _reply(*reply)
            if item is _ABORTED:
                raise ChannelError(detail)
            if item is not _NOTHING:
                return item

    def _count_credit_locked(self, key: tuple[int, int], nbytes: int) -> tuple[Any, Any] | None:
        if key != self.credit_key:
            self.credit_key, self.credit, self.credit_bytes = key, 0, 0
        self.credit += 1
        self.credit_bytes += nbytes
        if self.credit >= BATCH or not self.items:
            return self._grant_locked()
        return None

    def _grant_locked(self) -> tuple[Any, Any] | None:
        """Credit for what the consumer took, to send (on the current link only)."""
        key = self.credit_key
        if not self.credit or key is None or key[0] != self.link or self.conn is None or self.gone:
            return None
        credit = p.Credit(key[1], self.credit, self.credit_bytes)
        self.credit = self.credit_bytes = 0
        return self.conn, credit

    def _check_idle_locked(self, started: float) -> float | None:
        """Nothing is queued: raise if nothing more can come; else how long to wait before
        looking again (None: until something happens)."""
        idle = self.idle
        if idle is None or not idle.final:
            return None
        if idle.dead:
            if self.conn is not None and not self.gone:
                return None  # what it sent before dying arrives first; then its link closes
            message = f"{idle.reason}: nothing more can come from it"
        else:
            # A closed link was a process now dead: a new one numbers its streams afresh.
            if idle.epoch != (0 if self.gone else self.opened):
                return None  # it is busy again (or, past a sync timeout, its stream is late)
            message = (f"worker {self.source} has nothing left to run that could send to worker {self.me}: "
                       f"{idle.reason}")
        left = max(idle.since, started) + IDLE_GRACE - time.monotonic()
        if left > 0:
            return left
        if self.orphan is not None and self.orphan[0] == (self.link, self.opened):
            message = self.orphan[1]
        raise ChannelError(message)

    def abandon(self) -> tuple[Any, int] | None:
        """The consumer failed while in a stream: drop the rest of it, now and as it arrives.
        Returns the link and epoch to refuse, so the producer stops sending."""
        with self.cond:
            key, self.reading = self.reading, None
            if key is None:
                return None
            self._purge_locked(key)
            if self.credit_key == key:
                self.credit = self.credit_bytes = 0
            if key[0] != self.link or self.conn is None:
                return None
            self.ended = max(self.ended, key[1])
            return self.conn, key[1]

    def drop_orphans(self) -> None:
        """A task starts: aborted streams that no task read, from producer tasks that are over,
        are stale; drop them rather than hand this task an old stream and an old error."""
        with self.cond:
            queued = {key for key, _, _ in self.items}
            self.over &= queued
            stale = self.over - {self.reading}
            if not stale:
                return
            for key, item, detail in self.items:
                if item is _ABORTED and key in stale:
                    self.orphan = (key, detail)
            self.items = deque(item for item in self.items if item[0] not in stale)
            self.over -= stale
            log.debug("dropped stale streams %s from worker %d", sorted(stale), self.source)

    def grant(self) -> tuple[Any, Any] | None:
        with self.cond:
            return self._grant_locked()


class Channels:
    """The channel endpoints of one worker, and the functions user code calls."""

    def __init__(self, worker: Any):
        self.worker = worker
        self._lock = threading.Lock()
        self.outbound: dict[int, Outbound] = {}
        self.inbound: dict[int, Inbound] = {}
        self.sending_to: set[int] = set()
        self.receiving_from: set[int] = set()
        self.streamed_to: set[int] = set()
        """Where this task sent stream records: its end waits until they are taken in."""
        self._syncs: dict[int, int] = {}
        """Sync token -> worker, not answered yet."""
        self._synced = threading.Condition()
        self._pending = threading.Event()
        threading.Thread(target=self._flush_loop, name="channel-flush", daemon=True).start()

    # -- what user code calls ---------------------------------------------------------------

    def send(self, obj: Any, to: int) -> None:
        """Queue ``obj`` for worker ``to``; blocks while ``WINDOW`` messages wait there."""
        out = self.outbound.get(to) or self._checked_outbound(to)
        parts = dumps_value("message", obj)
        nbytes = sum(map(len, parts))
        self.sending_to.add(to)
        if not out.epoch:  # only this thread opens and ends streams
            epoch = out.begin()
            if epoch:
                self._post(out, p.ChanOpen(self.worker.id, epoch))
        full = out.put(parts, nbytes, block=False)
        if full is None:
            self._flush(out)
            full = out.put(parts, nbytes, block=True)
        if full:
            self._flush(out)
        else:
            self._pending.set()

    def _post(self, out: Outbound, record: Any, parts: list | tuple = ()) -> None:
        self.streamed_to.add(out.dest)
        try:
            self.worker.peer_link(out.dest).post(record, parts)
        except ChannelError as exc:
            out.fail(str(exc))
            raise

    def _flush(self, out: Outbound) -> None:
        """Send what ``out`` has batched, as one frame, in order."""
        with out.flushing:
            epoch, batch = out.take_batch()
            if batch:
                counts = [len(parts) for parts in batch]
                self._post(out, p.Chans(self.worker.id, epoch, counts), [part for parts in batch for part in parts])

    def flush_all(self) -> None:
        for out in list(self.outbound.values()):
            try:
                self._flush(out)
            except ChannelError as exc:
                log.debug("flushing the stream to worker %d failed: %s", out.dest, exc)

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
        epoch = out.begin()
        if epoch:
            self._post(out, p.ChanOpen(self.worker.id, epoch))
        self._flush(out)
        self._post(out, p.ChanClose(self.worker.id, out.epoch))
        out.end()
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
                inbound = self.inbound.setdefault(source, Inbound(source, self.worker.id))
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
            inbound.put_many(conn, msg.epoch, messages)
        elif isinstance(msg, p.ChanOpen):
            inbound.open(conn, msg.epoch)
        elif isinstance(msg, p.ChanClose):
            inbound.close(conn, msg.epoch)
            self._report(inbound)
        elif isinstance(msg, p.ChanAbort):
            inbound.abort(conn, msg.epoch, msg.reason)
        elif isinstance(msg, p.ChanDrop):
            inbound.drop(conn, msg.epoch, msg.reason)
        elif isinstance(msg, p.ChanSync):
            # Read in order on this link: all the producer sent before it is taken in.
            _reply(conn, p.ChanSynced(msg.token))
        else:
            log.warning("unexpected %s on a peer link from worker %d", type(msg).__name__, source)

    def on_peer_gone(self, source: int) -> None:
        self._inbound(source).link_gone()

    def on_reply(self, dest: int, msg: tuple) -> None:
        if isinstance(msg, p.Credit):
            self._outbound(dest).release(msg.epoch, msg.count, msg.size)
        elif isinstance(msg, p.ChanRefused):
            self._outbound(dest).refuse(msg.epoch, msg.reason)
        elif isinstance(msg, p.ChanSynced):
            with self._synced:
                self._syncs.pop(msg.token, None)
                self._synced.notify_all()
        else:
            log.warning("unexpected %s on the peer link to worker %d", type(msg).__name__, dest)

    def on_link_lost(self, dest: int) -> None:
        self._outbound(dest).fail(f"worker {dest} died: the stream to it is broken")
        self._unsync(dest)

    def _unsync(self, dest: int) -> None:
        """``dest`` is gone: a task's end no longer waits for it."""
        with self._synced:
            for token in [t for t, d in self._syncs.items() if d == dest]:
                del self._syncs[token]
            self._synced.notify_all()

    # -- what the kernel says about the others (control thread) ------------------------------------

    def on_peer_idle(self, worker: int, epochs: dict[int, int], reason: str, failed: bool) -> None:
        """``worker`` has nothing to run. If its last task failed, a stream from it that has
        not started will not, one it left open will not go on, and one to it will not be read."""
        now = time.monotonic()
        self._inbound(worker).set_idle(Idle(now, reason, epochs.get(self.worker.id, 0), failed=failed))
        self._outbound(worker).set_idle(Idle(now, reason, failed=failed))

    def on_peer_busy(self, worker: int) -> None:
        """``worker`` has work again: waits on it are no longer bound to fail."""
        self._inbound(worker).set_idle(None)
        self._outbound(worker).set_idle(None)

    def on_peer_lost(self, worker: int, reason: str) -> None:
        """``worker`` died or was restarted: streams both ways fail at once."""
        self._inbound(worker).lost(reason)
        self._outbound(worker).lost(reason)
        self._unsync(worker)

    # -- task boundaries ------------------------------------------------------------------------------

    def task_started(self) -> None:
        self.sending_to.clear()
        self.receiving_from.clear()
        self.streamed_to.clear()
        for out in list(self.outbound.values()):
            if out.broken is not None:
                self._retire(out)
        for inbound in list(self.inbound.values()):
            inbound.drop_orphans()

    def task_ended(self, failure: str | None) -> None:
        """At the end of a task: flush what it sent and grant credit for what it took. If it
        failed, tell the other ends of the streams it was in, so they stop instead of
        hanging: the producer's abort, the consumer's refusal. A stream broken during the
        task is forgotten, so the next task's ``send`` opens a new one."""
        self.flush_all()
        if failure is not None:
            for dest in list(self.sending_to):
                out = self._outbound(dest)
                if out.broken is None and out.epoch:
                    self.streamed_to.add(dest)
                    try:
                        self.worker.peer_link(dest).post(
                            p.ChanAbort(self.worker.id, out.epoch, f"{failure}, before closing its stream"))
                    except ChannelError as exc:
                        log.debug("could not abort the stream to worker %d: %s", dest, exc)
                self._retire(out)
            for source in list(self.receiving_from):
                refusal = self._inbound(source).abandon()
                if refusal is not None:
                    conn, epoch = refusal
                    _reply(conn, p.ChanRefused(epoch, f"worker {self.worker.id} stopped receiving: {failure}"))
        for out in list(self.outbound.values()):
            if out.broken is not None:
                self._retire(out)
        for inbound in list(self.inbound.values()):
            grant = inbound.grant()
            if grant is not None:
                _reply(*grant)
        self._sync(self.streamed_to)
        self.report_all()

    def _sync(self, dests: set[int]) -> None:
        """Wait until each of ``dests`` has taken in all this worker streamed to it (its answer
        to ``ChanSync`` comes after them), or its link is lost, or ``SYNC_TIMEOUT``."""
        mine = set()
        for dest in sorted(dests):
            token = next(_tokens)
            with self._synced:
                self._syncs[token] = dest
            try:
                self.worker.peer_link(dest).post(p.ChanSync(self.worker.id, token))
            except ChannelError as exc:
                log.debug("could not sync the streams to worker %d: %s", dest, exc)
                with self._synced:
                    self._syncs.pop(token, None)
                continue
            mine.add(token)
        deadline = time.monotonic() + SYNC_TIMEOUT
        with self._synced:
            while mine & self._syncs.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    log.debug("workers %s did not confirm the end of this task's streams",
                              sorted(self._syncs[t] for t in mine & self._syncs.keys()))
                    for token in mine:
                        self._syncs.pop(token, None)
                    break
                self._synced.wait(left)

    def _retire(self, out: Outbound) -> None:
        epoch, drop = out.retire()
        if drop is not None and epoch:
            self.streamed_to.add(out.dest)
            try:
                self.worker.peer_link(out.dest).post(p.ChanDrop(self.worker.id, epoch, drop))
            except ChannelError as exc:
                log.debug("could not tell worker %d to drop stream %d: %s", out.dest, epoch, exc)

    def epochs_sent(self) -> dict[int, int]:
        """The last stream epoch opened to each worker (0 if none since it last started): a
        consumer knows from it whether all this worker streamed to it has arrived."""
        return {dest: out.last for dest, out in list(self.outbound.items())}

    def report_all(self) -> None:
        for inbound in list(self.inbound.values()):
            self._report(inbound)

    def _report(self, inbound: Inbound) -> None:
        """Aggregated stream traffic for the timeline: one event per report, not per message."""
        with inbound.cond:
            stats, inbound.stats = inbound.stats, StreamStats()
        if stats.count:
            self.worker.emit(p.StreamStats(inbound.source, stats.count, stats.bytes, stats.first, stats.last))
