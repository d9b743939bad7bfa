"""Streams between workers: ``send(obj, to=ID)``, ``recv(frm=ID)``, ``close(to=ID)``
and ``for item in stream(frm=ID)``, inside worker code.

A channel is FIFO per pair of workers and rides the authenticated peer link from the
producer to the consumer, with the same zero-copy serialisation as any value. Flow
control is by credit: a producer has at most ``WINDOW`` messages (and about
``WINDOW_BYTES``) not yet taken by the consumer, so a fast producer blocks instead of
filling memory. The consumer returns credit half a window at a time, or when the
producer, its window full, asks for it. Small messages are batched, as Nagle's algorithm
does: one frame carries up to ``BATCH`` of them, and a batch waits at most
``BATCH_DELAY`` seconds, less if this worker is about to wait, so per-message cost
(a frame, a wake-up of the reader at the other end, a credit back) is paid per batch,
and a stage relaying a stream costs no round trip per message.

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
  or has work again (``PeerBusy``), and whether its last task failed. A consumer waiting
  on a producer idle after a failure, with all that producer sent here already taken, or a
  producer waiting for credit from a consumer idle after a failure, raises once the other
  end has been so, and this end waiting, for ``IDLE_GRACE``: the other end's cell may only
  be about to arrive ("Run all" submits cells one after the other, a consumer's often
  first). A peer idle after work that went well may still get the cell that streams (a
  user runs the cells by hand): that wait ends only by an interrupt.

That news comes through the kernel, and stream records straight from the producer, so
one could overtake the other. It cannot: a task that streamed ends with a round trip on
each stream link (``ChanSync``), before the runner reports it finished, so by the time a
consumer hears that its producer is idle, all the producer sent is here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from .. import protocol as p
from ..errors import ChannelError
from ..serialize import dumps_value, loads_value
from .inbound import CLOSED, Inbound
from .outbound import FULL, STARTED, Outbound
from .streams import SYNC_TIMEOUT, Idle, StreamStats, send_reply, sync_tokens

log = logging.getLogger("ipyworkers.worker")



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
        self._armed = False
        """The flush thread is between waking and sleeping, or sleeps until a batch is due:
        a new batch need not wake it."""
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
        state = out.put(parts, nbytes, block=False)
        if state is None:
            self._flush(out)
            state = out.put(parts, nbytes, block=True)
        if state == FULL:
            self._flush(out)
        elif state == STARTED and not self._armed:
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
            epoch, batch, ask = out.take_batch()
            if batch or ask:
                counts = [len(parts) for parts in batch]
                self._post(out, p.Chans(self.worker.id, epoch, counts, ask),
                           [part for parts in batch for part in parts])

    def flush_all(self) -> None:
        for out in list(self.outbound.values()):
            try:
                self._flush(out)
            except ChannelError as exc:
                log.debug("flushing the stream to worker %d failed: %s", out.dest, exc)

    def _flush_loop(self) -> None:
        """Send each batch when it is due: a message in a burst leaves at most ``BATCH_DELAY``
        after it was sent. A sender that goes on sending flushes its own batches; this
        thread wakes once per due time at most, and a new batch wakes it only when it has
        gone back to waiting (``_armed`` is cleared before the last look, so a batch made
        meanwhile is seen, or wakes it)."""
        while True:
            self._pending.wait()
            self._pending.clear()
            self._armed = True
            while True:
                due = [(when, out) for out in list(self.outbound.values()) if (when := out.due()) is not None]
                if not due:
                    self._armed = False
                    if any(out.due() is not None for out in list(self.outbound.values())):
                        self._armed = True
                        continue
                    break
                now = time.monotonic()
                first = min(when for when, _ in due)
                if first > now:
                    time.sleep(first - now)
                    continue
                for when, out in due:
                    if when <= now:
                        try:
                            self._flush(out)
                        except ChannelError as exc:
                            log.debug("flushing the stream to worker %d failed: %s", out.dest, exc)

    def recv(self, frm: int) -> Any:
        """The next object from worker ``frm``; blocks until it comes. ``EOFError`` after ``close``."""
        item = self._next(frm)
        if item is CLOSED:
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
            if item is CLOSED:
                return
            yield item

    def _next(self, frm: int) -> Any:
        inbound = self.inbound.get(frm) or self._checked_inbound(frm)
        self.receiving_from.add(frm)
        parts = inbound.get(self.flush_all)
        if parts is CLOSED:
            self.receiving_from.discard(frm)
            self._report(inbound)
            return CLOSED
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
            messages, pos, total = [], 0, 0
            for count in msg.counts:
                message = parts[pos : pos + count]
                pos += count
                size = sum(map(len, message))
                total += size
                messages.append((message, size))
            reply = inbound.put_many(conn, msg.epoch, messages, total, msg.ask)
            if reply is not None:
                send_reply(*reply)
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
            send_reply(conn, p.ChanSynced(msg.token))
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
                    send_reply(conn, p.ChanRefused(epoch, f"worker {self.worker.id} stopped receiving: {failure}"))
        for out in list(self.outbound.values()):
            if out.broken is not None:
                self._retire(out)
        for inbound in list(self.inbound.values()):
            grant = inbound.grant()
            if grant is not None:
                send_reply(*grant)
        self._sync(self.streamed_to)
        self.report_all()

    def _sync(self, dests: set[int]) -> None:
        """Wait until each of ``dests`` has taken in all this worker streamed to it (its answer
        to ``ChanSync`` comes after them), or its link is lost, or ``SYNC_TIMEOUT``."""
        if not dests:
            return
        mine = set()
        for dest in sorted(dests):
            token = next(sync_tokens)
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
