"""Framing, authentication and serialisation for every link (control and peer).

A frame is a list of byte parts sent as one scatter/gather write::

    !I  number of parts
    !Q  length of each part
    ... the parts, back to back

Each part is received into its own preallocated buffer, so a large out-of-band
pickle buffer (a NumPy array, a bytes object) is never joined into one big copy.

Before a link is authenticated, frames are capped at a few hundred bytes and
nothing is unpickled: the two ends run a mutual HMAC-SHA256 challenge with the
session key, in the manner of ``multiprocessing.connection``.
"""

from __future__ import annotations

import hmac
import mmap
import os
import pickle
import socket
import struct
import threading
from collections.abc import Sequence
from typing import Any

from .errors import AuthenticationError, ConnectionClosed, FrameError, SerializationError, WireError  # noqa: F401

COUNT = struct.Struct("!I")
LENGTH = struct.Struct("!Q")
HANDSHAKE_LIMIT = 256
MAX_PARTS = 1 << 20
SOCKET_BUFFER = 4 << 20
IOV_MAX = 512
LARGE_BUFFER = 1 << 20
READ_BUFFER = 1 << 18
NONCE_BYTES = 32

_CHALLENGE = b"ipyworkers-challenge"
_RESPONSE = b"ipyworkers-response"
_WELCOME = b"ipyworkers-welcome"
_FAILURE = b"ipyworkers-failure"












# -- raw frames ----------------------------------------------------------------


def _recv_exact_into(sock: socket.socket, view: memoryview) -> None:
    while view:
        n = sock.recv_into(view)
        if n == 0:
            raise ConnectionClosed("connection closed by peer")
        view = view[n:]


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


def _recv_exact(sock: socket.socket, size: int) -> bytearray | mmap.mmap:
    buf = receive_buffer(size)
    _recv_exact_into(sock, memoryview(buf))
    return buf


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


