"""The notebooks run top to bottom on a real kernel, as `make demo` runs the tour."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))

from run import summarize  # noqa: E402


def execute(name: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return notebook


@pytest.mark.parametrize("builder, name", [("make_tour", "tour.ipynb"), ("make_pipeline", "pipeline.ipynb"),
                                           ("make_teaching", "teaching.ipynb"),
                                           ("make_maps", "maps.ipynb")])
def test_committed_notebook_matches_its_generator(builder, name):
    cells = __import__(builder).CELLS
    committed = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert [c.source for c in committed.cells] == [source for _, source in cells]


def test_tour_runs_and_shows_what_the_readme_promises():
    text = summarize(execute("tour.ipynb"))
    assert "tick 4" in text
    assert "<figure>" in text
    assert "send(datadir, to=2)" in text
    assert "'/data/x.csv/data/y.csv'" in text
    assert "ZeroDivisionError" in text
    assert "worker 1 still has values = [1, 2, 0]" in text


def test_pipeline_notebook_runs():
    text = summarize(execute("pipeline.ipynb"))
    assert "total = " in text
    assert "11200 lines with ERROR" in text
    assert "'ERROR': 11200" in text


def test_teaching_notebook_runs_and_shows_what_it_teaches():
    started = time.monotonic()
    notebook = execute("teaching.ipynb")
    elapsed = time.monotonic() - started
    text = summarize(notebook)
    assert "import os" in text and "send(datadir, to=2)" in text and "[worker 2] all done" in text
    assert "'/data/x.csv/data/y.csv'" in text
    assert re.search(r"predicted makespan \d\.\d\d units on 2 workers", text), "before any measurement: equal weights"
    assert re.search(r"\[worker \d\] a: 201 b: 171 both: 372", text)
    assert re.search(r"predicted makespan 1\.\d\d s on 2 workers", text), "measured: about 1.1 s"
    plan = re.search(r"plan vs actual, cell \[\d+\]: ([\d.]+) s vs ([\d.]+) s", text)
    assert plan and abs(float(plan[1]) - float(plan[2])) <= 0.25 * float(plan[2]), text
    drawings = [o["data"]["text/html"] for c in notebook.cells for o in c.get("outputs", [])
                if "text/html" in o.get("data", {}) and "ipyworkers-timeline" in o["data"]["text/html"]]
    assert drawings and drawings[-1].count('class="planned"') >= 8
    assert "worker_1.py, worker_2.py, run.py" in text and "send(a3, to=" in text and "both = 372" in text
    assert re.search(r"about \d+ µs per message", text) and "<figure>" in text
    assert "ZeroDivisionError: division by zero" in text
    assert re.search(r"input 'ratio' is unavailable because task #\d+ on worker 1 failed "
                     r"\(ZeroDivisionError: division by zero\)", text)
    assert re.search(r"input 'scaled' is unavailable because task #\d+ on worker 1 failed", text)
    assert "2.8284" in text
    assert elapsed < 90, f"the teaching notebook took {elapsed:.0f} s"


def test_maps_notebook_runs_pyrallels_examples():
    text = summarize(execute("maps.ipynb"))
    assert "5000 lines processed, e.g. LINE 999 OF THE FILE" in text
    assert "mapreduce = 49995000 in" in text
    assert "result 16" in text
    assert "[1024, 27]" in text and "[10, 21, 32]" in text
    assert text.index("slept 0.1 s") < text.index("slept 0.6 s")
    assert "ValueError: item 13 is bad" in text
