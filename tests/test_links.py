"""The kernel's end of a control link: posters never wait on the socket, frames stay whole."""

from __future__ import annotations

import pickle
import socket
import threading

from ipyworkers import protocol as p
from ipyworkers import wire
from ipyworkers.kernel.links import WorkerLink


def _run(task: int, code: str) -> p.Run:
    return p.Run(task, code, None, [], {}, [], False, [], [], None)


def test_a_poster_never_waits_on_a_full_socket() -> None:
    """A stopped worker reads nothing: the socket fills, yet posting and pumping return,
    and once the worker reads again every frame arrives whole and in order."""
    kernel_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    link = WorkerLink(1, wire.Connection(kernel_end, wire.FrameReader(kernel_end)),
                      on_message=lambda *args: None, on_closed=lambda *args: None)
    link.start()
    count, code = 400, "x = 1  # " + "p" * 4000  # some 1.6 MB: many times a socket's buffer
    posted = threading.Event()

    def post_all() -> None:
        for task in range(count):
            link.post(_run(task, code), wake=False)
            link.pump()
        posted.set()

    poster = threading.Thread(target=post_all, daemon=True)
    try:
        poster.start()
        assert posted.wait(30), "posting blocked on a socket nobody reads"
        reader = wire.FrameReader(worker_end)
        tasks = [p.unpack(pickle.loads(reader.frame()[0])) for _ in range(count)]
        assert [t.task for t in tasks] == list(range(count))
        assert all(t.code == code for t in tasks)
    finally:
        link.close()
        worker_end.close()
        poster.join(5)
