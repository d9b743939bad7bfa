"""Automatic placement: the statement graph, HEFT, and the predicted timeline."""

from __future__ import annotations

import pytest

from ipyworkers.plan.dataflow import Dataflow
from ipyworkers.plan.parallel import TagError, plan
from ipyworkers.plan.schedule import (
    ORDER,
    RAW,
    WAR,
    WAW,
    auto_plan,
    build_graph,
    render_plan,
    statement_key,
    timeline,
)

NAMES = [f"t{i}" for i in range(1, 9)]
SLEEPS = "import time\n" + "".join(f"{n} = time.sleep(0.5)\n" for n in NAMES) + f"total = [{', '.join(NAMES)}]\n"
COSTS = {f"{n} = time.sleep(0.5)": 0.5 for n in NAMES} | {f"total = [{', '.join(NAMES)}]": 0.05}


def sleep_workers(auto) -> list[int]:
    """Worker of t1 .. t8, in that order."""
    return [auto.placement[s.index] for s in auto.graph.tasks if s.source.split(" =")[0] in NAMES]


def test_eight_independent_sleeps_split_four_and_four():
    auto = auto_plan(SLEEPS, [1, 2], COSTS)
    sleeps = sleep_workers(auto)
    assert sorted(sleeps) == [1, 1, 1, 1, 2, 2, 2, 2]
    assert auto.makespan == pytest.approx(2.0 + 0.05, abs=0.01)
    assert auto.serial == pytest.approx(4.05)
    assert auto.summary() == "predicted makespan 2.05 s on 2 workers (serial 4.05 s, speed-up 1.97×)"


def test_setup_import_runs_on_both_workers_and_is_never_sent():
    auto = auto_plan(SLEEPS, [1, 2], COSTS)
    assert auto.setup_on == {0: (1, 2)}
    assert auto.groups[0].source == "import time" and auto.groups[0].workers == (1, 2)
    received = {name for step in plan(auto.groups, Dataflow()) for name, _ in step.receives}
    assert "time" not in received
    assert received == {n for n, w in zip(NAMES, sleep_workers(auto), strict=True)
                        if w != auto.placement[9]}


def test_predicted_start_and_finish_per_statement():
    auto = auto_plan(SLEEPS, [1, 2], COSTS)
    by_statement = {(s.statement, s.worker): s for s in auto.slots}
    assert sorted(s.finish for s in auto.slots if not s.setup and s.statement < 9) == pytest.approx(
        [0.5, 0.5, 1.0, 1.0, 1.5, 1.5, 2.0, 2.0])
    combine = by_statement[(9, auto.placement[9])]
    assert combine.start == pytest.approx(2.001) and combine.finish == pytest.approx(auto.makespan)
    rows = timeline(auto)
    assert {r["line"] for r in rows} == set(range(1, 11)) and all(r["finish"] >= r["start"] for r in rows)


def test_render_plan_shows_transfers_and_the_makespan_last():
    text = render_plan(auto_plan(SLEEPS, [1, 2], COSTS))
    assert "send(t2, to=1)" in text and "t2 = recv(frm=2)" in text
    assert text.splitlines()[-1].startswith("predicted makespan 2.05 s on 2 workers")


def test_a_chain_stays_on_one_worker_with_no_transfer():
    auto = auto_plan("x = f(0)\nb = x + 1\nc = b + 1\nd = c + 1\ne = d + 1\n", [1, 2, 3])
    assert len(set(auto.placement.values())) == 1
    assert [g.source.count("\n") + 1 for g in auto.groups] == [5]
    assert all(step.receives == [] for step in plan(auto.groups, Dataflow()))
    assert auto.makespan == pytest.approx(5.0) and auto.unit == "units"


def test_chain_written_with_semicolons_is_one_statement():
    auto = auto_plan("a=1; b=a+1; c=b+1; d=c+1; e=d+1\n", [1, 2])
    assert [g.source for g in auto.groups] == ["a=1; b=a+1; c=b+1; d=c+1; e=d+1"]


