"""Hellos from a network listener, taken all the time and each on a thread of its own.

On a Unix socket only this kernel's own children connect, and the supervisor accepts
inline. A TCP listener faces a network: a silent or slow connection (a port scanner, a
worker whose host is busy) must not hold up a start, and a worker that arrives when no
start waits for it (a join command run twice) should hear so at once, not time out. So
an acceptor thread takes every connection and hands each to a handshake thread, which
runs TLS and the challenge, reads the hello, and queues it while a start is ``open``,
or refuses it, saying why.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from .. import protocol as p
from .. import wire
from ..errors import WireError

log = logging.getLogger("ipyworkers.kernel")

HELLO_SECONDS = 5.0


class Acceptor:
    def __init__(self, listener: wire.Listener):
        self.listener = listener
        self.hellos: queue.Queue[tuple[wire.Connection, Any]] = queue.Queue()
        self._open = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, name="ipyworkers-accept", daemon=True)
        self._thread.start()

    def open(self) -> None:
        with self._lock:
            self._open += 1

    def close_start(self) -> None:
        """A start ended: whoever queued and was not taken is told so."""
        with self._lock:
            self._open -= 1
            if self._open:
                return
            while True:
                try:
                    conn, _ = self.hellos.get_nowait()
                except queue.Empty:
                    return
                refuse(conn, "no worker of this cluster is waiting to start now")

    def next(self, timeout: float) -> tuple[wire.Connection, Any] | None:
        try:
            return self.hellos.get(timeout=timeout)
        except queue.Empty:
            return None

    def _accept_loop(self) -> None:
        while True:
            try:
                sock = self.listener.accept_socket()
            except OSError:
                return  # the listener was closed
            threading.Thread(target=self._handshake, args=(sock,), name="ipyworkers-handshake", daemon=True).start()

    def _handshake(self, sock: Any) -> None:
        try:
            conn = self.listener.handshake(sock)
        except WireError:
            return
        hello = receive_hello(conn)
        if hello is None:
            return
        with self._lock:
            if self._open:
                self.hellos.put((conn, hello))
                return
        refuse(conn, "no worker of this cluster is waiting to start now")

    def close(self) -> None:
        self.listener.close()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        while True:
            try:
                conn, _ = self.hellos.get_nowait()
            except queue.Empty:
                return
            conn.close()


def refuse(conn: wire.Connection, reason: str) -> None:
    """Tell a worker why it is not taken (it prints that and exits), then close."""
    try:
        conn.send(p.Refused(reason))
    except WireError:
        pass
    conn.close()


def receive_hello(conn: wire.Connection) -> Any:
    """The first record on a new authenticated link (a worker's ``Hello``), or None (the link
    closed) if it does not come within ``HELLO_SECONDS``."""
    try:
        conn.sock.settimeout(HELLO_SECONDS)
        hello, _ = conn.recv()
        conn.sock.settimeout(None)
    except (WireError, OSError) as exc:
        log.debug("a worker's hello did not arrive: %s", exc)
        conn.close()
        return None
    return hello
