"""Leak checks: a test must leave no thread, process, socket, runtime directory or
``Cluster`` behind (in the manner of Dask's ``distributed.utils_test.clean``).

Each check is a small function: calling it takes a snapshot and returns ``after``;
``after(deadline)`` waits until what is new has ended on its own or the deadline
(a ``time.monotonic()`` value) has passed, and returns a list of human-readable
problems (empty if nothing leaked). A check that finds a leak it can undo undoes it
after reporting it (kills the process, stops the cluster, removes the directory), so
one leak does not cascade into every later test. ``snapshot`` composes checks.

Concurrent runs (two engineers, CI beside a developer) must not see each other's
processes or directories: ``start_run`` gives this run a marker in the environment
(``IPYWORKERS_TEST_RUN``) and a ``TMPDIR`` of its own, which every process it starts
inherits, so processes are found by the marker (orphans re-parented to init
included) and runtime directories only under this run's ``TMPDIR``.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SETTLE_SECONDS = 5.0
"""How long, at most, things started by a test get to end on their own."""
CLEANUP_GRACE = 1.0
"""Extra time the checks after one that cleaned up a leak get, for the knock-on effects to end."""
POLL_SECONDS = 0.05
MAX_FRAMES = 12

RUN_VAR = "IPYWORKERS_TEST_RUN"
RUN_DIR_PREFIX = "testrun-ipyworkers-"  # never "ipyworkers-*": that is what runtime directories look like

BENIGN_THREADS: dict[str, str] = {
    "asyncio_": "workers of an asyncio loop's default executor (run_in_executor(None, ...), getaddrinfo), "
                "which live until the loop is closed; jupyter_client keeps a loop per thread for good "
                "(see the library_event_loop fixture)",
    "ThreadPoolExecutor": "idle workers of a concurrent.futures executor that a library the tests drive "
                          "keeps for the life of the process (a leaked executor of ours looks the same)",
    "IPythonHistorySavingThread": "IPython's InteractiveShell is a singleton: once made, its history "
                                  "thread lives as long as the process",
}
"""Threads that live for the whole session by design: a name prefix, and why it is allowed."""

After = Callable[[float], list[str]]
Check = Callable[[], After]


# -- this run's marker and temp dir ------------------------------------------------------------------


@dataclass
class Run:
    marker: str
    tmpdir: Path
    saved_env: dict[str, str | None] = field(default_factory=dict)
    saved_tempdir: str | None = None


_run: Run | None = None


def start_run() -> Run:
    """Mark this process's environment, so everything it starts from now on inherits the
    marker and a fresh ``TMPDIR`` (removed by ``end_run``)."""
    global _run
    if _run is not None:
        return _run
    marker = uuid.uuid4().hex
    root = tempfile.gettempdir()
    tmpdir = Path(tempfile.mkdtemp(prefix=RUN_DIR_PREFIX, dir=root)).resolve()
    names = (RUN_VAR, "TMPDIR", "PYTEST_DEBUG_TEMPROOT")
    run = Run(marker, tmpdir, {name: os.environ.get(name) for name in names}, tempfile.tempdir)
    # A run started from inside another run's test keeps the outer marker too, so the
    # outer run still sees what this one starts.
    outer = os.environ.get(RUN_VAR)
    os.environ[RUN_VAR] = f"{outer}{os.pathsep}{marker}" if outer else marker
    # pytest's own tmp_path stays where it was (and is kept after the run, as usual).
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", root)
    os.environ["TMPDIR"] = str(tmpdir)
    tempfile.tempdir = None  # gettempdir() caches its answer
    _run = run
    return run


def end_run() -> None:
    """Undo ``start_run`` and remove the run's ``TMPDIR``."""
    global _run
    run, _run = _run, None
    if run is None:
        return
    for name, value in run.saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    tempfile.tempdir = run.saved_tempdir
    shutil.rmtree(run.tmpdir, ignore_errors=True)


def current_run() -> Run:
    if _run is None:
        raise RuntimeError("leaks.start_run() was not called: the checks cannot tell this run's processes")
    return _run


