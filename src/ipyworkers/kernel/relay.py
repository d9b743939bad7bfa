"""Values between workers that cannot reach each other, passed on by the kernel.

A worker that cannot connect to another (different networks, a firewall) sends
``Relay`` on its control link; the kernel asks the holder with ``Get`` on *its* control
link, under a request id of its own (negative, so it never meets the scheduler's), and
passes the ``Value`` on. ``routes`` remembers who reaches whom this way, for the status.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from .. import protocol as p


class Relay:
    def __init__(self, post: Callable[..., Any], alive: Callable[[int], bool]):
        self._post = post
        self._alive = alive
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[int, int, int]] = {}
        self.routes: dict[int, set[int]] = {}

    def request(self, requester: int, msg: p.Relay) -> None:
        if not self._alive(msg.source):
            self._post(requester, p.Value(msg.req, "error", f"worker {msg.source}, which holds {msg.name!r}, "
                                                             f"is gone"))
            return
        with self._lock:
            req = -next(self._ids)
            self._pending[req] = (requester, msg.req, msg.source)
            self.routes.setdefault(requester, set()).add(msg.source)
        self._post(msg.source, p.Get(req, msg.name, msg.version))

    def answer(self, msg: p.Value, parts: list) -> bool:
        """Pass a relayed value on; False if ``msg`` answers someone else."""
        if msg.req >= 0:
            return False
        with self._lock:
            entry = self._pending.pop(msg.req, None)
        if entry is not None:
            requester, req, _ = entry
            self._post(requester, p.Value(req, msg.status, msg.info), parts)
        return True

    def lost(self, wid: int) -> None:
        """``wid`` is gone: what it was to send will not come."""
        with self._lock:
            failed = [(req, entry) for req, entry in self._pending.items() if entry[2] == wid]
            for req, _ in failed:
                del self._pending[req]
            self.routes.pop(wid, None)
            for sources in self.routes.values():
                sources.discard(wid)
        for _, (requester, their_req, source) in failed:
            self._post(requester, p.Value(their_req, "error", f"worker {source} died while relaying a value"))
