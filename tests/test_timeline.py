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
    width = r'class="task running"[^>]* width="([\d.]+)%"'
    early = float(re.search(width, render_svg(model, now=1.0, window=(0, 4)))[1])
    late = float(re.search(width, render_svg(model, now=3.0, window=(0, 4)))[1])
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
    assert html_page(two_tasks_and_a_transfer()).count('class="ipyworkers-timeline"') == 1


def test_saving_with_an_unknown_extension_is_a_clear_error(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="ending in .html or .json"):
        save(two_tasks_and_a_transfer(), str(tmp_path / "run.png"))


def test_chrome_trace_of_an_empty_run_is_valid():
    trace = chrome_trace(TimelineModel(origin=0.0))
    assert trace["traceEvents"][0]["ph"] == "M"


# -- a %%parallel run's plan against what happened ---------------------------------------------


def planned_run(unit: str = "s", plan_first: bool = False) -> TimelineModel:
    """Two statements planned at 0-1 s on worker 1 and 0-1.2 s on worker 2 (submitted at
    100.0); they ran 100.1-101.1 and 100.1-101.5."""
    plan = ev.Event(ev.PLAN, 100.0, data={
        "cell": 4, "auto": True, "workers": [1, 2], "tasks": [1, 2], "makespan": 1.2, "serial": 2.2, "unit": unit,
        "statements": {1: ["a = f()"], 2: ["b = g()"]},
        "slots": [{"line": 1, "worker": 1, "start": 0.0, "finish": 1.0, "setup": False, "code": "a = f()"},
                  {"line": 2, "worker": 2, "start": 0.0, "finish": 1.2, "setup": False, "code": "b = g()"}]})
    ran = [
        ev.Event(ev.WORKER_STARTED, 100.0, worker=1), ev.Event(ev.WORKER_STARTED, 100.0, worker=2),
        ev.Event(ev.TASK_QUEUED, 100.0, worker=1, task=1, data={"label": "a = f()"}),
        ev.Event(ev.TASK_QUEUED, 100.0, worker=2, task=2, data={"label": "b = g()"}),
        ev.Event(ev.TASK_STARTED, 100.1, worker=1, task=1), ev.Event(ev.TASK_STARTED, 100.1, worker=2, task=2),
        ev.Event(ev.TASK_FINISHED, 101.1, worker=1, task=1),
    ]
    last = ev.Event(ev.TASK_FINISHED, 101.5, worker=2, task=2)
    return run_of(*([plan, *ran, last] if plan_first else [*ran, plan, last]))


def test_the_plan_is_drawn_as_hollow_bars_over_what_ran():
    svg = render_svg(planned_run())
    planned = re.findall(r'<rect class="planned"[^>]*>', svg)
    assert len(planned) == 2 and all('fill="none"' in r and "stroke-dasharray" in r for r in planned)
    assert "planned: line 2 on worker 2" in svg and "b = g()" in svg
    ET.fromstring(svg)


def test_the_summary_compares_predicted_and_actual_wall_time_and_speed_up():
    for plan_first in (False, True):  # the plan event may come after some of its tasks ended
        model = planned_run(plan_first=plan_first)
        plan = model.plan_summary()
        assert plan["done"] and plan["predicted"] == 1.2 and abs(plan["actual"] - 1.5) < 1e-9
        assert abs(plan["predicted_speedup"] - 2.2 / 1.2) < 1e-9 and abs(plan["actual_speedup"] - 2.4 / 1.5) < 1e-9
        assert "plan vs actual, cell [4]: 1.20 s vs 1.50 s, speed-up 1.83× vs 1.60×" in summary_line(model)


def test_a_plan_made_before_anything_was_measured_is_not_drawn_but_summarised():
    model = planned_run(unit="units")
    assert 'class="planned"' not in render_svg(model)
    assert "plan of cell [4]: 1.20 units (nothing measured yet: equal weights), actual 1.50 s" in summary_line(model)


def test_the_html_page_and_the_trace_carry_the_plan(tmp_path):
    page = html_page(planned_run())
    assert "plan vs actual, cell [4]" in page and 'class="planned"' in page and "planned (%%parallel)" in page
    trace = chrome_trace(planned_run())
    names = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "thread_name"}
    assert names[1001] == "worker 1 (plan)" and names[1002] == "worker 2 (plan)"
    planned = [e for e in trace["traceEvents"] if e.get("cat") == "planned"]
    assert sorted((e["tid"], e["name"], round(e["dur"])) for e in planned) == [
        (1001, "a = f()", 1_000_000), (1002, "b = g()", 1_200_000)]