def marker_env() -> dict[str, str]:
    """The environment a process started by this run inherits (for tests that build one)."""
    return {RUN_VAR: os.environ[RUN_VAR], "TMPDIR": os.environ["TMPDIR"]}


# -- composing ---------------------------------------------------------------------------------------


def snapshot(checks: Iterable[Check]) -> Callable[..., list[str]]:
    """Take every check's snapshot now; the result, called later, returns every problem."""
    afters = [check() for check in checks]

    def after(settle: float = SETTLE_SECONDS) -> list[str]:
        deadline = time.monotonic() + settle
        problems: list[str] = []
        for check_after in afters:
            found = check_after(deadline)
            if found:
                problems += found
                deadline = max(deadline, time.monotonic() + CLEANUP_GRACE)
        return problems

    return after


def _settle(find: Callable[[], list], deadline: float) -> list:
    """What ``find`` still finds once it finds nothing, or at the deadline."""
    while True:
        left = find()
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL_SECONDS)


def _diff(find: Callable[[], dict], report: Callable[[list], list[str]], before: dict | None = None) -> After:
    """A check: what ``find`` finds later under a key it did not find now, once the
    deadline allows, goes to ``report``. The snapshot holds on to what it found, so that
    no key (an ``id``, a pid) is reused while the test runs."""
    before = find() if before is None else before

    def after(deadline: float) -> list[str]:
        left = _settle(lambda: [v for k, v in sorted(find().items()) if k not in before], deadline)
        return report(left) if left else []

    return after


# -- clusters ----------------------------------------------------------------------------------------


def clusters() -> After:
    """``Cluster`` instances of this process started during the test and not stopped; stopped after."""
    return _diff(_live_clusters, _report_and_stop)


def _live_clusters() -> dict[int, object]:
    from ipyworkers.kernel.cluster import live_clusters

    return {id(c): c for c in live_clusters()}


def _report_and_stop(left: list) -> list[str]:
    problems = []
    for cluster in left:
        problems.append(f"a Cluster was started and never stopped ({_describe_cluster(cluster)}); stopped it")
        try:
            cluster.stop()
        except Exception as exc:  # noqa: BLE001 - the report matters more than the stop
            problems.append(f"  and stopping it failed: {exc!r}")
    return problems


def _describe_cluster(cluster) -> str:
    try:
        pids = [row["pid"] for row in cluster.status()]
    except Exception:  # noqa: BLE001 - describing must not fail
        pids = []
    return f"{cluster.n_workers} workers, pids {pids}"


# -- processes ---------------------------------------------------------------------------------------


def processes() -> After:
    """Processes started by this run (worker processes, kernels, their children, orphans
    re-parented to init), found by the run's marker in their environment; killed after."""
    return _diff(_marked_processes, lambda left: _report_and_kill(left, "started by this test run"))


def children() -> After:
    """Descendants of this process, with or without the marker (say, started with a clean
    environment); killed after."""
    return _diff(_children, lambda left: _report_and_kill(left, "a descendant of the test process"))


def leftovers(settle: float = SETTLE_SECONDS) -> list[str]:
    """Every process this run started and every runtime directory in its ``TMPDIR`` that is
    still there: for the end of the session, when nothing may be."""
    deadline = time.monotonic() + settle
    problems = _diff(_marked_processes, lambda left: _report_and_kill(left, "started by this test run"),
                     before={})(deadline)
    return problems + _diff(_runtime_dirs, _report_and_remove, before={})(deadline)


def _marked_processes() -> dict[tuple[int, float], psutil.Process]:
    marker = current_run().marker
    me = psutil.Process()
    oldest = me.create_time()  # same clock as every other create_time
    found = {}
    for proc in psutil.process_iter(["create_time"]):
        created = proc.info["create_time"]
        if proc.pid == me.pid or created is None or created < oldest:
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            markers = proc.environ().get(RUN_VAR, "")
        except psutil.Error:
            continue
        if marker in markers.split(os.pathsep):
            found[(proc.pid, created)] = proc
    return found


