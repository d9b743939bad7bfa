"""What both ends of a stream share: the limits, what an idle or dead peer means, and the
words of their errors."""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("ipyworkers.worker")


WINDOW = 256
WINDOW_BYTES = 32 << 20
"""At most this many messages, and bytes, sent and not yet taken by the consumer (a
single larger message still goes, alone)."""
CREDIT_BATCH = WINDOW // 2
CREDIT_BATCH_BYTES = WINDOW_BYTES // 2
"""The consumer returns credit when it has taken this much: half a window, so the
producer, with the other half, goes on sending while the credit travels."""
BATCH = 64
BATCH_BYTES = 256 << 10
BATCH_DELAY = 0.002
"""The longest a message waits in its batch while the sender goes on computing; a
message sent after a quiet spell this long goes at once."""
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

sync_tokens = itertools.count(1)


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


def never_ran() -> Idle:
    return Idle(-math.inf, NEVER_RAN)


def before_closing(source: int, reason: str) -> str:
    """The consumer's error: 'worker 1 died (exit code 1)' becomes 'worker 1 died before
    closing its stream (exit code 1)', so the message reads the same whichever news of the
    death (the link closing, or the kernel's ``PeerLost``) came first."""
    head = f"worker {source} died"
    if reason.startswith(head):
        return f"{head} before closing its stream{reason[len(head):]}"
    return f"{reason}, before closing its stream"


def stream_broken(dest: int, reason: str) -> str:
    """The producer's error, worded as when its link to ``dest`` closes."""
    head = f"worker {dest} died"
    if reason.startswith(head):
        return f"{head}: the stream to it is broken{reason[len(head):]}"
    return f"{reason}: the stream to it is broken"


def send_reply(conn: Any, record: Any) -> None:
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

    def add(self, count: int, nbytes: int) -> None:
        now = time.monotonic()
        if not self.count:
            self.first = now
        self.count += count
        self.bytes += nbytes
        self.last = now