def test_effects_keep_source_order_on_one_worker():
    cell = ("a = g(1)\nb = g(2)\nprint(a)\nwith open('out.txt', 'w') as fh:\n    fh.write(str(b))\n"
            "notify()\nc = g(3)\n")
    auto = auto_plan(cell, [1, 2])
    graph = auto.graph
    effects = [s.index for s in graph.statements if s.effect]
    assert [graph.statements[i].first_line for i in effects] == [3, 4, 6]
    assert {auto.placement[i] for i in effects} == {auto.placement[effects[0]]}
    assert [i for i in auto.order if i in effects] == effects
    assert {(e.src, e.dst) for e in graph.edges if e.kind == ORDER} == {(2, 3), (3, 4)}
    assert not graph.statements[0].effect and not graph.statements[5].effect


def test_in_place_changes_keep_every_user_of_the_name_together():
    cell = "xs = []\nxs.append(f(1))\nys = g(2)\nn = len(xs)\n"
    auto = auto_plan(cell, [1, 2])
    graph = auto.graph
    assert graph.statements[1].mutates == {"xs"} and not graph.statements[0].setup  # changed: not setup
    users = [0, 1, 3]
    assert len({auto.placement[i] for i in users}) == 1
    assert auto.order.index(1) < auto.order.index(3)  # len(xs) after the append


def test_pinned_tags_are_respected():
    cell = "a = f(1)  # @2\nb = f(2)  # @2\nc = f(3)  # @2\nd = f(4)\n"
    auto = auto_plan(cell, [1, 2])
    assert [auto.placement[i] for i in range(3)] == [2, 2, 2]
    assert auto.placement[3] == 1


def test_a_pinned_effect_takes_the_other_effects_along():
    auto = auto_plan("a = g(1)\nprint(a)\nb = g(2)\nprint(b)  # @2\n", [1, 2])
    assert auto.placement[1] == auto.placement[3] == 2


def test_pins_by_line_argument():
    auto = auto_plan("a = f(1)\nb = f(2)\n", [1, 2, 3], pinned={1: 3, 2: 3})
    assert auto.by_line == {1: 3, 2: 3}


def test_pin_for_a_missing_worker_names_the_line():
    with pytest.raises(TagError, match="line 2: there is no worker 5"):
        auto_plan("a = 1\nb = f(a)  # @5\n", [1, 2])


def test_syntax_error_names_the_line():
    with pytest.raises(SyntaxError, match="line 3"):
        auto_plan("a = 1\nb = 2\nc = (\n", [1, 2])


def test_graph_has_raw_war_and_waw_edges():
    graph = build_graph("x = f()\ny = x + 1\nx = g()\nz = x\n", [1, 2])
    edges = {(e.src, e.dst, e.kind) for e in graph.edges}
    assert {(0, 1, RAW), (1, 2, WAR), (0, 2, WAW), (2, 3, RAW)} <= edges
    assert (0, 3, RAW) not in edges
    assert "s0 -> s1  raw x" in graph.describe() and graph.to_dot().startswith("digraph")


def test_reordering_keeps_the_meaning_of_rebinding():
    cell = "x = f()\ny = x + 1\nx = g()\nz = x\n"
    auto = auto_plan(cell, [1, 2])
    order = auto.order
    assert order.index(1) < order.index(2) < order.index(3)  # y reads the first x; z the second


def test_measured_costs_are_found_whatever_the_comments_and_spacing():
    assert statement_key("t1 = time.sleep( 0.5 )   # @1") == "t1 = time.sleep(0.5)"
    auto = auto_plan("a = f(1)  # measured\nb = f(2)\n", [1], {"a = f(1)": 3.0, "b=f(2)": 1.0})
    assert auto.makespan == pytest.approx(4.0) and auto.unit == "s"


def test_big_transfers_make_the_reader_follow_its_data():
    cell = "big = load()\nsmall = load2()\nout = big + small\n"
    costs = {"big = load()": 1.0, "small = load2()": 1.0, "out = big + small": 0.1}
    auto = auto_plan(cell, [1, 2], costs, transfer_costs={"big": 5e9, "small": 10}, bandwidth=1e9)
    assert auto.placement[2] == auto.placement[0]
    assert auto.makespan == pytest.approx(1.0 + 0.001 + 0.1, abs=1e-6)


def test_unmeasured_statements_cost_the_mean_of_measured_ones():
    auto = auto_plan("a = f(1)\nb = f(2)\nc = f(3)\n", [1], {"a = f(1)": 1.0, "b = f(2)": 3.0})
    assert auto.serial == pytest.approx(6.0)