def _children() -> dict[tuple[int, float], psutil.Process]:
    found = {}
    try:
        kids = psutil.Process().children(recursive=True)
    except psutil.Error:
        return found
    for proc in kids:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                found[(proc.pid, proc.create_time())] = proc
        except psutil.Error:
            pass
    return found


def _report_and_kill(procs: list[psutil.Process], what: str) -> list[str]:
    problems = [f"process {_describe_process(p)}, {what}, is still running; killed it" for p in procs]
    for proc in procs:
        kill_tree(proc)
    return problems


def _describe_process(proc: psutil.Process) -> str:
    try:
        with proc.oneshot():
            cmdline = " ".join(proc.cmdline())
            ppid = proc.ppid()
            age = time.time() - proc.create_time()
    except psutil.Error:
        return f"{proc.pid} (gone while described)"
    if len(cmdline) > 200:
        cmdline = cmdline[:200] + "..."
    if ppid == os.getpid():
        parent = "a child of the test process"
    elif ppid <= 1 or not _is_ours(ppid):
        parent = f"orphaned, parent now {ppid}"
    else:
        parent = f"parent {ppid}"
    return f"{proc.pid} [{cmdline}] ({parent}, started {age:.1f} s ago)"


def _is_ours(pid: int) -> bool:
    try:
        markers = psutil.Process(pid).environ().get(RUN_VAR, "")
    except psutil.Error:
        return pid == os.getpid()
    return _run is not None and _run.marker in markers.split(os.pathsep)


def kill_tree(proc: psutil.Process) -> None:
    """SIGKILL a process, its descendants and its process group (never the test
    process's own group, nor a group led by a process this run did not start)."""
    try:
        victims = [proc, *proc.children(recursive=True)]
        pgid = os.getpgid(proc.pid)
    except (psutil.Error, ProcessLookupError):
        return
    if pgid != os.getpgrp() and (pgid == proc.pid or _is_ours(pgid)):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for victim in victims:
        try:
            victim.kill()
        except psutil.Error:
            pass
    deadline = time.monotonic() + 2
    for victim in victims:
        while not _ended(victim) and time.monotonic() < deadline:
            time.sleep(0.01)


def _ended(proc: psutil.Process) -> bool:
    """Gone, or a zombie (reaped here if it is our child; init reaps the rest, or not)."""
    try:
        if proc.status() != psutil.STATUS_ZOMBIE:
            return False
        if proc.ppid() == os.getpid():
            proc.wait(0)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired, ChildProcessError):
        pass
    return True


# -- threads -----------------------------------------------------------------------------------------


def threads() -> After:
    """Threads of this process started during the test, reported with their stacks; those
    in ``BENIGN_THREADS`` are allowed."""
    return _diff(_threads, _report_threads)


def _threads() -> dict[tuple[int, str], str]:
    return {key: key for key in _thread_keys() if not benign(key[1])}


def _report_threads(left: list[tuple[int, str]]) -> list[str]:
    frames = sys._current_frames()
    return [describe_thread(ident, name, frames.get(ident)) for ident, name in left]


def _thread_keys() -> set[tuple[int, str]]:
    """(ident, name) of every live thread, those started outside ``threading`` included."""
    keys = {(t.ident, t.name) for t in threading.enumerate() if t.is_alive() and t.ident is not None}
    known = {ident for ident, _ in keys}
    keys |= {(ident, "<started outside threading>") for ident in sys._current_frames() if ident not in known}
    return keys


def benign(name: str) -> bool:
    return name.startswith(tuple(BENIGN_THREADS))


def describe_thread(ident: int, name: str, frame) -> str:
    head = f"thread {name!r} (ident {ident}) is still running"
    if frame is None:
        return head + " (it ended while being reported)"
    return head + ", at:\n" + format_stack(frame)


