"""Links: framing and authentication for every link, control and peer alike.

A frame is a list of byte parts sent as one scatter/gather write::

    !I  number of parts
    !Q  length of each part
    ... the parts, back to back

One parser (``FrameReader.frame``) reads every frame, with a size limit as a parameter.
A large part is received into its own preallocated buffer, so an out-of-band pickle
buffer (a NumPy array, a bytes object) is never joined into one big copy.

``Listener.accept()`` and ``connect()`` return only authenticated ``Connection``s, as
``multiprocessing.connection`` does: the two ends first run a mutual HMAC-SHA256
challenge with the session key, on frames capped at ``HANDSHAKE_LIMIT`` bytes, and
nothing is unpickled before it succeeds. No caller can skip it.
"""

from __future__ import annotations

import hmac
import logging
import mmap
import os
import pickle
import socket
import struct
import threading
from collections.abc import Sequence
from typing import Any

from . import protocol
from .errors import AuthenticationError, ConnectionClosed, FrameError, WireError

log = logging.getLogger("ipyworkers.wire")

COUNT = struct.Struct("!I")
LENGTH = struct.Struct("!Q")
HANDSHAKE_LIMIT = 256
MAX_PARTS = 1 << 20
SOCKET_BUFFER = 4 << 20
IOV_MAX = 512
LARGE_BUFFER = 1 << 20
READ_BUFFER = 1 << 18
NONCE_BYTES = 32
HANDSHAKE_SECONDS = 10.0

_CHALLENGE = b"ipyworkers-challenge"
_RESPONSE = b"ipyworkers-response"
_WELCOME = b"ipyworkers-welcome"
_FAILURE = b"ipyworkers-failure"


# -- frames ---------------------------------------------------------------------------


def receive_buffer(size: int) -> bytearray | mmap.mmap:
    """Memory for ``size`` incoming bytes, not yet touched.

    A large buffer is an anonymous mapping with transparent huge pages, so the kernel
    faults it in 2 MiB at a time while the socket fills it (``bytearray(n)`` would
    first write n zero bytes, then fault 4 KiB pages: it halved the throughput).
    """
    if size < LARGE_BUFFER:
        return bytearray(size)
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            buf.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass
    return buf


def _recv_exact_into(sock: socket.socket, view: memoryview) -> None:
    while view:
        n = sock.recv_into(view)
        if n == 0:
            raise ConnectionClosed("connection closed by peer")
        view = view[n:]


def _flat(part: Any) -> memoryview:
    view = part if isinstance(part, memoryview) else memoryview(part)
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def send_frame(sock: socket.socket, parts: Sequence[Any]) -> None:
    """Send ``parts`` as one frame with scatter/gather writes (no joining)."""
    views = [_flat(p) for p in parts]
    header = COUNT.pack(len(views)) + b"".join(LENGTH.pack(v.nbytes) for v in views)
    pending = [memoryview(header), *(v for v in views if v.nbytes)]
    while pending:
        sent = sock.sendmsg(pending[:IOV_MAX])
        while sent:
            head = pending[0]
            if sent >= head.nbytes:
                sent -= head.nbytes
                pending.pop(0)
            else:
                pending[0] = head[sent:]
                sent = 0


