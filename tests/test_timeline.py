"""The timeline: events in, shapes out (no browser), and the exports."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from ipyworkers.kernel import events as ev
from ipyworkers.notebook.timeline import (
    TimelineModel,
    chrome_trace,
    html_page,
    render_svg,
    render_text,
    save,
    summary_line,
)

SVG = "{http://www.w3.org/2000/svg}"


def run_of(*events: ev.Event) -> TimelineModel:
    return TimelineModel.from_events(events, origin=100.0)


def two_tasks_and_a_transfer() -> TimelineModel:
    return run_of(
        ev.Event(ev.WORKER_STARTED, 100.0, worker=1),
        ev.Event(ev.WORKER_STARTED, 100.0, worker=2),
        ev.Event(ev.TASK_QUEUED, 100.1, worker=1, task=1, data={"label": "x = make()", "code": "x = make()"}),
        ev.Event(ev.TASK_QUEUED, 100.1, worker=2, task=2, data={"label": "y = x + 1", "code": "y = x + 1"}),
        ev.Event(ev.TASK_STARTED, 100.2, worker=1, task=1),
        ev.Event(ev.TASK_FINISHED, 101.2, worker=1, task=1),
        ev.Event(ev.TRANSFER, 101.3, worker=2, task=2,
                 data={"name": "x", "source": 1, "dest": 2, "bytes": 8_000_000, "start": 101.2, "end": 101.3,
                       "version": 1}),
        ev.Event(ev.TASK_STARTED, 101.3, worker=2, task=2),
        ev.Event(ev.TASK_FAILED, 101.8, worker=2, task=2, data={"error": "ValueError: bad"}),
    )


def test_model_has_a_bar_per_task_with_state_and_bytes():
    model = two_tasks_and_a_transfer()
    one, two = model.bars[1], model.bars[2]
    assert (one.worker, one.state, round(one.start, 3), round(one.end, 3)) == (1, "done", 0.2, 1.2)
    assert (two.state, two.error) == ("failed", "ValueError: bad")
    assert one.bytes_out == 8_000_000 and two.bytes_in == 8_000_000
    assert model.rows() == [0, 1, 2]


def test_summary_counts_busy_time_bytes_and_speedup():
    summary = two_tasks_and_a_transfer().summary()
    assert summary["tasks"] == 2 and summary["bytes"] == 8_000_000
    assert round(summary["wall"], 3) == 1.6
    assert round(summary["speedup"], 3) == round(1.5 / 1.6, 3)
    assert "2 tasks" in summary_line(two_tasks_and_a_transfer())


def test_svg_draws_rows_bars_coloured_by_state_and_the_transfer_arrow():
    svg = render_svg(two_tasks_and_a_transfer(), width=800)
    root = ET.fromstring(svg)
    rects = [r for r in root.iter(f"{SVG}rect") if "task" in r.get("class", "")]
    assert {r.get("class") for r in rects} == {"task done", "task failed"}
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "row-label"]
    assert labels == ["kernel", "worker 1", "worker 2"]
    transfers = [g for g in root.iter(f"{SVG}g") if g.get("class") == "transfer"]
    assert len(transfers) == 1
    tip = transfers[0].find(f"{SVG}title").text
    assert "x: worker 1 → worker 2" in tip and "7.6 MiB" in tip
    done = next(r for r in rects if r.get("class") == "task done")
    assert "x = make()" in done.find(f"{SVG}title").text


def test_running_task_grows_until_now():
    model = run_of(ev.Event(ev.TASK_QUEUED, 100.0, worker=1, task=1),
                   ev.Event(ev.TASK_STARTED, 100.5, worker=1, task=1))
    early = float(re.search(r'class="task running"[^>]*width="([\d.]+)"', render_svg(model, now=1.0, window=(0, 4)))[1])
    late = float(re.search(r'class="task running"[^>]*width="([\d.]+)"', render_svg(model, now=3.0, window=(0, 4)))[1])
    assert late > early * 3


def test_ten_thousand_tiny_tasks_draw_in_bounded_size():
    events = []
    for i in range(10_000):
        t = 100 + i * 1e-4
        events += [ev.Event(ev.TASK_QUEUED, t, worker=1 + i % 2, task=i),
                   ev.Event(ev.TASK_STARTED, t, worker=1 + i % 2, task=i),
                   ev.Event(ev.TASK_FINISHED, t + 5e-5, worker=1 + i % 2, task=i)]
    svg = render_svg(run_of(*events), width=900)
    assert svg.count('class="task done"') <= 2 * 900
    assert "tasks" in svg


def test_many_small_messages_are_aggregated():
    events = [ev.Event(ev.TRANSFER, 100 + i * 1e-3, worker=2, data={
        "name": "chunk", "source": 1, "dest": 2, "bytes": 100, "start": 100 + i * 1e-3, "end": 100 + i * 1e-3 + 1e-4})
        for i in range(2000)]
    svg = render_svg(run_of(*events), width=900)
    assert svg.count('class="transfer"') <= 400
    assert "× chunk" in svg


def test_text_timeline_for_plain_ipython():
    text = render_text(two_tasks_and_a_transfer(), width=40)
    lines = text.splitlines()
    assert lines[1].startswith("worker 1") and "#" in lines[1]
    assert lines[2].startswith("worker 2") and "x" in lines[2]


def test_chrome_trace_has_a_track_per_worker_and_flow_events(tmp_path):
    path = tmp_path / "run.json"
    assert save(two_tasks_and_a_transfer(), str(path)) == "json"
    trace = json.loads(path.read_text())
    events = trace["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    assert names == {0: "kernel", 1: "worker 1", 2: "worker 2"}
    slices = [e for e in events if e["ph"] == "X" and e.get("cat") != "transfer"]
    assert {e["tid"] for e in slices} == {1, 2}
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in slices)
    starts = [e for e in events if e["ph"] == "s"]
    ends = [e for e in events if e["ph"] == "f"]
    assert [(s["tid"], s["id"]) for s in starts] == [(1, 1)] and [(f["tid"], f["id"]) for f in ends] == [(2, 1)]


def test_html_export_is_a_standalone_page_with_the_drawing(tmp_path):
    path = tmp_path / "run.html"
    assert save(two_tasks_and_a_transfer(), str(path)) == "html"
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and 'class="task done"' in page
    assert "speed-up" in page and "<script>" in page
    assert html_page(two_tasks_and_a_transfer()).count("<svg") == 1


def test_saving_with_an_unknown_extension_is_a_clear_error(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="ending in .html or .json"):
        save(two_tasks_and_a_transfer(), str(tmp_path / "run.png"))


def test_chrome_trace_of_an_empty_run_is_valid():
    trace = chrome_trace(TimelineModel(origin=0.0))
    assert trace["traceEvents"][0]["ph"] == "M"