def format_stack(frame) -> str:
    """The stack of a thread, without ``threading``'s own bootstrap frames and no deeper than
    ``MAX_FRAMES`` (the innermost ones)."""
    summary = traceback.extract_stack(frame)
    start = 0
    while start < len(summary) - 1 and summary[start].filename == threading.__file__:
        start += 1
    frames = summary[start:]
    hidden = max(0, len(frames) - MAX_FRAMES)
    lines = traceback.format_list(frames[hidden:])
    if hidden:
        lines.insert(0, f"  ... {hidden} outer frames\n")
    return "".join(lines).rstrip("\n")


# -- sockets and other file descriptors --------------------------------------------------------------


def sockets() -> After:
    """Sockets of this process opened during the test and still open."""
    return _diff(lambda: _fds(sockets=True), _report_sockets)


def fds() -> After:
    """Files, pipes and the like (sockets are ``sockets``' business) opened during the test."""
    return _diff(lambda: _fds(sockets=False),
                 lambda left: [f"file descriptor {fd} left open: {target}" for fd, target in left])


def _report_sockets(left: list[tuple[int, str]]) -> list[str]:
    return [f"socket fd {fd} left open: {_describe_socket(fd)}" for fd, _ in left]


def _fds(sockets: bool) -> dict[tuple[int, str], tuple[int, str]]:
    """Open descriptors, keyed by number and target (a number reused for another file is new)."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # closed meanwhile, or the listing's own descriptor
        if target.startswith("socket:") == sockets:
            found[(int(name), target)] = (int(name), target)
    return found


def _describe_socket(fd: int) -> str:
    """Family, type and addresses of the socket at ``fd``, read through a duplicate of it."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError as exc:
        return f"(cannot tell: {exc})"
    with sock:
        parts = [sock.family.name, sock.type.name]
        for what, get in (("local", sock.getsockname), ("remote", sock.getpeername)):
            try:
                address = get()
            except OSError:
                continue
            if address:
                parts.append(f"{what} {address!r}")
    return " ".join(parts)


# -- runtime directories ------------------------------------------------------------------------------


def runtime_dirs() -> After:
    """``ipyworkers-*`` directories made in this run's ``TMPDIR`` and left behind; removed after."""
    return _diff(_runtime_dirs, _report_and_remove)


def _report_and_remove(left: list[str]) -> list[str]:
    problems = []
    for path in left:
        try:
            entries = sorted(os.listdir(path))
        except OSError:
            entries = []
        shown = ", ".join(entries[:8]) + (", ..." if len(entries) > 8 else "")
        problems.append(f"runtime directory {path} left behind (holding: {shown or 'nothing'}); removed it")
        shutil.rmtree(path, ignore_errors=True)
    return problems


def _runtime_dirs() -> dict[str, str]:
    return {path: path for path in glob.glob(os.path.join(current_run().tmpdir, "ipyworkers-*"))}


# -- what a test gets --------------------------------------------------------------------------------

CHECKS: dict[str, Check] = {
    # Clusters first: a leaked cluster is the cause of the threads, processes, sockets
    # and directory that come with it, and stopping it ends those.
    "clusters": clusters,
    "processes": processes,
    "children": children,
    "threads": threads,
    "sockets": sockets,
    "runtime_dirs": runtime_dirs,
    "fds": fds,
}
"""Every check, by the name a ``leaks`` mark turns it on or off with."""

OFF_BY_DEFAULT = frozenset({"fds"})
"""Libraries may open a file lazily and keep it for good, so ``fds`` is for a test to ask for."""


def select(**enabled: bool) -> list[Check]:
    """The checks a test gets, with some turned off or on: ``select(threads=False, fds=True)``."""
    unknown = set(enabled) - set(CHECKS)
    if unknown:
        raise TypeError(f"no leak check named {', '.join(sorted(unknown))}; the checks are {', '.join(CHECKS)}")
    return [check for name, check in CHECKS.items() if enabled.get(name, name not in OFF_BY_DEFAULT)]


def format_problems(problems: list[str]) -> str:
    return "\n".join("- " + p.replace("\n", "\n  ") for p in problems)