class FrameReader:
    """Reads frames through one buffer, so many small frames cost one ``recv``; a large
    part is received straight into its own memory, never through the buffer."""

    def __init__(self, sock: socket.socket, size: int = READ_BUFFER):
        self.sock = sock
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)
        self.start = 0
        self.end = 0

    def _fill(self, need: int) -> None:
        if len(self.buf) - self.start < need:
            self.buf[: self.end - self.start] = self.buf[self.start : self.end]
            self.end -= self.start
            self.start = 0
        while self.end - self.start < need:
            n = self.sock.recv_into(self.view[self.end :])
            if n == 0:
                raise ConnectionClosed("connection closed by peer")
            self.end += n

    def _take(self, size: int) -> bytearray:
        self._fill(size)
        out = self.buf[self.start : self.start + size]
        self.start += size
        return out

    def _read(self, size: int) -> bytearray | mmap.mmap:
        if size <= len(self.buf) // 2:
            return self._take(size)
        out = receive_buffer(size)
        have = min(size, self.end - self.start)
        target = memoryview(out)
        target[:have] = self.view[self.start : self.start + have]
        self.start += have
        _recv_exact_into(self.sock, target[have:])
        return out

    def frame(self, limit: int | None = None) -> list[bytearray | mmap.mmap]:
        """One frame; refused before anything is allocated if it announces more than
        ``limit`` bytes (or more parts than ``limit`` could hold)."""
        (count,) = COUNT.unpack(self._take(COUNT.size))
        max_parts = MAX_PARTS if limit is None else max(1, limit // LENGTH.size)
        if count > max_parts:
            raise FrameError(f"frame announces {count} parts (limit {max_parts})")
        raw = self._take(LENGTH.size * count)
        lengths = [LENGTH.unpack_from(raw, i * LENGTH.size)[0] for i in range(count)]
        if limit is not None and sum(lengths) > limit:
            raise FrameError(f"frame announces {sum(lengths)} bytes (limit {limit})")
        return [self._read(size) for size in lengths]


# -- authentication -----------------------------------------------------------------------


def _digest(key: bytes, nonce: bytes) -> bytes:
    return hmac.new(key, _RESPONSE + nonce, "sha256").digest()


def _deliver_challenge(sock: socket.socket, reader: FrameReader, key: bytes) -> None:
    nonce = os.urandom(NONCE_BYTES)
    send_frame(sock, [_CHALLENGE, nonce])
    answer = reader.frame(HANDSHAKE_LIMIT)
    if len(answer) != 1 or not hmac.compare_digest(bytes(answer[0]), _digest(key, nonce)):
        send_frame(sock, [_FAILURE])
        raise AuthenticationError("peer failed the session-key challenge")
    send_frame(sock, [_WELCOME])


def _answer_challenge(sock: socket.socket, reader: FrameReader, key: bytes) -> None:
    challenge = reader.frame(HANDSHAKE_LIMIT)
    if len(challenge) != 2 or bytes(challenge[0]) != _CHALLENGE:
        raise AuthenticationError("peer sent a malformed challenge")
    send_frame(sock, [_digest(key, bytes(challenge[1]))])
    verdict = reader.frame(HANDSHAKE_LIMIT)
    if [bytes(p) for p in verdict] != [_WELCOME]:
        raise AuthenticationError("peer rejected our session key")


def authenticate(sock: socket.socket, reader: FrameReader, key: bytes, *, server: bool,
                 timeout: float = HANDSHAKE_SECONDS) -> None:
    """Mutual challenge; the accepting side challenges first, so an unauthenticated
    client learns nothing. Raises ``AuthenticationError`` on any failure."""
    steps = (_deliver_challenge, _answer_challenge) if server else (_answer_challenge, _deliver_challenge)
    previous = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        for step in steps:
            step(sock, reader, key)
    except TimeoutError as exc:
        raise AuthenticationError(f"handshake timed out after {timeout} s") from exc
    except (ConnectionClosed, FrameError, OSError) as exc:
        raise AuthenticationError(f"handshake failed: {exc}") from exc
    finally:
        sock.settimeout(previous)


# -- connections -------------------------------------------------------------------------


def tune(sock: socket.socket) -> None:
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        except OSError:
            pass


class Connection:
    """An authenticated link carrying ``protocol`` records plus raw byte parts.

    Only one thread reads; any number may send, each frame going out whole under the
    send lock. Made only by ``Listener.accept`` and ``connect``.
    """

    def __init__(self, sock: socket.socket, reader: FrameReader):
        self.sock = sock
        self._reader = reader
        self._send_lock = threading.Lock()
        self.closed = False
        self.bytes_received = 0

    def send(self, msg: Any, parts: Sequence[Any] = ()) -> None:
        head = pickle.dumps(protocol.pack(msg), protocol=5)
        with self._send_lock:
            try:
                send_frame(self.sock, [head, *parts])
            except OSError as exc:
                if isinstance(exc, WireError):
                    raise
                raise ConnectionClosed(str(exc)) from exc

    def recv(self) -> tuple[Any, list]:
        try:
            parts = self._reader.frame()
        except OSError as exc:
            if isinstance(exc, WireError):
                raise
            raise ConnectionClosed(str(exc)) from exc
        if not parts:
            raise FrameError("empty frame")
        self.bytes_received += sum(len(p) for p in parts)
        try:
            return protocol.unpack(pickle.loads(parts[0])), parts[1:]
        except Exception as exc:
            raise FrameError(f"unreadable message: {exc}") from exc

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def _authenticated(sock: socket.socket, key: bytes, server: bool, timeout: float) -> Connection:
    try:
        tune(sock)
        reader = FrameReader(sock)
        authenticate(sock, reader, key, server=server, timeout=timeout)
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return Connection(sock, reader)


class Listener:
    """A bound, listening Unix socket; bound before its address is handed out."""

    def __init__(self, path: str, key: bytes, backlog: int = 64):
        self.address = path
        self._key = key
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(path)
            self._sock.listen(backlog)
        except BaseException:
            self._sock.close()
            raise

    def accept(self, timeout: float | None = None, handshake_timeout: float = HANDSHAKE_SECONDS) -> Connection:
        """The next authenticated connection. ``TimeoutError`` if none comes within
        ``timeout``; ``AuthenticationError`` if one came and failed the challenge."""
        self._sock.settimeout(timeout)
        sock, _ = self._sock.accept()
        sock.settimeout(None)
        try:
            return _authenticated(sock, self._key, True, handshake_timeout)
        except AuthenticationError as exc:
            log.debug("refused a connection on %s: %s", self.address, exc)
            raise

    def close(self) -> None:
        self._sock.close()
        try:
            os.unlink(self.address)
        except OSError:
            pass


def connect(address: str, key: bytes, timeout: float = HANDSHAKE_SECONDS) -> Connection:
    """An authenticated connection to the ``Listener`` at ``address``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    conn = _authenticated(sock, key, False, timeout)
    log.debug("connected to %s", address)
    return conn
