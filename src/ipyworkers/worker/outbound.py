"""The producer's end of a stream to one worker: the credit window and the batch.

A batch leaves as one frame when it is full (``BATCH`` messages or ``BATCH_BYTES``), when
its first message is ``BATCH_DELAY`` old, when the window is full, or when this worker is
about to wait (for a stream, or at its task's end). A message sent after a quiet spell
(no frame for ``BATCH_DELAY``) leaves at once: only a burst waits to be batched. A frame
sent because the window is full asks the consumer for its credit (``ask``): the consumer
otherwise returns credit only half a window at a time, and a producer held back by the
byte limit could wait for credit that never reaches that half."""

from __future__ import annotations

import logging
import math
import threading
import time

from ..errors import ChannelError
from .streams import BATCH, BATCH_BYTES, BATCH_DELAY, IDLE_GRACE, WINDOW, WINDOW_BYTES, Idle, never_ran, stream_broken

log = logging.getLogger("ipyworkers.worker")

ADDED = 0
"""``put``: the message joined a batch that may wait."""
STARTED = 1
"""``put``: the message began a new batch, which is due in ``BATCH_DELAY``."""
FULL = 2
"""``put``: the batch must go now: it is full, old, or the window is."""


class Outbound:
    """This worker's side of the streams to ``dest``: the open one's epoch, its credit window
    and its batch. The state is guarded by ``cond``; nothing is sent while it is held."""

    def __init__(self, dest: int):
        self.dest = dest
        self.lock = threading.RLock()
        """``cond``'s own lock: ``with self.lock`` costs less than ``with self.cond``, per message."""
        self.cond = threading.Condition(self.lock)
        self.epoch = 0
        """The stream open now; 0 if none."""
        self.last = 0
        """The last epoch opened (``Finished`` reports it); the next one is one more."""
        self.in_flight = 0
        self.bytes_in_flight = 0
        self.broken: str | None = None
        self.drop = False
        """Broken because ``dest`` was not taking the stream: it must drop what it holds."""
        self.idle: Idle | None = never_ran()
        self.batch: list[list] = []
        self.batch_bytes = 0
        self.batch_started = 0.0
        self.last_sent = -math.inf
        self.ask = False
        """The window is full: the next frame asks the consumer for its credit."""
        self.asked = False
        """A frame asked, and no credit has come since: asking again would only cost a frame."""
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
            self.ask = self.asked = False
            return self.epoch

    def put(self, parts: list, nbytes: int, block: bool) -> int | None:
        """Batch one message if the window has room for it: ``ADDED``, ``STARTED`` or
        ``FULL`` (send the batch now); None if there is no room and not ``block``. Blocking,
        wait for credit; but if ``dest`` is idle (and stays so for ``IDLE_GRACE``) nobody
        will ever take what waits there, so raise instead, naming why."""
        with self.lock:
            if self.broken is None and (not self.in_flight or (
                    self.in_flight < WINDOW and self.bytes_in_flight + nbytes <= WINDOW_BYTES)):
                return self._add_locked(parts, nbytes, quiet=True)
            started = None
            while True:
                if self.broken is not None:
                    raise ChannelError(self.broken)
                if not self.in_flight or (self.in_flight < WINDOW
                                          and self.bytes_in_flight + nbytes <= WINDOW_BYTES):
                    return self._add_locked(parts, nbytes, quiet=started is None)
                if not block:
                    self.ask = self.ask or not self.asked
                    return None
                timeout = None
                started = time.monotonic() if started is None else started
                if self.idle is not None and self.idle.final:
                    timeout = max(self.idle.since, started) + IDLE_GRACE - time.monotonic()
                    if timeout <= 0:
                        self.broken = f"worker {self.dest} is not receiving: {self.idle.reason}"
                        self.drop = True
                        raise ChannelError(self.broken)
                self.cond.wait(timeout)

    def _add_locked(self, parts: list, nbytes: int, quiet: bool) -> int:
        """``quiet``: a message after a quiet spell may go at once; not one that waited for
        credit (the consumer is behind: it would only cost a frame)."""
        now = time.monotonic()
        self.in_flight += 1
        self.bytes_in_flight += nbytes
        self.batch.append(parts)
        self.batch_bytes += nbytes
        if len(self.batch) == 1:
            self.batch_started = now
            if quiet and now - self.last_sent >= BATCH_DELAY:
                return FULL
        if self.in_flight >= WINDOW and not self.asked:
            self.ask = True
        if (self.ask or len(self.batch) >= BATCH or self.batch_bytes >= BATCH_BYTES
                or now - self.batch_started >= BATCH_DELAY):
            return FULL
        return STARTED if len(self.batch) == 1 else ADDED

    def due(self) -> float | None:
        """When the waiting batch must go (``time.monotonic()``), or None if there is none."""
        with self.cond:
            return self.batch_started + BATCH_DELAY if self.batch else None

    def take_batch(self) -> tuple[int, list[list], bool]:
        """The batch to send, its stream, and whether its frame asks for credit."""
        with self.cond:
            batch, self.batch, self.batch_bytes = self.batch, [], 0
            ask, self.ask = self.ask, False
            self.asked = self.asked or ask
            if batch:
                self.last_sent = time.monotonic()
            return self.epoch, batch, ask

    def release(self, epoch: int, count: int, nbytes: int) -> None:
        """Credit from the consumer; an earlier stream's credit frees nothing of this one."""
        with self.cond:
            if epoch != self.epoch:
                return
            self.in_flight = max(0, self.in_flight - count)
            self.bytes_in_flight = max(0, self.bytes_in_flight - nbytes)
            self.asked = False
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
                self.broken = stream_broken(self.dest, reason)
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
            self.ask = self.asked = False

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
            self.ask = self.asked = False
            return epoch, drop
