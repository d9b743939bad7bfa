"""Every test must leave nothing behind: no worker or child process, no thread, no
open socket, no runtime directory (in the manner of Dask's ``utils_test``)."""

from __future__ import annotations

import glob
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent))

SETTLE_SECONDS = 5.0


def _worker_processes() -> set[int]:
    found = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if "ipyworkers.worker" in cmdline:
            found.add(proc.info["pid"])
    return found


def _children() -> set[int]:
    try:
        return {p.pid for p in psutil.Process().children(recursive=True)}
    except psutil.Error:
        return set()


def _threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive()}


def _sockets() -> int:
    try:
        return sum(1 for c in psutil.Process().net_connections(kind="all"))
    except (psutil.Error, AttributeError):
        return len(psutil.Process().connections(kind="all"))


def _runtime_dirs() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "ipyworkers-*")))


def _settle(check, deadline: float):
    while True:
        left = check()
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.fixture(scope="session", autouse=True)
def library_event_loop():
    """jupyter_client keeps one asyncio loop (and its self-pipe) per thread for good;
    make it before the first leak snapshot, so it is not counted against a test."""
    import asyncio

    from jupyter_client.utils import run_sync

    run_sync(asyncio.sleep)(0)
    yield


@pytest.fixture(autouse=True)
def check_leaks():
    workers_before = _worker_processes()
    children_before = _children()
    threads_before = _threads()
    sockets_before = _sockets()
    dirs_before = _runtime_dirs()
    yield
    deadline = time.monotonic() + SETTLE_SECONDS
    problems = []
    workers = _settle(lambda: _worker_processes() - workers_before, deadline)
    if workers:
        problems.append(f"worker processes left running: {sorted(workers)}")
        for pid in workers:
            _kill(pid)
    children = _settle(lambda: _children() - children_before, deadline)
    if children:
        problems.append(f"child processes left running: {sorted(children)}")
        for pid in children:
            _kill(pid)
    threads = _settle(lambda: {t for t in _threads() - threads_before if not _benign(t)}, deadline)
    if threads:
        problems.append(f"threads left running: {sorted(t.name for t in threads)}")
    sockets = _settle(lambda: max(0, _sockets() - sockets_before), deadline)
    if sockets:
        problems.append(f"{sockets} sockets left open")
    dirs = _settle(lambda: _runtime_dirs() - dirs_before, deadline)
    if dirs:
        problems.append(f"runtime directories left behind: {sorted(dirs)}")
    if problems:
        pytest.fail("test leaked: " + "; ".join(problems), pytrace=False)


def _benign(thread: threading.Thread) -> bool:
    """Threads of libraries the tests use, which live for the whole session by design."""
    return thread.name.startswith(("asyncio_", "ThreadPoolExecutor", "IPythonHistorySavingThread"))


def _kill(pid: int) -> None:
    try:
        psutil.Process(pid).kill()
    except psutil.Error:
        pass


@pytest.fixture
def cluster():
    from ipyworkers import Cluster
    from ipyworkers.kernel.sinks import RecordingSink

    c = Cluster(2, default_sink=RecordingSink())
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def sink():
    from ipyworkers.kernel.sinks import RecordingSink

    return RecordingSink()
