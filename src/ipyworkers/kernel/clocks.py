"""A worker on another host has a monotonic clock of its own: the times it reports, in
the kernel's clock.

The hello gives a first guess (off by the hello's one-way delay); each heartbeat's pong,
which carries the worker's clock, places it to within half the ping's round trip, and the
shortest round trip yet wins. A worker on this host shares the kernel's clock (offset 0).
"""

from __future__ import annotations

from typing import Any

from .. import protocol as p

_TIMES: dict[type, tuple[str, ...]] = {p.Started: ("at",), p.Unrun: ("at",), p.Fetched: ("t0", "t1"),
                                        p.Finished: ("t0", "t1"), p.StreamStats: ("t0", "t1"), p.Value: ("info",)}


def hello_offset(received: float, clock: float) -> float:
    """The first guess; never exactly 0, which means "this host"."""
    return received - clock or 1e-9


def place_clock(offset: float, error: float, sent: float, answered: float, clock: float) -> tuple[float, float]:
    """(offset, error) after a ping sent at ``sent`` came back at ``answered`` carrying the
    worker's ``clock``: the worker read it in between, so the offset is known to half the
    round trip; the better of that and what was known wins."""
    candidate = (answered - sent) / 2
    if candidate >= error:
        return offset, error
    return (sent + answered) / 2 - clock or 1e-9, candidate


def in_kernel_clock(msg: Any, offset: float) -> Any:
    """``msg`` with the times it carries moved into the kernel's clock."""
    fields = _TIMES.get(type(msg))
    if fields is None or (isinstance(msg, p.Value) and (msg.status != "ok" or not isinstance(msg.info, float))):
        return msg
    return msg._replace(**{name: getattr(msg, name) + offset for name in fields})
