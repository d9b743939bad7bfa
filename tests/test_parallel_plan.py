"""Tagged cells: splitting, grouping, and the plan's sends and receives."""

from __future__ import annotations

import random

import pytest

from ipyworkers.plan.analysis import analyze
from ipyworkers.plan.dataflow import Dataflow
from ipyworkers.plan.parallel import TagError, plan, render, split
from ipyworkers.plan.schedule import auto_plan
from test_export import random_cell

EXAMPLE = '''datadir = '/data/'      # @1
x = datadir + 'x.csv'   # @1
y = datadir + 'y.csv'   # @2
xy = x + y              # @1
print("all done")       # @2
'''


def test_statements_are_grouped_by_consecutive_worker():
    groups = split(EXAMPLE, range(1, 3))
    assert [(g.worker, g.first_line, g.last_line) for g in groups] == [(1, 1, 2), (2, 3, 3), (1, 4, 4), (2, 5, 5)]


def test_group_code_keeps_the_cell_line_numbers():
    groups = split(EXAMPLE, range(1, 3))
    assert groups[2].code.splitlines()[3].startswith("xy = x + y")


def test_untagged_statement_stays_on_previous_worker_and_worker_word_works():
    cell = "a = 1  # worker 2\nb = a + 1\nfor i in range(3):\n    b += i\nc = b  # @1\n"
    groups = split(cell, [1, 2])
    assert [(g.worker, g.first_line, g.last_line) for g in groups] == [(2, 1, 4), (1, 5, 5)]


def test_untagged_first_statement_is_setup_unless_a_default_is_given():
    """Replaces the old rule (an untagged first statement was an error): it is setup now."""
    setup = split("a = 1\nb = 2 # @1", [1, 2])[0]
    assert (setup.worker, setup.replicas, setup.replicated) == (1, (), False)  # nobody reads a: first worker
    assert split("a = 1\nb = 2 # @1", [1, 2], default=2)[0].worker == 2


def test_default_that_is_not_a_worker_is_an_error_naming_it():
    with pytest.raises(TagError, match=r"--default 7: there is no worker 7 \(workers are 1\.\.2\)"):
        split("a = 1\nb = 2 # @1", [1, 2], default=7)


def test_tag_for_a_missing_worker_is_an_error_naming_the_line():
    with pytest.raises(TagError, match="line 2: there is no worker 7"):
        split("a = 1 # @1\nb = 2 # @7", [1, 2])


def test_plan_shows_the_transfers_the_run_would_make():
    steps = plan(split(EXAMPLE, [1, 2]), Dataflow())
    assert [s.receives for s in steps] == [[], [("datadir", 1)], [("y", 2)], []]
    text = render(steps, [1, 2])
    assert "send(datadir, to=2)" in text and "datadir = recv(frm=1)" in text
    assert "send(y, to=1)" in text and "y = recv(frm=2)" in text


def test_plan_does_not_change_the_flow():
    flow = Dataflow()
    plan(split(EXAMPLE, [1, 2]), flow)
    assert flow.tasks == {} and flow.latest == {}


SEED = """import os
datadir = '/data/'                    # @1
x = os.path.join(datadir, 'x.csv')    # @1
y = os.path.join(datadir, 'y.csv')    # @2
xy = x + y                            # @1
"""


def test_setup_runs_on_every_worker_that_reads_what_it_binds():
    groups = split(SEED, [1, 2, 3])
    assert [(g.workers, g.first_line, g.last_line) for g in groups] == [
        ((1, 2), 1, 1), ((1,), 2, 3), ((2,), 4, 4), ((1,), 5, 5),
    ]
    assert groups[0].replicated and groups[0].source == "import os"


def test_setup_is_never_transferred():
    steps = plan(split(SEED, [1, 2]), Dataflow())
    moved = [name for step in steps for name, _ in step.receives]
    assert moved == ["datadir", "y"]
    assert [(s.on, s.receives) for s in steps] == [(1, []), (2, []), (1, []), (2, [("datadir", 1)]), (1, [("y", 2)])]


def test_render_shows_setup_rows_on_each_worker_that_runs_them():
    text = render(plan(split(SEED, [1, 2]), Dataflow()), [1, 2])
    first_row = text.splitlines()[2]
    assert first_row.split("|")[0].strip() == "import os" and first_row.split("|")[1].strip() == "import os"
    assert "send(os" not in text and "os = recv" not in text


