"""The kernel's end of one worker's control link.

Two threads per link, each with one job: the *sender* writes queued frames, so no
caller ever blocks on the socket (a 1 GB push goes out while the kernel's main thread
stays free to be interrupted), and a frame is always written whole or not at all; the
*reader* reads what the worker reports and hands each record to a handler.

One frame is written at a time, in the order posted. A thread that posted small frames
may write them itself once it holds no lock (``pump``), when no one else is writing: a
small task then goes out without waiting for the sender thread to wake. It writes only
what the socket takes at once (a stopped worker's full socket blocks no poster, and so
no notebook); the sender thread finishes the frame. Large frames are always left to the
sender thread, so no caller blocks on a big write.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import WireError
from ..wire import Connection

log = logging.getLogger("ipyworkers.kernel")

QUEUED, SENDING, SENT, DROPPED = "queued", "sending", "sent", "dropped"
PUMP_LIMIT = 64 << 10
"""Frames up to this size may be written by the thread that posted them."""
SENDER_POLL_SECONDS = 0.05
"""The sender thread looks at its outbox this often even unwoken: a frame queued without a
wake-up whose poster did not pump goes out late, never not at all."""


class Ticket:
    """One posted frame; ``state`` moves queued -> sending -> sent (or dropped)."""

    __slots__ = ("msg", "parts", "state", "small", "rest")

    def __init__(self, msg: Any, parts: Sequence[Any]):
        self.msg = msg
        self.parts = parts
        self.state = QUEUED
        self.small = not parts or sum(memoryview(part).nbytes for part in parts) <= PUMP_LIMIT
        self.rest: memoryview | None = None
        """What a pumping thread could not write at once; the sender thread finishes it."""


class WorkerLink:
    def __init__(self, worker: int, conn: Connection, on_message: Callable[[int, Any, list], None],
                 on_closed: Callable[[int, str], None]):
        self.worker = worker
        self.conn = conn
        self._on_message = on_message
        self._on_closed = on_closed
        self._outbox: deque[Ticket] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._writing = False
        self._sender = threading.Thread(target=self._send_loop, name=f"ipyworkers-send-{worker}", daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name=f"ipyworkers-read-{worker}", daemon=True)

    def start(self) -> None:
        self._sender.start()
        self._reader.start()

    def post(self, msg: Any, parts: Sequence[Any] = (), wake: bool = True) -> Ticket:
        """Queue a frame; never blocks on the socket. With ``wake=False`` the poster will
        ``pump`` (waking the sender thread only for what it leaves), so a small frame goes
        out without a second thread contending for the interpreter."""
        ticket = Ticket(msg, parts)
        with self._cond:
            if self._closing:
                ticket.state = DROPPED
                return ticket
            self._outbox.append(ticket)
            if wake or not ticket.small:
                self._cond.notify()
        return ticket

    def cancel(self, ticket: Ticket) -> bool:
        """Drop a frame not yet being written; False if it is (or was) on its way."""
        with self._cond:
            if ticket.state != QUEUED:
                return ticket.state == DROPPED
            try:
                self._outbox.remove(ticket)
            except ValueError:
                return False
            ticket.state = DROPPED
            return True

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while (not self._outbox or self._writing) and not self._closing:
                    self._cond.wait(SENDER_POLL_SECONDS)
                if not self._outbox:
                    return
                if self._writing:
                    self._cond.wait(0.05)
                    continue
                ticket = self._take_locked()
            if not self._write(ticket):
                return

    def pump(self) -> None:
        """Write queued small frames from this thread if no one is writing (call it holding
        no lock). It never waits on the socket: a frame the socket does not take whole at
        once is left, begun, to the sender thread, so a stopped worker blocks no poster."""
        pumping = self.conn.writes_without_waiting
        while True:
            with self._cond:
                if (not pumping or self._writing or self._closing or not self._outbox
                        or not self._outbox[0].small):
                    if self._outbox and not self._writing:
                        self._cond.notify()
                    return
                ticket = self._take_locked()
            if not self._try_write(ticket):
                return

    def _take_locked(self) -> Ticket:
        ticket = self._outbox.popleft()
        ticket.state = SENDING
        self._writing = True
        return ticket

    def _write(self, ticket: Ticket) -> bool:
        try:
            if ticket.rest is not None:
                self.conn.send_rest(ticket.rest)
            else:
                self.conn.send(ticket.msg, ticket.parts)
        except WireError as exc:
            return self._broken(ticket, exc)
        return self._sent(ticket)

    def _try_write(self, ticket: Ticket) -> bool:
        """Write without waiting; False if the frame went back, begun, to the sender thread."""
        try:
            rest = self.conn.try_send(ticket.msg, ticket.parts)
        except WireError as exc:
            return self._broken(ticket, exc)
        if rest is None:
            return self._sent(ticket)
        with self._cond:
            ticket.rest, ticket.small = rest, False
            self._outbox.appendleft(ticket)  # still SENDING: no other frame may go before it ends
            self._writing = False
            self._cond.notify()
        return False

    def _sent(self, ticket: Ticket) -> bool:
        ticket.state = SENT
        ticket.parts, ticket.rest = (), None
        self._done_writing()
        return True

    def _broken(self, ticket: Ticket, exc: WireError) -> bool:
        ticket.state = DROPPED
        self._done_writing()
        self._drop_all()
        log.debug("link to worker %d broke while sending: %s", self.worker, exc)
        return False

    def _done_writing(self) -> None:
        with self._cond:
            self._writing = False
            if self._outbox:
                self._cond.notify()

    def _drop_all(self) -> None:
        with self._cond:
            self._closing = True
            for ticket in self._outbox:
                ticket.state = DROPPED
            self._outbox.clear()

    def _read_loop(self) -> None:
        reason = "its link closed"
        try:
            while True:
                msg, parts = self.conn.recv()
                self._on_message(self.worker, msg, parts)
        except WireError as exc:
            reason = str(exc)
        except Exception:
            log.exception("handling a message from worker %d failed", self.worker)
            reason = "a message from it could not be handled"
        log.debug("link to worker %d closed: %s", self.worker, reason)
        self._on_closed(self.worker, reason)

    def close(self, flush_seconds: float = 0.0) -> None:
        """Stop both threads. With ``flush_seconds``, let queued frames go out first."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if flush_seconds and self._sender.is_alive() and self._sender is not threading.current_thread():
            self._sender.join(flush_seconds)
        self._drop_all()
        self.conn.close()
        for thread in (self._sender, self._reader):
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(timeout=2)
