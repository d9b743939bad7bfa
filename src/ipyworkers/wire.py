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

Addresses: ``unix:///path`` (or a bare path), ``tcp://host:port`` and
``tls://host:port`` (port 0: any free port; ``Listener.address`` is the real one once
bound). A ``tls://`` link is mutual TLS 1.3 with the session's own CA (``tls.py``), the
HMAC challenge running inside it; ``tcp://`` is the HMAC challenge alone, for trusted
fabrics. TLS has no scatter/gather write (``SSLSocket`` has no ``sendmsg``): its frames go
out as the header and small parts coalesced, then each large part written from its own
memoryview, never joined.
"""

from __future__ import annotations

import hmac
import logging
import mmap
import os
import pickle
import socket
import ssl
import struct
import threading
from collections.abc import Sequence
from typing import Any

from . import protocol
from .addressing import family, format_address, parse_address
from .errors import AuthenticationError, ConnectionClosed, FrameError, WireError

log = logging.getLogger("ipyworkers.wire")

COUNT = struct.Struct("!I")
LENGTH = struct.Struct("!Q")
HANDSHAKE_LIMIT = 256
MAX_PARTS = 1 << 20
SOCKET_BUFFER = 4 << 20
IOV_MAX = 512
SMALL_FRAME = 16 << 10
"""A frame up to this size is copied into one write: cheaper than gathering its parts."""
LARGE_BUFFER = 1 << 20
READ_BUFFER = 1 << 18
NONCE_BYTES = 32
HANDSHAKE_SECONDS = 10.0
TLS_COALESCE = 64 << 10
KEEPALIVE = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}

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


def joined_frame(parts: Sequence[Any], limit: int | None = SMALL_FRAME) -> bytes | None:
    """The frame of ``parts`` as one bytes object, if its parts hold at most ``limit`` bytes
    (a lone record, as most control frames are, is checked first and cheapest)."""
    if len(parts) == 1 and type(parts[0]) is bytes:
        if limit is not None and len(parts[0]) > limit:
            return None
        return b"".join((COUNT.pack(1), LENGTH.pack(len(parts[0])), parts[0]))
    views = [_flat(p) for p in parts]
    if limit is not None and sum(v.nbytes for v in views) > limit:
        return None
    return b"".join((COUNT.pack(len(views)), *(LENGTH.pack(v.nbytes) for v in views), *views))


def send_frame(sock: socket.socket, parts: Sequence[Any]) -> None:
    """Send ``parts`` as one frame: a small one joined into one write, a large one with
    scatter/gather writes (no copying)."""
    joined = joined_frame(parts)
    if joined is not None:
        sock.sendall(joined)
        return
    views = [_flat(p) for p in parts]
    header = COUNT.pack(len(views)) + b"".join(LENGTH.pack(v.nbytes) for v in views)
    if isinstance(sock, ssl.SSLSocket):
        _send_tls(sock, header, views)
        return
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


def _send_tls(sock: ssl.SSLSocket, header: bytes, views: list[memoryview]) -> None:
    """Small pieces are gathered into one TLS write (a record each would cost more than
    the copy); a large part is written from its own memoryview, in place."""
    small = bytearray(header)
    for view in views:
        if view.nbytes < TLS_COALESCE:
            small += view
            if len(small) >= TLS_COALESCE:
                sock.sendall(small)
                small = bytearray()
            continue
        if small:
            sock.sendall(small)
            small = bytearray()
        sock.sendall(view)
    if small:
        sock.sendall(small)


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
        self._fill(COUNT.size)
        (count,) = COUNT.unpack_from(self.buf, self.start)
        self.start += COUNT.size
        max_parts = MAX_PARTS if limit is None else max(1, limit // LENGTH.size)
        if count > max_parts:
            raise FrameError(f"frame announces {count} parts (limit {max_parts})")
        self._fill(LENGTH.size * count)
        lengths = [LENGTH.unpack_from(self.buf, self.start + i * LENGTH.size)[0] for i in range(count)]
        self.start += LENGTH.size * count
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
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        # Small records (a task, a pong) go out at once; a host that vanishes (power, a
        # cable) is noticed by the kernel's keepalive in ~25 s, not never.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in KEEPALIVE.items():
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def _record(msg: Any) -> bytes:
    """A frame's first part: the typed record, pickled (its values travel as raw parts)."""
    return pickle.dumps(protocol.pack(msg), protocol=5)


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

    @property
    def local_host(self) -> str | None:
        """The address of this end (an interface's IP), for a network link."""
        if self.sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        return self.sock.getsockname()[0]

    def send(self, msg: Any, parts: Sequence[Any] = ()) -> None:
        head = _record(msg)
        with self._send_lock:
            try:
                send_frame(self.sock, [head, *parts])
            except OSError as exc:
                if isinstance(exc, WireError):
                    raise
                raise ConnectionClosed(str(exc)) from exc

    @property
    def writes_without_waiting(self) -> bool:
        """Whether ``try_send`` may be used (not over TLS, whose writes cannot be cut short)."""
        return not isinstance(self.sock, ssl.SSLSocket)

    def try_send(self, msg: Any, parts: Sequence[Any] = ()) -> memoryview | None:
        """Write a frame only as far as the socket takes it at once: None once all of it is
        written, else what is left, which must go out by ``send_rest`` before any other
        frame. The frame is copied whole first, so keep it small."""
        frame = joined_frame([_record(msg), *parts], limit=None)
        with self._send_lock:
            try:
                sent = self.sock.send(frame, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise ConnectionClosed(str(exc)) from exc
        return None if sent == len(frame) else memoryview(frame)[sent:]

    def send_rest(self, rest: memoryview) -> None:
        """Finish a frame ``try_send`` began."""
        with self._send_lock:
            try:
                self.sock.sendall(rest)
            except OSError as exc:
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
        self.bytes_received += sum(map(len, parts))
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


def _authenticated(sock: socket.socket, key: bytes, server: bool, timeout: float,
                   tls: ssl.SSLContext | None = None) -> Connection:
    """TLS first (if any), then the HMAC challenge inside it: a peer without a certificate
    of this session is refused by TLS, one without the key by the challenge, both before
    anything of theirs is unpickled."""
    try:
        tune(sock)
        if tls is not None:
            sock.settimeout(timeout)
            try:
                sock = tls.wrap_socket(sock, server_side=server, do_handshake_on_connect=True)
            except (ssl.SSLError, OSError) as exc:
                raise AuthenticationError(f"TLS handshake failed: {exc}") from exc
        reader = FrameReader(sock)
        authenticate(sock, reader, key, server=server, timeout=timeout)
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return Connection(sock, reader)


def _check_tls(scheme: str, tls: ssl.SSLContext | None, address: str) -> None:
    if scheme == "tls" and tls is None:
        raise ValueError(f"{address}: a tls:// address needs the session's TLS credentials")
    if scheme != "tls" and tls is not None:
        raise ValueError(f"{address}: TLS credentials given for a link that is not tls://")


class Listener:
    """A bound, listening socket (Unix, TCP or TLS); bound before its address is handed out.

    ``address`` is the address as bound (for TCP, with the real port); a listener bound to
    all interfaces has ``0.0.0.0`` there, and whoever hands it out says which host to use.
    """

    def __init__(self, address: str, key: bytes, backlog: int = 64, tls: ssl.SSLContext | None = None):
        scheme, target = parse_address(address)
        _check_tls(scheme, tls, address)
        self.scheme = scheme
        self._key = key
        self._tls = tls
        self._path: str | None = None
        if scheme == "unix":
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            self._sock = socket.socket(family(target[0]), socket.SOCK_STREAM)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind(target)
            self._sock.listen(backlog)
        except BaseException:
            self._sock.close()
            raise
        if scheme == "unix":
            self.address = self._path = target
        else:
            host, port = self._sock.getsockname()[:2]
            self.address = format_address(scheme, host, port)

    @property
    def port(self) -> int | None:
        return None if self._path is not None else self._sock.getsockname()[1]

    def accept(self, timeout: float | None = None, handshake_timeout: float = HANDSHAKE_SECONDS) -> Connection:
        """The next authenticated connection. ``TimeoutError`` if none comes within
        ``timeout``; ``AuthenticationError`` if one came and failed the challenge."""
        return self.handshake(self.accept_socket(timeout), handshake_timeout)

    def accept_socket(self, timeout: float | None = None) -> socket.socket:
        """The next connection, not yet authenticated: pass it to ``handshake`` (say, on a
        thread of its own, so a slow or silent peer holds up no one)."""
        self._sock.settimeout(timeout)
        sock, _ = self._sock.accept()
        sock.settimeout(None)
        return sock

    def handshake(self, sock: socket.socket, timeout: float = HANDSHAKE_SECONDS) -> Connection:
        """TLS (if any) and the challenge on an accepted socket; closes it on failure."""
        try:
            return _authenticated(sock, self._key, True, timeout, self._tls)
        except AuthenticationError as exc:
            log.debug("refused a connection on %s: %s", self.address, exc)
            raise

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        if self._path is not None:
            try:
                os.unlink(self._path)
            except OSError:
                pass


def connect(address: str, key: bytes, timeout: float = HANDSHAKE_SECONDS,
            tls: ssl.SSLContext | None = None) -> Connection:
    """An authenticated connection to the ``Listener`` at ``address``."""
    scheme, target = parse_address(address)
    _check_tls(scheme, tls, address)
    if scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(target)
        except BaseException:
            sock.close()
            raise
    else:
        sock = socket.create_connection(target, timeout=timeout)
    conn = _authenticated(sock, key, False, timeout, tls)
    log.debug("connected to %s", address)
    return conn
