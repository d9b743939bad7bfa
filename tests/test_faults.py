"""Nothing hangs, nothing is lost: the faults found by trying ipyworkers as a user and an
attacker would, each as a regression test through the Python API with real workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import psutil
import pytest

from ipyworkers import Cluster, ClusterError, RemoteError, TaskCancelled, TaskFailed
from ipyworkers.kernel.launchers import LocalLauncher
from ipyworkers.kernel.sinks import RecordingSink
from polling import wait_until


def _pid(cluster: Cluster, wid: int) -> int:
    return next(r["pid"] for r in cluster.status() if r["id"] == wid)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _cpu_seconds_in(pid: int, seconds: float) -> float:
    proc = psutil.Process(pid)
    before = sum(proc.cpu_times()[:2])
    time.sleep(seconds)
    return sum(proc.cpu_times()[:2]) - before


# -- 2: a push cut short leaves the link usable ------------------------------------------------------


def test_a_push_cancelled_on_its_way_leaves_the_link_usable(cluster):
    big = np.ones(50_000_000)
    group = cluster.push({"big": big}, to=1, block=False)
    for task in group:
        cluster.cancel(task)
    group.wait(60)
    (task,) = group.tasks
    assert task.state in ("done", "cancelled")
    assert cluster.run("'ok'", on=1, block=True).result == "ok"
    if task.state == "done":
        assert cluster.run("big.size", on=1, block=True).result == 50_000_000


def test_a_push_goes_out_on_the_sender_thread_not_the_callers():
    big = np.ones(100_000_000)
    with Cluster(1, default_sink=RecordingSink()) as cluster:
        started = time.monotonic()
        group = cluster.push({"big": big}, to=1, block=False)
        queued_in = time.monotonic() - started
        group.wait(60)
        assert group.error is None
        assert queued_in < 2.0, "push(block=False) must return before 800 MB are written"


# -- 3: a pull from a worker that dies ends at once --------------------------------------------------


def test_a_pull_from_a_worker_that_dies_raises_within_a_second(cluster):
    cluster.run("import os, time\ntime.sleep(1.0)\nos._exit(1)\nx = 1", on=1)
    box = {}

    def pull():
        try:
            cluster.pull("x")
        except Exception as exc:
            box["error"], box["at"] = exc, time.monotonic()

    thread = threading.Thread(target=pull)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "pull never returned"
    assert isinstance(box["error"], TaskFailed) and "worker 1 died (exit code 1)" in str(box["error"])
    died = next(e.time for e in cluster.events.events("worker-died"))
    assert box["at"] - died < 1.0


# -- 4: a worker whose control link breaks does not take the runtime directory down ------------------


def test_a_worker_that_closes_its_own_sockets_just_dies_and_restart_works(cluster):
    runtime = cluster._supervisor.runtime_dir
    task = cluster.run("import os\nos.closerange(3, 1000)\nimport time\ntime.sleep(5)", on=1)
    task.wait(30)
    assert isinstance(task.error, TaskFailed) and "worker 1 died" in str(task.error)
    assert runtime.is_dir(), "only the coordinator removes the runtime directory"
    cluster.restart(1)
    assert cluster.run("worker_id", on=1, block=True).result == 1
    assert cluster.run("worker_id", on=2, block=True).result == 2


def test_after_a_restart_values_come_from_who_still_holds_them_or_are_reported_lost(cluster):
    cluster.run("x = 41", on=1, block=True)
    cluster.run("y = x", on=2, block=True)
    cluster.run("only_on_one = 1", on=1, block=True)
    cluster.restart(1)
    assert cluster.run("x + 1", on=1).wait(30).result == 42
    lost = cluster.run("only_on_one", on=2)
    lost.wait(30)
    assert isinstance(lost.error, TaskCancelled) and "worker 1 was restarted" in str(lost.error)


# -- 7: names a worker provides never leak ---------------------------------------------------------


def test_worker_provided_names_stay_per_worker(cluster):
    cluster.run("worker_id = 7\nsend = 1", on=1, block=True)
    assert cluster.run("worker_id", on=2, block=True).result == 2
    assert cluster.run("type(send).__name__", on=2, block=True).result == "method"
    assert cluster.run("worker_id", on=1, block=True).result == 1, "a rebinding lasts one task"
    producer = cluster.run("for i in range(100):\n    send(i, to=2)\nclose(to=2)", on=1)
    consumer = cluster.run("sum(stream(frm=1))", on=2)
    assert consumer.wait(30).result == 4950 and producer.wait(30).error is None


def test_a_kernel_variable_named_like_a_worker_name_is_not_shipped():
    with Cluster(2, namespace={"worker_id": "kernel's", "send": print}, default_sink=RecordingSink()) as cluster:
        assert cluster.run("worker_id", on=2, block=True).result == 2
        assert cluster.run("type(send).__name__", on=1, block=True).result == "method"


# -- 9: workers die with their parent, even deep in C code -----------------------------------------


def test_workers_and_their_children_die_with_a_killed_parent_even_in_c_code(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import time
        from ipyworkers import Cluster
        cluster = Cluster(2).start()
        pids = [r['pid'] for r in cluster.status()]
        child = cluster.run("import subprocess; subprocess.Popen(['sleep', '60']).pid", on=1, block=True).result
        cluster.run("import re; re.match(r'(a+)+$', 'a' * 40 + 'b')", on=1)
        cluster.run("import re; re.match(r'(a+)+$', 'a' * 40 + 'b')", on=2)
        time.sleep(1.0)
        print("PIDS", *pids, child, flush=True)
        time.sleep(60)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        line = next(line for line in parent.stdout if line.startswith("PIDS"))
        pids = [int(p) for p in line.split()[1:]]
        assert all(not _gone(p) for p in pids)
        assert all(_cpu_seconds_in(p, 0.5) > 0.05 for p in pids[:2]), "workers should be busy in C"
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        parent.stdout.close()
    waited = wait_until(lambda: all(_gone(p) for p in pids), timeout=10, what="workers and child gone")
    assert waited < 2.5, f"took {waited:.1f} s"


# -- 10, 11, 12: what a worker waits for, and interrupts that tell the truth --------------------------


def test_a_task_waiting_for_its_inputs_shows_it_and_can_be_interrupted(cluster):
    producer = cluster.run("import time\ntime.sleep(30)\nx = 1", on=1)
    reader = cluster.run("y = x + 1", on=2)
    wait_until(lambda: cluster.status()[1]["state"] == "waiting for x from worker 1", what="waiting state")
    assert cluster.interrupt(2) == {2: "interrupted"}
    reader.wait(10)
    assert isinstance(reader.error, TaskCancelled) and "interrupted while waiting for its inputs" in str(reader.error)
    assert cluster.run("worker_id", on=2, block=True).result == 2
    cluster.interrupt(1)
    producer.wait(10)


def test_a_stopped_worker_is_unresponsive_and_an_interrupt_says_so(cluster):
    task = cluster.run("import time\ntime.sleep(60)", on=1)
    wait_until(lambda: task.state == "running")
    pid = _pid(cluster, 1)
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        report = cluster.interrupt(1)
        assert time.monotonic() - started < 3.0
        assert "unresponsive" in report[1] and "%workers restart 1" in report[1]
        wait_until(lambda: cluster.status()[0]["state"].startswith("unresponsive"), timeout=5, what="unresponsive")
        assert cluster.run("worker_id", on=2, block=True).result == 2
    finally:
        os.kill(pid, signal.SIGCONT)
    cluster.restart(1)
    assert cluster.run("worker_id", on=1, block=True).result == 1


def test_a_task_that_replaced_the_interrupt_handler_does_not_disable_interrupts_for_the_next(cluster):
    cluster.run("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)", on=1, block=True)
    task = cluster.run("import time\ntime.sleep(30)", on=1)
    wait_until(lambda: task.state == "running")
    assert cluster.interrupt(1) == {1: "interrupted"}


def test_interrupting_code_that_ignores_sigint_reports_that_it_did_not_stop(cluster):
    task = cluster.run("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(30)", on=1)
    wait_until(lambda: task.state == "running")
    report = cluster.interrupt(1)
    assert "did not stop" in report[1] and "%workers restart 1" in report[1]
    assert not task.done()
    cluster.restart(1)
    task.wait(10)
    assert isinstance(task.error, TaskFailed)


# -- 13: a sane limit, and an interrupted start leaves nothing --------------------------------------


def test_too_many_workers_is_refused_with_the_way_past_it():
    with pytest.raises(ClusterError, match=r"more than \d+ .*force=True"):
        Cluster(400)
    assert Cluster(400, force=True).n_workers == 400


def test_an_interrupted_start_stops_every_process_it_started():
    class Slow(LocalLauncher):
        def launch(self, worker_id, *args, **kwargs):
            time.sleep(0.15)
            return super().launch(worker_id, *args, **kwargs)

    main = threading.get_ident()
    timer = threading.Timer(0.5, signal.pthread_kill, (main, signal.SIGINT))
    me = psutil.Process()
    cluster = Cluster(6, launcher=Slow())
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        cluster.start()
        time.sleep(5)
    timer.cancel()
    assert not cluster.running
    wait_until(lambda: not [c for c in me.children(recursive=True) if "ipyworkers.worker" in " ".join(c.cmdline())],
                timeout=5, what="no worker left")
    assert not [c for c in me.children() if c.status() == psutil.STATUS_ZOMBIE]


# -- 15: callbacks outside every lock; a restart stalls no one ------------------------------------------


def test_a_callback_may_wait_on_the_same_worker(cluster):
    results = []
    done = threading.Event()

    def callback(task):
        results.append((threading.current_thread().name, cluster.run("40 + 2", on=1, block=True).result))
        done.set()

    cluster.run("1", on=1).add_done_callback(callback)
    assert done.wait(10), "a callback waiting on its own worker deadlocked"
    assert results == [("ipyworkers-callbacks", 42)]


def test_a_slow_callback_does_not_delay_other_tasks(cluster):
    cluster.run("1", on=1).add_done_callback(lambda task: time.sleep(3))
    started = time.monotonic()
    assert cluster.run("2", on=2, block=True).result == 2
    assert time.monotonic() - started < 2.0


def test_a_restart_does_not_stall_the_other_workers():
    class SlowRestart(LocalLauncher):
        starts = 0

        def launch(self, worker_id, *args, **kwargs):
            SlowRestart.starts += 1
            if SlowRestart.starts > 2:
                time.sleep(3)
            return super().launch(worker_id, *args, **kwargs)

    with Cluster(2, launcher=SlowRestart(), default_sink=RecordingSink()) as cluster:
        restarting = threading.Thread(target=cluster.restart, args=(1,))
        restarting.start()
        time.sleep(0.5)
        started = time.monotonic()
        for _ in range(5):
            assert cluster.run("worker_id", on=2, block=True).result == 2
        assert time.monotonic() - started < 2.0, "worker 2's work waited for worker 1's restart"
        restarting.join(30)
        assert cluster.run("worker_id", on=1, block=True).result == 1


def test_an_error_in_a_callback_is_logged_and_later_callbacks_still_run(cluster, caplog):
    seen = threading.Event()
    cluster.run("1", on=1).add_done_callback(lambda task: 1 / 0)
    cluster.run("2", on=1).add_done_callback(lambda task: seen.set())
    assert seen.wait(10)
    assert any("callback raised" in r.message for r in caplog.records)


def test_a_remote_error_is_not_a_hang_even_when_nobody_waits(cluster):
    failing = cluster.run("raise ValueError('boom')", on=1)
    assert isinstance(failing.wait(10).error, RemoteError)
