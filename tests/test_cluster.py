"""The Python API with real worker processes and real sockets."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest

from ipyworkers import Cluster, ClusterError, RemoteError, TaskCancelled, TaskFailed, WorkerStartError
from ipyworkers.kernel import events as ev
from ipyworkers.kernel.launchers import LocalLauncher
from ipyworkers.kernel.sinks import RecordingSink
from polling import wait_until


def intervals(cluster: Cluster, tasks) -> list[tuple[float, float]]:
    return [(t.started_at, t.finished_at) for t in tasks]


# -- running code -------------------------------------------------------------------------


def test_run_returns_at_once_and_two_workers_run_at_the_same_time(cluster):
    a = cluster.run("import time; time.sleep(1.0)", on=1)
    b = cluster.run("import time; time.sleep(1.0)", on=2)
    assert not a.done() and not b.done()
    a.wait(30), b.wait(30)
    (a0, a1), (b0, b1) = intervals(cluster, [a, b])
    overlap = min(a1, b1) - max(a0, b0)
    assert overlap > 0.5, f"tasks did not overlap: {(a0, a1)} {(b0, b1)}"


def test_last_expression_is_the_result_and_is_displayed_when_not_returned(cluster, sink):
    task = cluster.run("x = 20\nx + 1", on=1, block=True, sink=sink)
    assert task.result == 21
    assert sink.outputs == []
    shown = cluster.run("x + 2", on=1, block=True, sink=sink, want_result=False)
    assert shown.result is None
    assert sink.outputs == [("display", 1, {"text/plain": "22"})]


def test_output_streams_in_order_while_the_task_runs(cluster, sink):
    task = cluster.run(
        "import time\nfor i in range(4):\n    print('tick', i, flush=True); time.sleep(0.3)", on=1, sink=sink
    )
    deadline = time.monotonic() + 10
    while "tick 1" not in sink.text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "tick 1" in sink.text() and not task.done(), "output must arrive before the task ends"
    task.wait(10)
    assert sink.text() == "".join(f"tick {i}\n" for i in range(4))


def test_stderr_and_rich_display_are_forwarded(cluster, sink):
    code = (
        "import sys\nfrom IPython.display import display, HTML\n"
        "print('oops', file=sys.stderr)\ndisplay(HTML('<b>hi</b>'))"
    )
    cluster.run(code, on=2, block=True, sink=sink)
    assert sink.text("stderr") == "oops\n"
    html = [o[2] for o in sink.outputs if o[0] == "display"]
    assert html and html[0]["text/html"] == "<b>hi</b>"


def test_magics_and_shell_commands_work_on_workers(cluster, sink):
    cluster.run("%time y = 1 + 1\n!echo from-the-shell", on=1, block=True, sink=sink)
    assert "from-the-shell" in sink.text()


def test_worker_sees_its_id_and_the_worker_count(cluster):
    assert cluster.run("worker_id, n_workers", on=2, block=True).result == (2, 2)


def test_remote_error_points_at_the_cell_lines(cluster, sink):
    with pytest.raises(RemoteError) as info:
        cluster.run("a = 1\nb = 0\nc = a / b\n", on=1, block=True, sink=sink, cell=7)
    error = info.value
    assert error.ename == "ZeroDivisionError" and error.worker == 1
    text = "\n".join(error.traceback)
    assert "Cell In[7], line 3" in text and "c = a / b" in text
    assert ("error", 1, "ZeroDivisionError", "division by zero") in sink.outputs


def test_syntax_error_comes_back_with_its_line(cluster):
    with pytest.raises(RemoteError) as info:
        cluster.run("x = 1\ny = = 2\n", on=1, block=True)
    assert info.value.ename == "SyntaxError"
    assert "line 2" in "\n".join(info.value.traceback)


def test_interrupt_stops_the_code_and_the_worker_keeps_its_variables(cluster):
    cluster.run("kept = 'still here'", on=1, block=True)
    task = cluster.run("import time\nwhile True:\n    time.sleep(0.05)", on=1)
    wait_until(lambda: task.state == "running")
    assert cluster.interrupt(1) == {1: "interrupted"}
    task.wait(10)
    assert isinstance(task.error, RemoteError) and task.error.ename == "KeyboardInterrupt"
    assert cluster.run("kept", on=1, block=True).result == "still here"


def test_status_lists_workers_and_names(cluster):
    cluster.run("alpha = 1", on=1, block=True)
    rows = cluster.status()
    assert [r["id"] for r in rows] == [1, 2]
    assert rows[0]["state"] == "idle" and rows[0]["names"] == ["alpha"] and rows[0]["pid"] > 0


def test_event_log_records_the_life_of_a_task(cluster):
    task = cluster.run("1", on=1, block=True)
    kinds = [e.kind for e in cluster.events.events() if e.task == task.id]
    assert kinds == [ev.TASK_QUEUED, ev.TASK_STARTED, ev.TASK_FINISHED]
    assert [e.kind for e in cluster.events.events(ev.WORKER_STARTED)] == [ev.WORKER_STARTED] * 2


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -3, 1.5, "two", True])
def test_bad_worker_count_is_refused_before_anything_starts(n):
    with pytest.raises(ClusterError, match="whole number >= 1"):
        Cluster(n)


def test_unknown_or_bad_worker_ids_are_refused(cluster):
    with pytest.raises(ClusterError, match="no worker 99: this cluster has workers 1..2"):
        cluster.run("x = 1", on=99)
    with pytest.raises(ClusterError, match="no worker 'abc'"):
        cluster.run("x = 1", on=["abc"])
    assert cluster.run("1", on=1, block=True).result == 1


def test_running_before_start_is_refused():
    with pytest.raises(ClusterError, match="start them first"):
        Cluster(1).run("x = 1", on=1)


# -- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, how",
    [
        ("import os; os._exit(3)", "exit code 3"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "signal SIGKILL"),
        ("import ctypes; ctypes.string_at(0)", "signal SIGSEGV"),
    ],
)
def test_worker_death_is_reported_and_the_rest_goes_on(cluster, code, how):
    cluster.run("survivor = 'yes'", on=2, block=True)
    cluster.run("import time; time.sleep(0.2)", on=1)
    dying = cluster.run(code, on=1, sink=RecordingSink())
    queued = cluster.run("never = 1", on=1)
    dying.wait(10), queued.wait(10)
    assert isinstance(dying.error, TaskFailed) and f"worker 1 died ({how})" in str(dying.error)
    assert isinstance(queued.error, TaskFailed) and "worker 1 died" in str(queued.error)
    assert ("note", 1, f"worker 1 died ({how})") in dying.sink.outputs
    assert cluster.status()[0]["state"] == "dead"
    assert cluster.run("survivor", on=2, block=True).result == "yes"
    with pytest.raises(ClusterError, match="worker 1 is dead"):
        cluster.run("1", on=1)
    cluster.restart(1)
    assert cluster.run("worker_id", on=1, block=True).result == 1


def test_start_failure_reports_the_output_and_stops_what_started(tmp_path):
    broken = tmp_path / "broken-python"
    broken.write_text("#!/bin/sh\necho 'boom: this worker cannot start' >&2\nexit 3\n")
    broken.chmod(0o755)

    class ThirdFails(LocalLauncher):
        def launch(self, worker_id, *args, **kwargs):
            self.python = str(broken) if worker_id == 3 else sys.executable
            return super().launch(worker_id, *args, **kwargs)

    cluster = Cluster(3, launcher=ThirdFails(), startup_timeout=20)
    with pytest.raises(WorkerStartError, match=r"(?s)worker 3 exited during startup \(exit code 3\).*boom"):
        cluster.start()
    assert not cluster.running


def test_stop_takes_down_processes_started_by_user_code():
    cluster = Cluster(1).start()
    try:
        pid = cluster.run("import subprocess\np = subprocess.Popen(['sleep', '60'])\np.pid", on=1, block=True).result
        assert psutil.pid_exists(pid)
    finally:
        cluster.stop()
    wait_until(lambda: not _alive(pid))


def test_stop_kills_a_worker_that_ignores_the_polite_request():
    cluster = Cluster(1).start()
    cluster.run("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)", on=1)
    time.sleep(0.3)
    started = time.monotonic()
    cluster.stop()
    assert time.monotonic() - started < 10


def test_workers_exit_when_their_kernel_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from ipyworkers import Cluster
        cluster = Cluster(2).start()
        pids = [r['pid'] for r in cluster.status()]
        child = cluster.run("import subprocess; subprocess.Popen(['sleep', '60']).pid", on=1, block=True).result
        print("PIDS", *pids, child, flush=True)
        time.sleep(60)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        line = next(line for line in parent.stdout if line.startswith("PIDS"))
        pids = [int(p) for p in line.split()[1:]]
        assert len(pids) == 3 and all(_alive(p) for p in pids)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        parent.stdout.close()
    wait_until(lambda: not any(_alive(p) for p in pids), timeout=10)


# -- dataflow between workers ----------------------------------------------------------------------


def test_a_reader_waits_for_the_producer_and_gets_the_value_directly(cluster):
    cluster.run("import time\ntime.sleep(0.5)\nx = 41", on=1)
    reader = cluster.run("y = x + 1\ny", on=2)
    assert reader.wait(30).result == 42
    transfers = cluster.events.events(ev.TRANSFER)
    assert [(e.data["name"], e.data["source"], e.data["dest"]) for e in transfers] == [("x", 1, 2)]


def test_a_100_mb_array_moves_intact_and_not_through_the_kernel(cluster):
    cluster.run("import numpy as np\nrng = np.random.default_rng(5)\nbig = rng.random(13_107_200)", on=1)
    task = cluster.run("import numpy as np\nnp.array_equal(big, np.random.default_rng(5).random(13_107_200))", on=2)
    assert task.wait(60).result is True
    kernel_bytes = sum(h.link.conn.bytes_received for h in cluster._supervisor.handles.values())
    assert kernel_bytes < 1_000_000, f"{kernel_bytes} bytes went through the kernel"
    (transfer,) = cluster.events.events(ev.TRANSFER)
    assert transfer.data["bytes"] >= 100 * 2**20


def test_a_value_from_the_kernel_namespace_is_shipped():
    namespace = {"factor": 3}
    with Cluster(1, namespace=namespace, default_sink=RecordingSink()) as cluster:
        assert cluster.run("factor * 2", on=1, block=True).result == 6


def test_failed_producer_cancels_the_reader_naming_the_task(cluster, sink):
    producer = cluster.run("import time\ntime.sleep(0.3)\nz = 1 / 0", on=1)
    reader = cluster.run("w = z + 1", on=2, sink=sink)
    reader.wait(30)
    assert isinstance(reader.error, TaskCancelled)
    message = str(reader.error)
    assert f"task #{producer.id} on worker 1 failed (ZeroDivisionError" in message and "'z'" in message
    later = cluster.run("v = w", on=1)
    later.wait(30)
    assert isinstance(later.error, TaskCancelled) and f"task #{producer.id} on worker 1" in str(later.error)


def test_unpicklable_value_fails_at_the_source_which_keeps_it(cluster):
    cluster.run("import threading\nlock = threading.Lock()", on=1, block=True)
    reader = cluster.run("lock", on=2)
    reader.wait(30)
    assert isinstance(reader.error, TaskFailed)
    assert "'lock' of type _thread.lock" in str(reader.error)
    assert cluster.run("type(lock).__name__", on=1, block=True).result == "lock"


def test_value_that_cannot_unpickle_on_the_destination_leaves_it_unchanged(cluster, tmp_path):
    (tmp_path / "only_on_one.py").write_text("class Thing:\n    pass\n")
    cluster.run("obj = 'old value'", on=2, block=True)
    cluster.run(f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nimport only_on_one\nobj = only_on_one.Thing()",
                on=1, block=True)
    reader = cluster.run("obj", on=2)
    reader.wait(30)
    assert isinstance(reader.error, TaskFailed)
    assert "variable 'obj' cannot be unpickled on worker 2" in str(reader.error)
    assert "only_on_one" in str(reader.error)
    cluster.flow.latest.pop("obj")
    assert cluster.run("obj", on=2, block=True).result == "old value"


def test_a_name_defined_nowhere_gives_python_nameerror(cluster):
    with pytest.raises(RemoteError, match="name 'nowhere' is not defined"):
        cluster.run("nowhere + 1", on=1, block=True)


def test_explicit_push_send_and_pull(cluster):
    cluster.push({"a": np.arange(5)}, to=[1, 2])
    cluster.run("b = a * 2", on=1, block=True)
    cluster.send(["b"], frm=1, to=2, block=True)
    assert cluster.run("int(b.sum())", on=2, block=True).result == 20
    assert cluster.who_has(["b"])["b"]["holders"] == [1, 2]
    assert cluster.pull("b")["b"].tolist() == [0, 2, 4, 6, 8]
    assert 0 in cluster.who_has(["b"])["b"]["holders"]


def test_pull_waits_for_the_producer(cluster):
    cluster.run("import time\ntime.sleep(0.3)\nslow = 'done'", on=1)
    assert cluster.pull("slow") == {"slow": "done"}
    assert cluster.namespace["slow"] == "done"


def test_pull_of_an_unknown_name_is_a_nameerror(cluster):
    with pytest.raises(NameError, match="'ghost' is not defined on any worker"):
        cluster.pull("ghost")


def test_tagged_cell_runs_each_statement_on_its_worker(cluster, sink):
    cell = textwrap.dedent("""\
        datadir = '/data/'      # @1
        x = datadir + 'x.csv'   # @1
        y = datadir + 'y.csv'   # @2
        xy = x + y              # @1
        print("all done", worker_id)  # @2
    """)
    group = cluster.run_parallel(cell, sink=sink, block=True)
    assert len(group) == 4
    assert cluster.pull("xy") == {"xy": "/data/x.csv/data/y.csv"}
    assert sink.text() == "all done 2\n"
    moved = {(e.data["name"], e.data["source"], e.data["dest"]) for e in cluster.events.events(ev.TRANSFER)}
    assert moved == {("datadir", 1, 2), ("y", 2, 1), ("xy", 1, 0)}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False



def test_a_failed_cell_keeps_what_it_bound_before_the_error(cluster):
    failing = cluster.run("values = [1, 2, 0]\nratios = [1 / v for v in values]", on=1)
    failing.wait(30)
    assert isinstance(failing.error, RemoteError)
    assert cluster.run("len(values)", on=2, block=True).result == 3
    with pytest.raises(TaskCancelled, match="'ratios' is unavailable because task"):
        cluster.run("ratios", on=2, block=True)


def test_a_long_session_does_not_keep_every_task(cluster):
    for i in range(2100):
        task = cluster.run(f"x = {i}", on=1 + i % 2, want_result=False)
        if i % 100 == 99:
            task.wait(30)
    assert cluster.run("x", on=1, block=True).result == 2099
    assert len(cluster.flow.tasks) < 1200 and len(cluster._scheduler.tasks) < 1200


def test_source_dying_before_it_sends_gives_the_reader_a_clear_error(cluster):
    cluster.run("y = 'old'", on=2, block=True)
    cluster.run("import os, time\ntime.sleep(0.5)\nos._exit(1)\nx = 1", on=1)
    reader = cluster.run("y = x", on=2)
    reader.wait(30)
    assert isinstance(reader.error, TaskFailed)
    assert "worker 1 died during the transfer of 'x'" in str(reader.error)
    cluster.flow.latest.pop("y")
    assert cluster.run("y", on=2, block=True).result == "old"


def test_task_cancel_drops_a_queued_task_and_interrupts_a_running_one(cluster):
    from ipyworkers import RemoteError, TaskCancelled

    busy = cluster.run("import time\nwhile True:\n    time.sleep(0.05)", on=1)
    queued = cluster.run("made = 1", on=1)
    reader = cluster.run("made + 1", on=2)
    queued.cancel()
    assert isinstance(queued.wait(5).error, TaskCancelled)
    assert isinstance(reader.wait(5).error, TaskCancelled) and "'made'" in str(reader.error)
    deadline = time.monotonic() + 10
    while busy.started_at is None and time.monotonic() < deadline:
        time.sleep(0.02)
    busy.cancel()
    assert isinstance(busy.wait(10).error, RemoteError) and busy.error.ename == "KeyboardInterrupt"
    busy.cancel()  # ended: nothing happens
    assert cluster.run("worker_id", on=1).result == 1


def test_an_interrupted_cell_traceback_ends_in_the_users_code(cluster):
    task = cluster.run("import time\ntime.sleep(30)", on=1)
    wait_until(lambda: task.state == "running", what="the cell running")
    time.sleep(0.2)
    task.cancel()
    task.wait(10)
    text = "\n".join(task.error.traceback)
    assert "time.sleep(30)" in text and "runner.py" not in text and "on_sigint" not in text, text