def test_setup_only_one_worker_reads_runs_only_there():
    cell = "import math\nimport os\na = math.pi  # @2\nb = 1  # @1\n"
    groups = split(cell, [1, 2])
    assert [(g.workers, g.source) for g in groups[:2]] == [((2,), "import math"), ((1,), "import os")]


def test_setup_needed_by_needed_setup_runs_there_too():
    cell = "import os\nsep = os.sep\nunused = 0\na = sep  # @2\n"
    groups = split(cell, [1, 2])
    assert [(g.workers, g.source) for g in groups[:2]] == [((2,), "import os\nsep = os.sep"), ((1,), "unused = 0")]


def test_setup_rebound_before_it_is_read_is_not_copied():
    cell = "limit = 10\nlimit = 20  # @1\nc = limit  # @2\n"
    groups = split(cell, [1, 2])
    assert groups[0].workers == (1,)
    steps = plan(groups, Dataflow())
    assert steps[-1].receives == [("limit", 1)]


def test_statements_that_share_a_line_stay_together():
    groups = split("a = 1; b = a + 1  # @2\nc = b  # @1\n", [1, 2])
    assert [(g.worker, g.source) for g in groups] == [(2, "a = 1; b = a + 1  # @2"), (1, "c = b  # @1")]


# -- the plan run through the dataflow protocol, as a cluster would ---------------------------


def run_through_dataflow(groups, workers, rng) -> tuple[Dataflow, dict[int, dict]]:
    """Submit ``groups`` as the cluster does (setup replicated), then run the dispatched
    tasks in a random interleaving, one at a time per worker, each fetching its remote
    inputs from the worker named as source. A fetch that finds a newer version there
    means a value was overwritten before it was read: the test fails."""
    flow = Dataflow()
    for w in workers:
        flow.add_worker(w)
    code: dict[int, str] = {}
    for group in groups:
        names = analyze(group.source)
        writes = names.writes | names.deletes
        if group.replicated:
            records = flow.submit_replicated(group.workers, names.reads, writes)
        else:
            records = [flow.submit(group.worker, names.reads, writes)]
        code.update({r.id: group.source for r in records})
    spaces: dict[int, dict] = {w: {} for w in workers}
    held: dict[tuple[int, str], int] = {}
    queues: dict[int, list] = {w: [] for w in workers}
    while True:
        dispatch, cancelled = flow.ready()
        assert cancelled == []
        for task in dispatch:
            queues[task.worker].append(task)
        runnable = [q[0] for q in queues.values() if q and all(
            held.get((d.source, d.name), 0) >= d.version for d in q[0].remote_deps())]
        if not runnable:
            break
        task = rng.choice(runnable)
        queues[task.worker].pop(0)
        for dep in task.remote_deps():
            assert held[(dep.source, dep.name)] == dep.version, f"{dep.name} overwritten on {dep.source}"
            spaces[task.worker][dep.name] = spaces[dep.source][dep.name]
            held[(task.worker, dep.name)] = dep.version
            flow.fetched(task.id, dep.name)
        for dep in task.deps:
            if dep.source == task.worker:
                assert held.get((task.worker, dep.name)) == dep.version, f"{dep.name} not local on {task.worker}"
        exec(code[task.id], spaces[task.worker])
        for name in task.writes:
            held[(task.worker, name)] = task.version
        flow.finished(task.id, True)
    assert flow.unfinished() == []
    return flow, spaces


@pytest.mark.parametrize("seed", range(30))
def test_random_cells_run_through_the_dataflow_give_the_values_of_a_plain_run(seed):
    rng = random.Random(seed)
    workers = list(range(1, rng.randint(2, 4) + 1))
    auto = seed % 2 == 1
    cell = random_cell(rng, len(workers), tagged=not auto)
    groups = auto_plan(cell, workers).groups if auto else split(cell, workers)
    flow, spaces = run_through_dataflow(groups, workers, rng)
    reference: dict = {}
    exec(cell, reference)
    for name in set("abcdghK") & set(reference):
        version, holders = flow.where(name)
        assert holders, (cell, name)
        assert all(spaces[h][name] == reference[name] for h in holders), (cell, name)


def test_replicated_setup_is_read_locally_in_a_run():
    flow, spaces = run_through_dataflow(split(SEED, [1, 2]), [1, 2], random.Random(0))
    version, holders = flow.where("os")
    assert holders == {1, 2} and spaces[2]["y"] == "/data/y.csv" and spaces[1]["xy"] == "/data/x.csv/data/y.csv"
