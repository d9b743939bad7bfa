"""The notebooks run top to bottom on a real kernel, as `make demo` runs the tour."""

from __future__ import annotations

import sys
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


def test_maps_notebook_runs_pyrallels_examples():
    text = summarize(execute("maps.ipynb"))
    assert "5000 lines processed, e.g. LINE 999 OF THE FILE" in text
    assert "mapreduce = 49995000 in" in text
    assert "result 16" in text
    assert "[1024, 27]" in text and "[10, 21, 32]" in text
    assert text.index("slept 0.1 s") < text.index("slept 0.6 s")
    assert "ValueError: item 13 is bad" in text