def recv_frame(sock: socket.socket, limit: int | None = None) -> list[bytearray | mmap.mmap]:
    """Receive one frame; refuse it before allocating if it exceeds ``limit`` bytes."""
    (count,) = COUNT.unpack(_recv_exact(sock, COUNT.size))
    max_parts = MAX_PARTS if limit is None else max(1, limit // LENGTH.size)
    if count > max_parts:
        raise FrameError(f"frame announces {count} parts (limit {max_parts})")
    lengths_raw = _recv_exact(sock, LENGTH.size * count)
    lengths = [LENGTH.unpack_from(lengths_raw, i * LENGTH.size)[0] for i in range(count)]
    total = sum(lengths)
    if limit is not None and total > limit:
        raise FrameError(f"frame announces {total} bytes (limit {limit})")
    parts = []
    for size in lengths:
        parts.append(_recv_exact(sock, size))
    return parts


# -- authentication -----------------------------------------------------------------


def _digest(key: bytes, nonce: bytes) -> bytes:
    return hmac.new(key, _RESPONSE + nonce, "sha256").digest()


def _deliver_challenge(sock: socket.socket, key: bytes) -> None:
    nonce = os.urandom(NONCE_BYTES)
    send_frame(sock, [_CHALLENGE, nonce])
    answer = recv_frame(sock, HANDSHAKE_LIMIT)
    if len(answer) != 1 or not hmac.compare_digest(bytes(answer[0]), _digest(key, nonce)):
        send_frame(sock, [_FAILURE])
        raise AuthenticationError("peer failed the session-key challenge")
    send_frame(sock, [_WELCOME])


def _answer_challenge(sock: socket.socket, key: bytes) -> None:
    challenge = recv_frame(sock, HANDSHAKE_LIMIT)
    if len(challenge) != 2 or bytes(challenge[0]) != _CHALLENGE:
        raise AuthenticationError("peer sent a malformed challenge")
    send_frame(sock, [_digest(key, bytes(challenge[1]))])
    verdict = recv_frame(sock, HANDSHAKE_LIMIT)
    if [bytes(p) for p in verdict] != [_WELCOME]:
        raise AuthenticationError("peer rejected our session key")


def _handshake(sock: socket.socket, key: bytes, timeout: float, first, second) -> None:
    previous = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        first(sock, key)
        second(sock, key)
    except TimeoutError as exc:
        raise AuthenticationError(f"handshake timed out after {timeout} s") from exc
    except (ConnectionClosed, FrameError, OSError) as exc:
        raise AuthenticationError(f"handshake failed: {exc}") from exc
    finally:
        sock.settimeout(previous)


def handshake_server(sock: socket.socket, key: bytes, timeout: float = 10.0) -> None:
    """Accepting side: challenge first, so an unauthenticated client learns nothing."""
    _handshake(sock, key, timeout, _deliver_challenge, _answer_challenge)


def handshake_client(sock: socket.socket, key: bytes, timeout: float = 10.0) -> None:
    _handshake(sock, key, timeout, _answer_challenge, _deliver_challenge)


# -- authenticated connections ---------------------------------------------------------


def tune(sock: socket.socket) -> None:
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        except OSError:
            pass


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

    def read(self, size: int) -> bytearray | mmap.mmap:
        if size <= len(self.buf) // 2:
            return self._take(size)
        out = receive_buffer(size)
        have = min(size, self.end - self.start)
        target = memoryview(out)
        target[:have] = self.view[self.start : self.start + have]
        self.start += have
        _recv_exact_into(self.sock, target[have:])
        return out

    def frame(self) -> list[bytearray | mmap.mmap]:
        (count,) = COUNT.unpack(self._take(COUNT.size))
        if count > MAX_PARTS:
            raise FrameError(f"frame announces {count} parts (limit {MAX_PARTS})")
        lengths = self._take(LENGTH.size * count)
        return [self.read(LENGTH.unpack_from(lengths, i * LENGTH.size)[0]) for i in range(count)]


class Connection:
    """An authenticated link: a pickled header message plus raw byte parts.

    One thread reads; any number of threads may send.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._send_lock = threading.Lock()
        self._reader = FrameReader(sock)
        self.closed = False
        self.bytes_received = 0

    def send(self, msg: Any, parts: Sequence[Any] = ()) -> None:
        head = pickle.dumps(msg, protocol=5)
        with self._send_lock:
            try:
                send_frame(self.sock, [head, *parts])
            except OSError as exc:
                raise ConnectionClosed(str(exc)) from exc

    def recv(self) -> tuple[Any, list[bytearray]]:
        try:
            parts = self._reader.frame()
        except OSError as exc:
            if isinstance(exc, ConnectionClosed):
                raise
            raise ConnectionClosed(str(exc)) from exc
        if not parts:
            raise FrameError("empty frame")
        self.bytes_received += sum(len(p) for p in parts)
        return pickle.loads(parts[0]), parts[1:]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def connect_unix(path: str, key: bytes, timeout: float = 10.0) -> Connection:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        tune(sock)
        sock.settimeout(timeout)
        sock.connect(path)
        sock.settimeout(None)
        handshake_client(sock, key, timeout)
    except BaseException:
        sock.close()
        raise
    return Connection(sock)


def accept_authenticated(listener: socket.socket, key: bytes, timeout: float = 10.0) -> Connection:
    sock, _ = listener.accept()
    try:
        sock.settimeout(None)
        tune(sock)
        handshake_server(sock, key, timeout)
    except BaseException:
        sock.close()
        raise
    return Connection(sock)


# -- values ---------------------------------------------------------------------------


def dumps_value(name: str, value: Any) -> list[Any]:
    """Pickle ``value`` with protocol 5; large buffers stay out of band, uncopied.

    Plain pickle first (twice as fast on small values); cloudpickle when that fails
    or refers to ``__main__``, whose functions and classes must travel by value.
    """
    buffers: list[pickle.PickleBuffer] = []
    try:
        main = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        if b"__main__" not in main:
            return [main, *(b.raw() for b in buffers)]
    except Exception:
        pass
    import cloudpickle

    buffers = []
    try:
        main = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:
        kind = type(value)
        raise SerializationError(
            f"cannot send variable {name!r} of type {kind.__module__}.{kind.__qualname__}: {exc}"
        ) from exc
    return [main, *(b.raw() for b in buffers)]


def loads_value(name: str, parts: Sequence[Any], where: str) -> Any:
    try:
        return pickle.loads(parts[0], buffers=parts[1:])
    except Exception as exc:
        raise SerializationError(
            f"variable {name!r} cannot be unpickled on {where}: {type(exc).__name__}: {exc}"
        ) from exc


def pack_values(values: dict[str, list[Any]]) -> tuple[list[tuple[str, int]], list[Any]]:
    """Flatten {name: parts} into (index, parts) for one frame."""
    index, parts = [], []
    for name, value_parts in values.items():
        index.append((name, len(value_parts)))
        parts.extend(value_parts)
    return index, parts


def unpack_values(index: Sequence[tuple[str, int]], parts: Sequence[Any]) -> dict[str, list[Any]]:
    out, pos = {}, 0
    for name, count in index:
        out[name] = list(parts[pos : pos + count])
        pos += count
    return out
