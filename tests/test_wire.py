"""Framing and the handshake: bad peers are refused before anything is unpickled."""

from __future__ import annotations

import pickle
import socket
import struct
import threading

import numpy as np
import pytest

from ipyworkers import protocol, serialize, wire

KEY = bytes(range(32))


@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield a, b
    a.close()
    b.close()


def _server(sock, key, timeout):
    wire.authenticate(sock, wire.FrameReader(sock), key, server=True, timeout=timeout)


def _client(sock, key, timeout):
    wire.authenticate(sock, wire.FrameReader(sock), key, server=False, timeout=timeout)


def _in_thread(fn, *args):
    box = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


def test_frame_round_trip_keeps_parts_apart(pair):
    a, b = pair
    parts = [b"head", b"", bytearray(b"x" * 100_000), memoryview(b"tail")]
    thread, _ = _in_thread(wire.send_frame, a, parts)
    received = wire.FrameReader(b).frame()
    thread.join()
    assert [bytes(p) for p in received] == [b"head", b"", b"x" * 100_000, b"tail"]


def test_numpy_array_goes_out_of_band_and_arrives_intact(pair):
    a, b = pair
    array = np.arange(1_000_000, dtype=np.float64)
    parts = serialize.dumps_value("array", array)
    assert len(parts) == 2 and len(parts[0]) < 1000, "the array buffer must not be inside the pickle"
    thread, _ = _in_thread(wire.send_frame, a, parts)
    received = wire.FrameReader(b).frame()
    thread.join()
    out = serialize.loads_value("array", received, "here")
    assert np.array_equal(out, array)
    assert out.flags.writeable


def test_oversized_length_prefix_is_refused_without_allocating(pair):
    a, b = pair
    a.sendall(struct.pack("!I", 1) + struct.pack("!Q", 2**40))
    with pytest.raises(wire.FrameError, match="limit"):
        wire.FrameReader(b).frame(limit=wire.HANDSHAKE_LIMIT)


def test_too_many_parts_is_refused(pair):
    a, b = pair
    a.sendall(struct.pack("!I", 2**31))
    with pytest.raises(wire.FrameError, match="parts"):
        wire.FrameReader(b).frame(limit=wire.HANDSHAKE_LIMIT)


def test_handshake_succeeds_with_the_same_key(pair):
    a, b = pair
    thread, box = _in_thread(_server, a, KEY, 5)
    _client(b, KEY, 5)
    thread.join()
    assert "error" not in box


def test_wrong_key_is_rejected_on_both_sides(pair):
    a, b = pair
    thread, box = _in_thread(_server, a, KEY, 5)
    with pytest.raises(wire.AuthenticationError):
        _client(b, b"wrong key".ljust(32, b"!"), 5)
    thread.join()
    assert isinstance(box["error"], wire.AuthenticationError)


def test_server_refuses_a_client_that_sends_nothing(pair):
    a, _ = pair
    with pytest.raises(wire.AuthenticationError, match="timed out"):
        _server(a, KEY, 0.3)


def test_server_refuses_garbage(pair):
    a, b = pair
    b.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 10)
    with pytest.raises(wire.AuthenticationError):
        _server(a, KEY, 2)


def test_server_refuses_a_pickle_before_authentication(pair, monkeypatch):
    a, b = pair
    unpickled = []
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: unpickled.append(a))
    thread, box = _in_thread(_server, a, KEY, 2)
    wire.FrameReader(b).frame(wire.HANDSHAKE_LIMIT)
    wire.send_frame(b, [pickle.dumps({"evil": True})])
    thread.join()
    assert isinstance(box["error"], wire.AuthenticationError)
    assert unpickled == []


def test_client_refuses_a_server_without_the_key(pair):
    a, b = pair

    def fake_server():
        wire.send_frame(a, [wire._CHALLENGE, b"n" * 32])
        wire.FrameReader(a).frame(wire.HANDSHAKE_LIMIT)
        wire.send_frame(a, [wire._WELCOME])
        wire.send_frame(a, [b"not a valid digest"])
        return wire.FrameReader(a).frame(wire.HANDSHAKE_LIMIT)

    thread, box = _in_thread(fake_server)
    with pytest.raises(wire.AuthenticationError):
        _client(b, KEY, 2)
    thread.join()


def test_unpicklable_value_names_the_variable_and_its_type():
    with pytest.raises(serialize.SerializationError, match=r"'lock' of type _thread\.lock"):
        serialize.dumps_value("lock", threading.Lock())


def test_value_that_cannot_be_unpickled_names_variable_and_place():
    parts = [pickle.dumps(1)[:-3]]
    with pytest.raises(serialize.SerializationError, match="'x' cannot be unpickled on worker 2"):
        serialize.loads_value("x", parts, "worker 2")


def test_functions_and_classes_of_main_travel_by_value():
    import __main__

    def square(v):
        return v * v

    square.__module__ = "__main__"
    square.__qualname__ = "square"
    __main__.square = square
    try:
        parts = serialize.dumps_value("f", square)
        del __main__.square
        restored = serialize.loads_value("f", parts, "here")
        assert restored(7) == 49
    finally:
        if hasattr(__main__, "square"):
            del __main__.square


def test_lambda_falls_back_to_cloudpickle():
    offset = 3
    parts = serialize.dumps_value("f", lambda v: v + offset)
    assert serialize.loads_value("f", parts, "here")(1) == 4


# -- links as traffic uses them: Listener.accept() and connect() ------------------------------------


@pytest.fixture
def listener(tmp_path):
    server = wire.Listener(str(tmp_path / "l.sock"), KEY)
    yield server
    server.close()


def test_listener_and_connect_carry_typed_records_with_parts(listener):
    thread, box = _in_thread(listener.accept, 5)
    client = wire.connect(listener.address, KEY)
    thread.join()
    server = box["value"]
    try:
        client.send(protocol.Get(7, "x", 3), [b"payload"])
        msg, parts = server.recv()
        assert msg == protocol.Get(7, "x", 3) and type(msg) is protocol.Get
        assert [bytes(p) for p in parts] == [b"payload"]
    finally:
        client.close()
        server.close()


def test_connect_with_another_key_is_refused_on_both_sides(listener):
    thread, box = _in_thread(listener.accept, 5)
    with pytest.raises(wire.AuthenticationError):
        wire.connect(listener.address, b"another session".ljust(32, b"!"))
    thread.join()
    assert isinstance(box["error"], wire.AuthenticationError)


def test_a_record_of_unknown_kind_is_a_frame_error(listener):
    thread, box = _in_thread(listener.accept, 5)
    client = wire.connect(listener.address, KEY)
    thread.join()
    server = box["value"]
    try:
        wire.send_frame(client.sock, [pickle.dumps((9999, "x"))])
        with pytest.raises(wire.FrameError, match="unknown or malformed"):
            server.recv()
    finally:
        client.close()
        server.close()