# -- a long session: bounded memory, recent work still right ------------------------------------


def long_session(log: ev.EventLog, tasks: int, *, then=None) -> None:
    """Tasks 1 ms apart on two workers, a transfer for every other one; ``then(i)`` after task i."""
    o = log.origin
    for i in range(tasks):
        t, w = o + i * 1e-3, 1 + i % 2
        log.record(ev.TASK_QUEUED, worker=w, task=i, at=t)
        log.record(ev.TASK_STARTED, worker=w, task=i, at=t + 1e-4)
        if i % 2:
            log.record(ev.TRANSFER, worker=w, task=i, at=t + 2e-4, name="x", source=3 - w, dest=w, bytes=1000,
                       start=t + 1e-4, end=t + 2e-4, version=i - 1)
        if i == tasks - 2:
            log.record(ev.TASK_FAILED, worker=w, task=i, at=t + 5e-4, error="ValueError: late")
        elif i < tasks - 1:
            log.record(ev.TASK_FINISHED, worker=w, task=i, at=t + 5e-4)
        if then is not None:
            then(i)


def test_a_hundred_thousand_tasks_keep_memory_bounded_and_recent_work_right():
    import gc
    import sys

    from ipyworkers.notebook.timeline import MAX_BARS, MAX_KEPT_ARROWS

    blocks: dict[int, int] = {}

    def measure(i: int) -> None:
        if i + 1 in (20_000, 100_000):
            gc.collect()
            blocks[i + 1] = sys.getallocatedblocks() - blocks[0]

    gc.collect()
    blocks[0] = sys.getallocatedblocks()  # live objects; tracemalloc would triple the run time here
    log = ev.EventLog()
    model = TimelineModel(log.origin)
    log.subscribe(model.add)  # as the dashboard does
    long_session(log, 100_000, then=measure)

    assert len(log.events()) <= ev.MAX_EVENTS and log.recorded == len(log) + log.dropped
    ended = [bar for bar in model.bars.values() if bar.end is not None]
    assert MAX_BARS * 0.9 <= len(ended) <= MAX_BARS and len(model.arrows) <= MAX_KEPT_ARROWS
    assert blocks[100_000] < 1.5 * blocks[20_000], blocks  # bounded, where keeping all would be ~5×

    recent = {task: model.bars[task].state for task in range(99_990, 100_000)}
    assert recent == {**{t: "done" for t in range(99_990, 99_998)}, 99_998: "failed", 99_999: "running"}
    assert min(ended, key=lambda bar: bar.end).task == 100_000 - len(ended) - 1  # the oldest kept: by end time
    summary = model.summary()
    assert summary["tasks"] == 100_000 and summary["bytes"] == 50_000 * 1000  # running totals count all
    assert "drawing the latest" in summary_line(model)

    svg = render_svg(model, window=(99.99, 100.0))
    root = ET.fromstring(svg)
    drawn = {r.get("data-task"): r.get("class") for r in root.iter(f"{SVG}rect") if r.get("data-task")}
    assert drawn["99997"] == "task done" and drawn["99998"] == "task failed" and drawn["99999"] == "task running"
    whole = render_svg(model)  # the extent is what is kept: the last ~10 s, not 100 s
    ticks = [float(t.text[:-2]) for t in ET.fromstring(whole).iter(f"{SVG}text") if (t.text or "").endswith(" s")]
    assert ticks and min(ticks) >= 89 and 'data-task="99999"' in whole


