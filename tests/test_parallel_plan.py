"""Tagged cells: splitting, grouping, and the plan's sends and receives."""

from __future__ import annotations

import pytest

from ipyworkers.plan.dataflow import Dataflow
from ipyworkers.plan.parallel import TagError, plan, render, split

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


def test_first_statement_without_tag_needs_default():
    with pytest.raises(TagError, match="line 1: the first statement has no worker tag"):
        split("a = 1\nb = 2 # @1", [1, 2])
    assert split("a = 1\nb = 2 # @1", [1, 2], default=2)[0].worker == 2


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
