"""The leak checks themselves: each one must be able to fail, and clean up what it found.

These call the checks directly, with a short deadline, and clean up after themselves,
so the autouse check around each of them still passes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import threading
import time

import psutil
import pytest

import leaks

SHORT = 0.5


def soon() -> float:
    return time.monotonic() + SHORT


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _park(stop: threading.Event) -> None:
    stop.wait(30)


def test_a_thread_left_running_is_reported_with_its_stack():
    after = leaks.threads()
    stop = threading.Event()
    thread = threading.Thread(target=_park, args=(stop,), name="left-running", daemon=True)
    thread.start()
    try:
        (problem,) = after(soon())
    finally:
        stop.set()
        thread.join()
    assert problem.startswith("thread 'left-running'")
    assert "in _park\n    stop.wait(30)" in problem
    assert "_bootstrap" not in problem, "threading's own frames are trimmed"


def test_a_thread_that_ends_within_the_deadline_is_no_leak():
    after = leaks.threads()
    threading.Thread(target=time.sleep, args=(0.1,), name="short-lived").start()
    assert after(time.monotonic() + 5) == []


def test_benign_threads_are_allowed_and_each_has_a_reason():
    assert all(reason.strip() for reason in leaks.BENIGN_THREADS.values())
    after = leaks.threads()
    stop = threading.Event()
    thread = threading.Thread(target=_park, args=(stop,), name="IPythonHistorySavingThread")
    thread.start()
    try:
        assert after(soon()) == []
    finally:
        stop.set()
        thread.join()


def test_a_process_started_with_the_marker_is_reported_then_killed():
    after = leaks.processes()
    proc = subprocess.Popen(["sleep", "60"], env={**os.environ, **leaks.marker_env()})
    try:
        (problem,) = after(soon())
        assert f"process {proc.pid} [sleep 60]" in problem
        assert "started by this test run" in problem and "killed it" in problem
        assert wait_gone(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_an_orphan_re_parented_to_init_is_still_found_by_its_marker():
    after = leaks.processes()
    shell = subprocess.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"],
                           capture_output=True, text=True, check=True)
    orphan = int(shell.stdout)
    try:
        assert psutil.Process(orphan).ppid() != os.getpid()
        (problem,) = after(soon())
        assert f"process {orphan} [sleep 60] (orphaned" in problem
        assert wait_gone(orphan)
    finally:
        if not gone(orphan):
            leaks.kill_tree(psutil.Process(orphan))


def test_a_leaked_process_group_is_killed_whole():
    after = leaks.processes()
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60; wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while len(psutil.Process(leader.pid).children()) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        group = [leader.pid, *(p.pid for p in psutil.Process(leader.pid).children())]
        problems = after(soon())
        assert len(problems) == 3, problems
        assert all(wait_gone(pid) for pid in group)
    finally:
        leader.kill()
        leader.wait()


def test_another_runs_processes_are_not_seen_but_our_children_are():
    """A process without this run's marker (as another run's would be) is no leak of
    ours, unless it is our own descendant: then ``children`` reports it."""
    other_env = {k: v for k, v in os.environ.items() if k != leaks.RUN_VAR}
    processes, children = leaks.processes(), leaks.children()
    proc = subprocess.Popen(["sleep", "60"], env=other_env)
    try:
        assert processes(soon()) == []
        (problem,) = children(soon())
        assert f"process {proc.pid} [sleep 60]" in problem and "descendant of the test process" in problem
        assert wait_gone(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_a_runtime_directory_left_in_the_runs_tmpdir_is_reported_then_removed():
    run = leaks.current_run()
    assert tempfile.gettempdir() == str(run.tmpdir) == os.environ["TMPDIR"]
    after = leaks.runtime_dirs()
    left = run.tmpdir / "ipyworkers-x"
    left.mkdir()
    (left / "control.sock").touch()
    try:
        (problem,) = after(soon())
        assert f"runtime directory {left} left behind (holding: control.sock)" in problem
        assert not left.exists()
    finally:
        if left.exists():
            (left / "control.sock").unlink()
            left.rmdir()


def test_a_socket_left_open_is_reported():
    after = leaks.sockets()
    a, b = socket.socketpair()
    try:
        problems = after(soon())
    finally:
        a.close()
        b.close()
    assert len(problems) == 2 and all("AF_UNIX SOCK_STREAM" in p for p in problems), problems
    assert after(soon()) == []


def test_a_cluster_left_started_is_reported_and_its_workers_carry_the_runs_marker():
    from ipyworkers import Cluster

    run = leaks.current_run()
    after = leaks.clusters()
    cluster = Cluster(1).start()
    try:
        (pid,) = [row["pid"] for row in cluster.status()]
        assert run.marker in psutil.Process(pid).environ()[leaks.RUN_VAR].split(os.pathsep)
        assert len(list(run.tmpdir.glob("ipyworkers-*"))) == 1, "runtime dirs go to the run's TMPDIR"
        (problem,) = after(soon())
        assert problem == f"a Cluster was started and never stopped (1 workers, pids [{pid}]); stopped it"
        assert not cluster.running
    finally:
        cluster.stop()


def test_snapshot_composes_checks_and_select_turns_them_off():
    assert leaks.threads not in leaks.select(threads=False)
    assert leaks.fds not in leaks.select() and leaks.fds in leaks.select(fds=True)
    with pytest.raises(TypeError, match="no leak check named thread"):
        leaks.select(thread=False)
    after = leaks.snapshot([leaks.threads, leaks.runtime_dirs])
    stop = threading.Event()
    thread = threading.Thread(target=_park, args=(stop,), name="composed")
    thread.start()
    (leaks.current_run().tmpdir / "ipyworkers-y").mkdir()
    try:
        problems = after(settle=SHORT)
    finally:
        stop.set()
        thread.join()
    assert [p.split(" ", 1)[0] for p in problems] == ["thread", "runtime"]