def test_memory_in_bytes_stops_growing_once_the_caps_are_reached():
    """tracemalloc, on caps a fifth of the defaults: 20,000 tasks then stand for 100,000."""
    import tracemalloc

    memory: dict[int, int] = {}
    tracemalloc.start()
    try:
        log = ev.EventLog(max_events=ev.MAX_EVENTS // 5)
        model = TimelineModel(log.origin, max_bars=2_000, max_arrows=1_000)
        log.subscribe(model.add)
        long_session(log, 20_000, then=lambda i: i + 1 in (4_000, 20_000) and memory.setdefault(
            i + 1, tracemalloc.get_traced_memory()[0]))
    finally:
        tracemalloc.stop()
    assert memory[20_000] < 1.5 * memory[4_000], memory  # keeping all would be ~5×


def test_a_task_running_since_long_ago_is_never_pruned():
    model = TimelineModel(origin=0.0, max_bars=100, max_arrows=50)
    model.add(ev.Event(ev.TASK_QUEUED, 0.0, worker=1, task=0, data={"code": "train()"}))
    model.add(ev.Event(ev.TASK_STARTED, 0.5, worker=1, task=0))
    for i in range(1, 5_000):
        t = 1.0 + i * 0.01
        model.add(ev.Event(ev.TASK_QUEUED, t, worker=2, task=i))
        model.add(ev.Event(ev.TASK_STARTED, t, worker=2, task=i))
        model.add(ev.Event(ev.TASK_FINISHED, t + 0.005, worker=2, task=i))
        model.add(ev.Event(ev.TRANSFER, t, worker=2, task=i, data={
            "name": "y", "source": 1, "dest": 2, "bytes": 1, "start": t, "end": t + 0.001}))
    assert model.bars[0].state == "running" and model.running == {0}
    assert len(model.bars) <= 101 and len(model.arrows) <= 50
    assert model.dropped_bars >= 4_899 and model.first_time == 0.0  # the running task still starts the drawing
    svg = render_svg(model)
    assert re.search(r'class="task running" data-task="0"', svg)
    assert round(model.summary()["busy"][1], 2) == 1.0


def test_pruning_keeps_the_latest_ended_by_end_time_and_waiting_tasks():
    model = TimelineModel(origin=0.0, max_bars=10)
    model.add(ev.Event(ev.TASK_QUEUED, 0.0, worker=1, task=1000))  # waits throughout
    model.add(ev.Event(ev.TASK_QUEUED, 0.0, worker=2, task=2000))
    model.add(ev.Event(ev.TASK_STARTED, 0.0, worker=2, task=2000))
    for i in range(30):
        model.add(ev.Event(ev.TASK_QUEUED, 1.0 + i, worker=1, task=i))
        model.add(ev.Event(ev.TASK_STARTED, 1.0 + i, worker=1, task=i))
        model.add(ev.Event(ev.TASK_FINISHED, 1.5 + i, worker=1, task=i))
        if i == 20:
            model.add(ev.Event(ev.TASK_FINISHED, 99.0, worker=2, task=2000))  # ends after all of them
    kept = {task for task, bar in model.bars.items() if bar.end is not None}
    assert 2000 in kept and 1000 in model.bars and model.bars[1000].state == "waiting"
    assert 9 <= len(kept) <= 10 and kept - {2000} == set(range(30 - len(kept) + 1, 30))
    assert model.first_time == 0.0  # the waiting task is still drawn from where it was queued


def test_a_model_built_from_a_log_counts_what_the_log_dropped():
    log = ev.EventLog(max_events=1_000)
    long_session(log, 2_000)
    model = TimelineModel.from_log(log)
    assert log.dropped > 0 and model.dropped_events == log.dropped
    assert model.summary()["tasks"] == 2_000 and model.summary()["bytes"] == 1_000 * 1000
    assert model.bars[1_999].state == "running" and model.bars[1_998].state == "failed"
    trace = chrome_trace(model)
    assert trace["otherData"]["tasks"] == 2_000
    assert "drawing the latest" in summary_line(model)


# -- the timeline as a run, not a session ----------------------------------------------------------


def task_events(task: int, worker: int, start: float, end: float | None, kind: str = ev.TASK_FINISHED,
                **data) -> list[ev.Event]:
    """A task queued 50 ms before it starts on ``worker`` (times after the origin, 100.0)."""
    events = [ev.Event(ev.TASK_QUEUED, 100 + start - 0.05, worker=worker, task=task, data=data),
              ev.Event(ev.TASK_STARTED, 100 + start, worker=worker, task=task)]
    if end is not None:
        events.append(ev.Event(kind, 100 + end, worker=worker, task=task, data={"error": "ValueError: bad"}
                               if kind == ev.TASK_FAILED else {}))
    return events


def typed_then_mapped() -> TimelineModel:
    """A cell at 1-3 s, minutes of typing, then a 6 s map at 150-156 s on two workers."""
    events = [*task_events(1, 1, 1.0, 3.0, label="x = load()", code="x = load()", cell=2)]
    for i in range(12):
        a = i * 10
        events += task_events(10 + i, 1 + i % 2, 150.0 + (i // 2), 151.0 + (i // 2), label=f"map f[{a}:{a + 10}]",
                              code=f"f of items {a}..{a + 9} (10 items)", function="f", items=10)
    return run_of(*events)


def test_the_latest_burst_is_cut_at_an_idle_gap_long_for_the_burst():
    from ipyworkers.notebook.runs import latest_burst

    assert latest_burst([]) is None
    assert latest_burst([(0, 3), (150, 156)]) == (150, 156)  # minutes of typing
    assert latest_burst([(0, 3), (8, 12)]) == (0, 12)  # a short pause between cells
    assert latest_burst([(0, 100), (130, 400)]) == (0, 400)  # 30 s inside a 270 s run
    assert latest_burst([(0, 100), (130, 150)]) == (130, 150)
    assert latest_burst([(0, 200), (1, 2), (150, 156)]) == (0, 200)  # a long task spans the gap
    assert latest_burst([(150, 156), (0, 3), (1, 2.5)]) == (150, 156)  # in any order


def test_the_default_window_is_the_latest_burst_plus_what_still_runs():
    from ipyworkers.notebook.runs import default_window

    model = typed_then_mapped()
    start, end = default_window(model)
    assert 149.9 <= start < 150.0 and end == 156.0
    root = ET.fromstring(render_svg(model))
    drawn = {r.get("data-task") for r in root.iter(f"{SVG}rect") if r.get("data-task")}
    assert "1" not in drawn and "21" in drawn  # the early cell is off screen; the map fills it
    ticks = [t.text for t in root.iter(f"{SVG}text") if (t.text or "").endswith(" s")]
    assert ticks and all(150 <= float(t[:-2]) <= 156 for t in ticks)

    model.add(ev.Event(ev.TASK_QUEUED, 101.0, worker=2, task=99))
    model.add(ev.Event(ev.TASK_STARTED, 102.0, worker=2, task=99))  # running since 2 s
    start, end = default_window(model, now=158.0)
    assert (round(start, 6), end) == (0.95, 158.0)


def test_the_summary_is_for_the_window_shown_and_names_the_session_totals():
    from ipyworkers.notebook.runs import window_summary

    model = typed_then_mapped()
    line = summary_line(model)
    assert "12 tasks" in line and "wall 6.00 s" in line and "speed-up 2.00×" in line and "busy w1 100%, w2 100%" in line
    assert "session 13 tasks" in line
    whole = window_summary(model, (0.0, 156.0))
    assert whole.tasks == 13 and round(whole.wall) == 155 and whole.speedup < 0.2  # what users saw before
    assert "wall 2.00 s" in summary_line(model, window=(0.0, 10.0))


def test_bars_are_coloured_by_cell_or_function_and_state_is_fill_or_border():
    from ipyworkers.notebook.timeline import PALETTE

    model = run_of(*task_events(1, 1, 0.0, 1.0, label="a = f()", cell=7),
                   *task_events(2, 2, 0.0, 1.0, ev.TASK_FAILED, label="b = g()", cell=7),
                   *task_events(3, 1, 1.0, 2.0, label="c = h()", cell=8),
                   *task_events(4, 2, 1.0, None, label="map f[0:10]", function="f", items=10))
    rects = {r.get("data-task"): r for r in ET.fromstring(render_svg(model, width=900)).iter(f"{SVG}rect")
             if r.get("data-task")}
    assert rects["1"].get("fill") == rects["2"].get("fill") == PALETTE[0]  # In[7], whatever its state
    assert rects["3"].get("fill") == PALETTE[1] and rects["4"].get("fill") == PALETTE[2]
    assert rects["2"].get("class") == "task failed" and rects["2"].get("stroke") == "#cf222e"
    assert rects["4"].get("class") == "task running" and rects["4"].get("fill-opacity") == "0.6"
    legend = [t.text for g in ET.fromstring(render_svg(model)).iter(f"{SVG}g") if g.get("class") == "legend"
              for t in g.iter(f"{SVG}text")]
    assert legend[:3] == ["In[7]", "In[8]", "f()"] and {"done", "running", "failed"} <= set(legend)


def test_the_drawing_fills_its_container_with_text_of_a_fixed_size():
    svg = render_svg(typed_then_mapped(), width=400)
    root = ET.fromstring(svg)
    assert root.get("width") == "100%" and root.get("viewBox") is None and "min-width:400px" in root.get("style")
    assert root.get("font-size") == "11"
    tasks = [r for r in root.iter(f"{SVG}rect") if r.get("data-task")]
    assert tasks and all(r.get("x").endswith("%") and r.get("width").endswith("%") for r in tasks)


def test_bar_labels_only_where_they_fit():
    model = run_of(*task_events(1, 1, 0.0, 9.0, label="long = enough()", cell=3),
                   *task_events(2, 2, 9.0, 9.1, label="short = bar()", cell=3))
    labels = [t.text for t in ET.fromstring(render_svg(model, width=400)).iter(f"{SVG}text")
              if t.get("class") == "bar-label"]
    assert labels == ["long = enough()"]


def test_worker_deaths_and_restarts_are_marked_on_their_rows():
    model = run_of(ev.Event(ev.WORKER_STARTED, 100.0, worker=1), ev.Event(ev.WORKER_STARTED, 100.0, worker=2),
                   *task_events(1, 2, 0.5, 2.0, ev.TASK_FAILED, label="boom()"),
                   ev.Event(ev.WORKER_DIED, 102.0, worker=2, data={"reason": "killed by SIGKILL"}),
                   ev.Event(ev.WORKER_STOPPED, 102.5, worker=1),
                   ev.Event(ev.WORKER_STARTED, 103.0, worker=2),
                   *task_events(2, 2, 3.5, 4.0))
    marks = {g.get("class"): g for g in ET.fromstring(render_svg(model)).iter(f"{SVG}g")
             if g.get("class", "").startswith("mark")}
    assert set(marks) == {"mark died", "mark restarted"}  # worker 1 stopped, never restarted: no mark
    assert "worker 2 died at 2.00 s: killed by SIGKILL" in marks["mark died"].find(f"{SVG}title").text
    assert [t.text for t in marks["mark died"].iter(f"{SVG}text")] == ["died"]


def test_tooltips_are_html_revealed_on_hover_and_a_batch_gives_its_items():
    svg = render_svg(typed_then_mapped())
    root = ET.fromstring(svg)
    tips = [g for g in root.iter(f"{SVG}g") if g.get("class") == "tip"]
    assert len(tips) >= 12 and "<script" not in svg
    box = tips[0].find(f"{SVG}foreignObject")
    assert box.get("visibility") == "hidden" and ".tip:hover foreignObject{visibility:visible}" in svg
    tip = box.find("{http://www.w3.org/1999/xhtml}div").find("{http://www.w3.org/1999/xhtml}div")
    text = "".join(tip.itertext())
    assert "f(): task #" in text and "(10 items)" in text and "f of items" in text
    assert tip.find("{http://www.w3.org/1999/xhtml}pre") is not None  # the code, as code


def test_lane_labels_never_overlap_and_those_dropped_are_counted():
    from ipyworkers.notebook.layout import GAP, LaneLabel, place_lane

    labels = [LaneLabel(10, "x 8 B"), LaneLabel(14, "y 8 B"), LaneLabel(18, "z 8 B"), LaneLabel(100, "w 8 B"),
              LaneLabel(290, "last 1.0 MiB"), LaneLabel(16, "died", priority=1)]
    placed = sorted(place_lane(labels, 300), key=lambda p: p.left)
    assert [p.text for p in placed] == ["died", "w 8 B", "last 1.0 MiB"]  # the mark first; x, y, z dropped
    assert all(a.right + GAP <= b.left for a, b in zip(placed, placed[1:], strict=False))
    assert placed[-1].anchor == "end" and placed[-1].right <= 300
    crowded = place_lane([LaneLabel(10 + i, f"v{i} 8 B") for i in range(5)], 300)
    assert [p.text for p in crowded] == ["v0 8 B +4"]


def test_arrow_labels_sit_in_the_lane_under_the_bars():
    from ipyworkers.notebook.geometry import AXIS_HEIGHT, BAND, ROW_HEIGHT

    root = ET.fromstring(render_svg(two_tasks_and_a_transfer()))
    (label,) = [t for g in root.iter(f"{SVG}g") if g.get("class") == "transfer" for t in g.iter(f"{SVG}text")]
    worker_2 = AXIS_HEIGHT + 2 * ROW_HEIGHT
    assert label.text.startswith("x ") and worker_2 + BAND < float(label.get("y")) <= worker_2 + ROW_HEIGHT


def test_the_saved_page_shows_the_latest_run_with_its_legend_and_tooltips():
    page = html_page(typed_then_mapped())
    assert "wall 6.00 s" in page and "session 13 tasks" in page
    assert page.count('class="ipyworkers-timeline"') == 1 and 'width="100%"' in page
    assert "f()" in page and "<foreignObject" in page and "(10 items)" in page
    assert 'data-task="1"' not in page  # the early cell: before the burst shown


def test_tasks_are_grouped_by_cell_then_function_then_kind_of_move():
    from ipyworkers.notebook.timeline import group_of

    assert group_of({"cell": 7, "function": "f", "label": "x = 1"}) == "In[7]"
    assert group_of({"function": "f", "label": "map f[0:10]"}) == "f()"
    assert group_of({"label": "send x, y"}) == "send" and group_of({"label": "y = x + 1"}) == "code"
