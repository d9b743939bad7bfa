"""Values to others: the peer listener, and answers to ``Get`` on any link.

The accept thread takes authenticated peer links (``Listener.accept`` runs the
challenge); each link gets a reader thread that hands stream records to the channels
and answers each ``Get`` on a thread of its own, which waits in the namespace until
the value exists, then sends it. So a slow or large value never holds up the link.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .. import protocol as p
from .. import wire
from ..errors import AuthenticationError, SerializationError, WireError
from ..serialize import dumps_value

log = logging.getLogger("ipyworkers.worker")


class ValueServer:
    def __init__(self, worker: Any, listener: wire.Listener):
        self.worker = worker
        self.listener = listener

    def start(self) -> None:
        threading.Thread(target=self._accept_loop, name="peer-accept", daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn = self.listener.accept()
            except AuthenticationError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve_peer, args=(conn,), name="peer-server", daemon=True).start()

    def _serve_peer(self, conn: wire.Connection) -> None:
        source = None
        try:
            hello, _ = conn.recv()
            if not isinstance(hello, p.PeerHello):
                raise WireError("peer did not say who it is")
            source = hello.worker
            while True:
                msg, parts = conn.recv()
                if isinstance(msg, p.Get):
                    self.answer(conn, msg)
                else:
                    self.worker.channels.on_peer_message(source, msg, parts, conn)
        except WireError as exc:
            log.debug("peer link from worker %s closed: %s", source, exc)
            conn.close()
            if source is not None:
                self.worker.channels.on_peer_gone(source)

    def answer(self, conn: wire.Connection, get: p.Get) -> None:
        threading.Thread(target=self._serve_get, args=(conn, get), name="value-sender", daemon=True).start()

    def _serve_get(self, conn: wire.Connection, get: p.Get) -> None:
        """Send ``name`` at ``version`` once it exists here."""
        status, value = self.worker.namespace.wait_for(get.name, get.version)
        try:
            if status != "ok":
                conn.send(p.Value(get.req, status, value))
                return
            served = time.monotonic()
            try:
                parts = dumps_value(get.name, value)
            except SerializationError as exc:
                conn.send(p.Value(get.req, "error", f"{exc} (on worker {self.worker.id})"))
                return
            conn.send(p.Value(get.req, "ok", served), parts)
        except WireError as exc:
            log.debug("could not send %r: %s", get.name, exc)

    def close(self) -> None:
        self.listener.close()
