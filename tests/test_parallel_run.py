"""%%parallel on real workers: setup lines, --auto placement, plan against actual, export."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipyworkers import Cluster, ClusterError, RemoteError, TaskCancelled
from ipyworkers.errors import TagError
from ipyworkers.kernel import events as ev
from ipyworkers.kernel.costs import measured
from ipyworkers.kernel.sinks import RecordingSink
from ipyworkers.notebook.svg import html_page, render_svg
from ipyworkers.notebook.timeline import TimelineModel, summary_line
from kernel_session import plain
from polling import wait_until

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))

from make_teaching import BRANCHES, SEED, SEED_AUTO  # noqa: E402 - the notebook's own examples

SLEEPS = "import time\n" + "".join(f"t{i} = time.sleep(0.5)\n" for i in range(1, 9)) + \
    "total = [" + ", ".join(f"t{i}" for i in range(1, 9)) + "]\n"
CHAIN = "x = sum(range(10))\ny = x + 1\nz = y * 2\nw = z - 3\nv = w ** 2\n"


def transfers(cluster: Cluster) -> set[tuple[str, int, int]]:
    return {(e.data["name"], e.data["source"], e.data["dest"]) for e in cluster.events.events(ev.TRANSFER)}


def untagged(cell: str) -> str:
    return "\n".join(line.split("#")[0].rstrip() for line in cell.splitlines()) + "\n"


# -- setup lines ----------------------------------------------------------------------------------


def test_the_seed_with_an_untagged_import_runs_and_the_module_never_moves(cluster, sink):
    group = cluster.run_parallel(SEED, sink=sink, block=True)
    copies = [t for t in group if t.code.strip() == "import os"]
    assert sorted(t.worker for t in copies) == [1, 2] and all(t.succeeded() for t in copies)
    assert cluster.pull("xy") == {"xy": "/data/x.csv/data/y.csv"}
    assert sink.text() == "all done\n"
    assert transfers(cluster) == {("datadir", 1, 2), ("y", 2, 1), ("xy", 1, 0)}


def test_a_copy_stores_its_writes_under_the_shared_version_so_others_can_fetch_them_there():
    """Setup bound ``k`` on workers 1 and 2 (one version: the first copy's id). Once worker 1
    is gone, worker 3 fetches ``k`` from worker 2, which must serve it under that version."""
    with Cluster(3, default_sink=RecordingSink()) as cluster:
        cluster.run_parallel("k = 7\na = k + 1  # @1\nb = k + 2  # @2\n", block=True)
        (version,) = {cluster.flow.latest["k"]}
        assert cluster.who_has(["k"])["k"]["holders"] == [1, 2]
        cluster.run("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", on=1).wait(10)
        wait_until(lambda: 1 not in cluster.worker_ids)
        task = cluster.run("k * 6", on=3)
        assert task.wait(10).result == 42
        assert ("k", 2, 3) in transfers(cluster)
        assert any(e.data.get("version") == version for e in cluster.events.events(ev.TRANSFER))


def test_a_failing_setup_line_cancels_what_reads_it_on_every_worker_naming_it(cluster):
    cell = "import no_such_module_here\na = no_such_module_here.x  # @1\nb = no_such_module_here.y  # @2\n" \
           "c = b  # @1\n"
    group = cluster.run_parallel(cell)
    group.wait(20)
    by_code = {t.code.strip().split("  #")[0]: t for t in group}
    copies = [t for t in group if t.code.strip() == "import no_such_module_here"]
    assert len(copies) == 2 and all(isinstance(t.error, RemoteError) for t in copies)
    for name in ("a = no_such_module_here.x", "b = no_such_module_here.y", "c = b"):
        error = by_code[name].error
        assert isinstance(error, TaskCancelled), name
        assert "is unavailable because task #" in str(error) and "ModuleNotFoundError" in str(error)
    on_2 = by_code["b = no_such_module_here.y"]
    assert "on worker 2 failed (ModuleNotFoundError" in str(on_2.error), "b reads the copy on its own worker"


# -- --auto -------------------------------------------------------------------------------------------


def test_auto_runs_eight_half_second_sleeps_on_two_workers_in_about_two_seconds(cluster):
    """The issue's target: 8 x sleep(0.5) + a combine, no tags, 2 workers, <= 2.4 s from
    submission to done (sleeps: the bound is about parallelism, not a loaded CPU). The
    plan is shown first, as with --show: that imports IPython's input transformer, which a
    kernel has loaded already and this test process has not (about 0.3 s, once)."""
    assert "predicted makespan 5.00 units" in cluster.plan_parallel(SLEEPS, auto=True)
    started = time.monotonic()
    group = cluster.run_parallel(SLEEPS, auto=True)
    group.wait(30)
    wall = time.monotonic() - started
    assert group.error is None
    on = {t.code.strip(): t.worker for t in group}
    assert sorted(on[f"t{i} = time.sleep(0.5)"] for i in range(1, 9)) == [1, 1, 1, 1, 2, 2, 2, 2]
    assert wall <= 2.4, f"took {wall:.2f} s"
    assert cluster.run("len(total)", on=on[SLEEPS.splitlines()[-1]], block=True).result == 8


def test_auto_keeps_a_chain_on_one_worker_so_nothing_moves(cluster):
    group = cluster.run_parallel(CHAIN, auto=True, block=True)
    assert len({t.worker for t in group}) == 1
    assert cluster.events.events(ev.TRANSFER) == []
    assert cluster.pull("v")["v"] == ((45 + 1) * 2 - 3) ** 2


def test_auto_prints_come_out_in_source_order(cluster, sink):
    cell = ("import time\na = 1\nprint('first', a)\nb = time.sleep(0.3) or 2\nprint('second', b)\n"
            "c = time.sleep(0.2) or 3\nprint('third', a + c)\nd = [b, c]\nprint('fourth', d)\n")
    cluster.run_parallel(cell, auto=True, sink=sink, block=True)
    assert sink.text() == "first 1\nsecond 2\nthird 4\nfourth [2, 3]\n"


def test_auto_uses_what_earlier_runs_measured(cluster):
    cluster.run_parallel(SLEEPS, auto=True, block=True)
    costs, sizes = measured(cluster.events.events())
    assert costs["t3 = time.sleep(0.5)"] == pytest.approx(0.5, abs=0.1)
    assert "t1" in sizes or "t2" in sizes
    shown = cluster.plan_parallel(SLEEPS, auto=True)
    assert "predicted makespan 2." in shown and " s on 2 workers" in shown


def test_auto_places_on_the_workers_named_and_tags_pin(cluster):
    group = cluster.run_parallel("a = sum(range(3))\nb = sum(range(4))\nc = a + b  # @1\n", auto=True,
                                 workers=[2], block=True)
    on = {t.code.strip().split("  #")[0]: t.worker for t in group}
    assert on == {"a = sum(range(3))": 2, "b = sum(range(4))": 2, "c = a + b": 1}


@pytest.mark.parametrize("cell, kwargs, error, message", [
    ("a = 1  # @5\nb = a + 1\n", {"auto": True}, TagError, "line 1: there is no worker 5 (workers are 1..2)"),
    ("a = 1\nb = (a +\nc = 2\n", {"auto": True}, SyntaxError, "line 2: '(' was never closed"),
    ("a = 1\nb = (a +\nc = 2  # @1\n", {}, SyntaxError, "line 2: '(' was never closed"),
    ("a = 1\n", {"auto": True, "default": 1}, ClusterError, "--default is for tagged cells"),
    ("a = 1  # @1\n", {"workers": [1]}, ClusterError, "--workers goes with --auto"),
])
def test_bad_cells_are_refused_naming_the_line_and_nothing_runs(cluster, cell, kwargs, error, message):
    with pytest.raises(error) as info:
        cluster.run_parallel(cell, **kwargs)
    assert message in str(info.value)
    assert cluster.tasks() == []


def test_costs_are_medians_of_recent_runs_and_a_group_shares_its_time():
    """Pure, from events alone. A task of several statements shares its time among them in
    proportion to their times alone, or evenly where one never ran alone."""
    def run(task, keys, seconds):
        return [ev.Event(ev.PLAN, 0.0, data={"statements": {task: keys}}),
                ev.Event(ev.TASK_STARTED, 0.0, task=task), ev.Event(ev.TASK_FINISHED, seconds, task=task)]
    events = [*run(1, ["a = f()"], 1.0), *run(2, ["a = f()"], 3.0), *run(3, ["b = g()"], 4.0),
              *run(4, ["a = f()", "b = g()"], 9.0), *run(5, ["c = h()", "d = k()"], 1.0),
              ev.Event(ev.TRANSFER, 1.0, data={"name": "a", "bytes": 800}),
              ev.Event(ev.TRANSFER, 1.0, data={"name": "stream", "bytes": 5})]
    costs, sizes = measured(events)
    assert costs == {"a = f()": 3.0, "b = g()": 5.0, "c = h()": 0.5, "d = k()": 0.5}  # a: 1, 3, 9 * 2/6
    assert sizes == {"a": 800}


# -- plan against actual --------------------------------------------------------------------------


def test_the_teaching_example_runs_as_predicted_within_a_quarter(cluster):
    """The teaching notebook's two branches: the first run measures, the second is planned
    with those times; its predicted makespan is within 25% of the actual one."""
    cluster.run_parallel(BRANCHES, auto=True, block=True)
    cluster.run_parallel(BRANCHES, auto=True, block=True, cell_number=7)
    model = TimelineModel.from_log(cluster.events)
    plan = model.plan_summary()
    assert plan["unit"] == "s" and plan["done"] and plan["cell"] == 7
    assert abs(plan["predicted"] - plan["actual"]) <= 0.25 * plan["actual"], plan
    assert plan["predicted_speedup"] > 1.5 and plan["actual_speedup"] > 1.5
    line = summary_line(model)
    assert "plan vs actual, cell [7]: " in line and " vs " in line
    svg = render_svg(model)
    assert svg.count('class="planned"') >= 8 and "planned: line 5 on worker" in svg
    page = html_page(model)
    assert "plan vs actual, cell [7]" in page and 'class="planned"' in page and "planned (%%parallel)" in page


def test_a_tagged_run_is_predicted_too_and_each_task_names_its_statements(cluster):
    cluster.run_parallel(SEED, block=True, cell_number=3)
    (plan,) = cluster.events.events(ev.PLAN)
    assert plan.data["cell"] == 3 and not plan.data["auto"] and plan.data["unit"] == "units"
    assert sorted(plan.data["statements"].values()).count(["import os"]) == 2
    assert {s["line"] for s in plan.data["slots"]} == set(range(1, 7))
    assert {e.data["cell"] for e in cluster.events.events(ev.TASK_QUEUED)} == {3}  # the timeline's groups


# -- export -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auto", [False, True])
def test_an_exported_program_gives_the_values_of_the_cell(cluster, tmp_path, auto):
    cell = untagged(BRANCHES) if auto else BRANCHES_TAGGED
    cluster.run_parallel(cell, auto=auto, block=True)
    values = cluster.pull(["a3", "b3", "both"])
    written = cluster.export_parallel(cell, str(tmp_path / "program"), auto=auto)
    assert [p.name for p in written] == ["worker_1.py", "worker_2.py", "run.py"]
    done = subprocess.run([sys.executable, str(written[-1])], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": _src()})
    assert done.returncode == 0, done.stderr
    printed = dict(line.split(" = ", 1) for line in done.stdout.splitlines() if " = " in line)
    assert {name: printed[name] for name in values} == {name: repr(value) for name, value in values.items()}


BRANCHES_TAGGED = "\n".join(
    line + ("  # @1" if line.startswith(("a", "both")) else "  # @2" if line.startswith(("b", "print")) else "")
    for line in BRANCHES.splitlines()) + "\n"


# -- through a real kernel ----------------------------------------------------------------------------




def test_the_seed_runs_in_a_notebook_and_show_puts_the_import_on_both_workers(nb):
    shown = nb.execute("%%parallel --show\n" + SEED)
    assert shown.status == "ok", shown.error_text
    assert shown.stdout.splitlines()[2].split("|")[0].strip() == "import os"
    assert shown.stdout.splitlines()[2].split("|")[1].strip() == "import os"
    ran = nb.execute("%%parallel --block\n" + SEED)
    assert ran.status == "ok", ran.error_text
    assert ran.stdout == "[worker 2] all done\n"
    assert nb.execute("%pull xy\nprint(xy)").stdout == "/data/x.csv/data/y.csv\n"


def test_auto_in_a_notebook_shows_runs_and_exports(nb, tmp_path):
    shown = nb.execute("%%parallel --auto --show\n" + SEED_AUTO)
    assert shown.status == "ok", shown.error_text
    assert "predicted makespan" in shown.stdout.splitlines()[-1]
    ran = nb.execute("%%parallel --auto --block --workers 1 2\n" + SEED_AUTO)
    assert ran.status == "ok", ran.error_text
    assert "all done" in ran.stdout
    exported = nb.execute(f"%%parallel --auto --export {tmp_path}\n" + SEED_AUTO)
    assert exported.status == "ok", exported.error_text
    assert f"python {tmp_path / 'run.py'}" in exported.stdout
    assert (tmp_path / "worker_2.py").exists()


@pytest.mark.parametrize("cell, message", [
    ("%%parallel --auto\na = 1  # @5\nb = a + 1", "%%parallel: line 1: there is no worker 5 (workers are 1..2)"),
    ("%%parallel --auto\na = 1\nb = (a +\nc = 2", "%%parallel: line 2: '(' was never closed"),
    ("%%parallel --auto --workers 9\na = 1", "no worker 9: this cluster has workers 1..2"),
    ("%%parallel --workers 1\na = 1  # @1", "--workers goes with --auto"),
])
def test_bad_auto_cells_are_usage_errors(nb, cell, message):
    result = nb.execute(cell)
    assert result.status == "error" and result.error["ename"] == "UsageError", result.error_text
    assert message in plain(result.error["evalue"])


def _src() -> str:
    return str(Path(__file__).resolve().parent.parent / "src")


