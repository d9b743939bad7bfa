"""The timeline exported: the standalone HTML page (``%timeline --save run.html``) and
the Chrome trace that Perfetto loads (``--save run.json``). ``save`` writes either."""

from __future__ import annotations

import html
import json
from typing import Any

from .svg import render_svg
from .timeline import PLAN_TRACK, TimelineModel, human_bytes, summary_line, who


def html_page(model: TimelineModel, title: str = "ipyworkers timeline", width: int = 900) -> str:
    """A standalone page: the drawing (the latest burst of work), its summary, wheel zoom
    and drag pan; no kernel needed."""
    svg = render_svg(model, width=width)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} svg.ipyworkers-timeline{{cursor:grab}}
.hint{{color:#57606a}}</style></head>
<body><h2>{html.escape(title)}</h2>
<p class="summary">{html.escape(summary_line(model))}</p>
<p class="hint">scroll to zoom, drag to pan, hover for details</p>
<div style="border:1px solid #d0d7de;overflow-x:auto">{svg}</div>
<script>{ZOOM_SCRIPT}</script></body></html>
"""


ZOOM_SCRIPT = """
const drawing = document.querySelector("svg.ipyworkers-timeline");
const zoom = drawing.querySelector("svg.zoom"), plot = zoom.parentElement;
let k = 1, o = 0, drag = null;
const set = () => { o = Math.min(Math.max(o, 0), 1 - 1 / k);
  zoom.setAttribute("width", (k * 100) + "%"); zoom.setAttribute("x", (-o * k * 100) + "%"); };
const at = e => { const r = plot.getBoundingClientRect(); return [(e.clientX - r.left) / r.width, r.width]; };
drawing.addEventListener("wheel", e => { e.preventDefault(); const [f] = at(e), t = o + f / k;
  k = Math.max(1, k * (e.deltaY > 0 ? 0.8 : 1.25)); o = t - f / k; set(); });
drawing.addEventListener("mousedown", e => { drag = [e.clientX, o]; });
window.addEventListener("mouseup", () => { drag = null; });
window.addEventListener("mousemove", e => { if (!drag) return; const [, w] = at(e);
  o = drag[1] - (e.clientX - drag[0]) / (w * k); set(); });
"""


def chrome_trace(model: TimelineModel) -> dict[str, Any]:
    """Chrome trace event format: a track per worker, tasks as slices, transfers as flows."""
    us = 1e6
    events: list[dict[str, Any]] = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "ipyworkers"}}]
    for row in model.rows():
        events.append({"ph": "M", "pid": 1, "tid": row, "name": "thread_name", "args": {"name": who(row)}})
        events.append({"ph": "M", "pid": 1, "tid": row, "name": "thread_sort_index", "args": {"sort_index": row}})
    for bar in model.bars.values():
        if bar.start is None:
            continue
        end = bar.end if bar.end is not None else model.last_time
        events.append({"ph": "X", "pid": 1, "tid": bar.worker, "name": bar.label or f"task #{bar.task}",
                       "cat": bar.state, "ts": bar.start * us, "dur": max(end - bar.start, 0) * us,
                       "args": {"task": bar.task, "state": bar.state, "code": bar.code, "error": bar.error,
                                "bytes_in": bar.bytes_in, "bytes_out": bar.bytes_out}})
    for index, arrow in enumerate(model.arrows, start=1):
        common = {"pid": 1, "cat": "transfer", "name": f"{arrow.name} ({human_bytes(arrow.bytes)})"}
        events.append({**common, "ph": "X", "tid": arrow.source, "ts": arrow.start * us,
                       "dur": max(arrow.end - arrow.start, 0) * us, "args": {"bytes": arrow.bytes, "to": arrow.dest}})
        events.append({**common, "ph": "s", "id": index, "tid": arrow.source, "ts": arrow.start * us})
        events.append({**common, "ph": "f", "bp": "e", "id": index, "tid": arrow.dest, "ts": arrow.end * us})
    events += _planned_tracks(model, us)
    trace: dict[str, Any] = {"traceEvents": events, "displayTimeUnit": "ms"}
    if model.dropped_bars or model.dropped_arrows or model.dropped_events:
        trace["otherData"] = {"note": "only recent tasks and transfers were kept", "tasks": model.task_count,
                              "bars_not_kept": model.dropped_bars, "arrows_not_kept": model.dropped_arrows,
                              "events_not_kept": model.dropped_events}
    return trace


def _planned_tracks(model: TimelineModel, us: float) -> list[dict[str, Any]]:
    """The plans of %%parallel runs (those in seconds), on a "worker N (plan)" track below
    each worker's own, so Perfetto shows plan and run one above the other."""
    events: list[dict[str, Any]] = []
    named: set[int] = set()
    for plan in model.plans:
        if not plan.measured:
            continue
        for slot in plan.slots:
            tid = PLAN_TRACK + slot["worker"]
            if tid not in named:
                named.add(tid)
                events.append({"ph": "M", "pid": 1, "tid": tid, "name": "thread_name",
                               "args": {"name": f"{who(slot['worker'])} (plan)"}})
                events.append({"ph": "M", "pid": 1, "tid": tid, "name": "thread_sort_index",
                               "args": {"sort_index": slot["worker"]}})
            events.append({"ph": "X", "pid": 1, "tid": tid, "name": slot.get("code") or f"line {slot['line']}",
                           "cat": "planned", "ts": (plan.at + slot["start"]) * us,
                           "dur": max(slot["finish"] - slot["start"], 0) * us,
                           "args": {"line": slot["line"], "cell": plan.cell, "setup": slot.get("setup", False)}})
    return events


def save(model: TimelineModel, path: str) -> str:
    """Write ``.html`` (standalone drawing) or ``.json`` (Chrome/Perfetto trace); returns the kind."""
    lower = path.lower()
    if lower.endswith((".html", ".htm")):
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(html_page(model))
        return "html"
    if lower.endswith(".json"):
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(chrome_trace(model), fh)
        return "json"
    raise ValueError(f"cannot save a timeline as {path!r}: use a name ending in .html or .json")
