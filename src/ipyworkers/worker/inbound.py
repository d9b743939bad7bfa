"""The consumer's end of a stream from one worker: what arrived and is not yet taken."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .. import protocol as p
from ..errors import ChannelError
from .streams import (
    CREDIT_BATCH,
    CREDIT_BATCH_BYTES,
    IDLE_GRACE,
    Idle,
    StreamStats,
    before_closing,
    never_ran,
    send_reply,
)

log = logging.getLogger("ipyworkers.worker")


CLOSED = object()
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

    Credit goes back in batches: once the consumer has taken ``CREDIT_BATCH`` messages or
    ``CREDIT_BATCH_BYTES``, or when the producer asked (its window full) and the consumer
    has taken all that came before the asking. A consumer that drains its queue faster
    than it fills so sends one credit per half window, not one per message.
    """

    def __init__(self, source: int, me: int):
        self.source = source
        self.me = me
        self.lock = threading.RLock()
        """``cond``'s own lock: ``with self.lock`` costs less than ``with self.cond``, per message."""
        self.cond = threading.Condition(self.lock)
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
        self.idle: Idle | None = never_ran()
        self.credit = 0
        self.credit_bytes = 0
        self.credit_key: tuple[int, int] | None = None
        self.asked: tuple[int, int] | None = None
        """The stream whose producer asked for credit, and has not had it since."""
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

    def put_many(self, conn: Any, epoch: int, messages: list[tuple[list, int]], nbytes: int,
                 ask: bool) -> tuple[Any, Any] | None:
        """Queue a batch; returns credit to send if the producer asked and all it sent
        before has already been taken."""
        with self.lock:
            if not self._live(conn, epoch):
                log.debug("dropped %d messages of ended stream %d from worker %d", len(messages), epoch, self.source)
                return None
            key = (self.link, epoch)
            self.items.extend((key, parts, size) for parts, size in messages)
            if messages:
                self.stats.add(len(messages), nbytes)
            self.cond.notify_all()
            if ask:
                self.asked = key
                if not self.items and self.credit_key == key:
                    return self._grant_locked()
            return None

    def close(self, conn: Any, epoch: int) -> None:
        with self.cond:
            if self._live(conn, epoch):
                self._end_locked(epoch, CLOSED, None)

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
                self._end_locked(self.opened, _ABORTED, before_closing(self.source, reason))
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

    def get(self, before_wait: Callable[[], None] | None = None) -> Any:
        """The next message's parts, or ``CLOSED``. Raises if the stream was aborted, or if
        nothing more can come: the producer is dead, or idle with all it sent here taken.
        ``before_wait`` runs (without the lock) once, if nothing is queued, before waiting:
        what this worker has batched for others goes out before it sleeps."""
        started = time.monotonic()
        while True:
            item, detail = _NOTHING, None
            with self.lock:
                if self.items:
                    key, item, detail = self.items.popleft()
                    if item is CLOSED or item is _ABORTED:
                        self.reading = None
                        reply = None
                    else:
                        self.reading = key
                        reply = self._count_credit_locked(key, detail)
                else:
                    if self.opened > self.ended:
                        self.reading = (self.link, self.opened)
                    reply = self._grant_locked() if self.asked == self.credit_key else None
                    if reply is None and before_wait is None:
                        self.cond.wait(self._check_idle_locked(started))
                        continue
            if reply is not None:
                send_reply(*reply)
            if item is _ABORTED:
                raise ChannelError(detail)
            if item is not _NOTHING:
                return item
            if before_wait is not None:
                before_wait()
                before_wait = None

    def _count_credit_locked(self, key: tuple[int, int], nbytes: int) -> tuple[Any, Any] | None:
        if key != self.credit_key:
            self.credit_key, self.credit, self.credit_bytes = key, 0, 0
        self.credit += 1
        self.credit_bytes += nbytes
        if (self.credit >= CREDIT_BATCH or self.credit_bytes >= CREDIT_BATCH_BYTES
                or (self.asked == key and not self.items)):
            return self._grant_locked()
        return None

    def _grant_locked(self) -> tuple[Any, Any] | None:
        """Credit for what the consumer took, to send (on the current link only)."""
        key = self.credit_key
        if not self.credit or key is None or key[0] != self.link or self.conn is None or self.gone:
            return None
        credit = p.Credit(key[1], self.credit, self.credit_bytes)
        self.credit = self.credit_bytes = 0
        if self.asked == key:
            self.asked = None
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
