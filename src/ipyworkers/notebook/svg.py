"""The timeline drawn and exported: one SVG document (the live widget and the HTML export
share it), the standalone HTML page, and the Chrome trace that Perfetto loads. Pure:
shapes from a ``TimelineModel``, nothing else (``save`` writes the file).

A row per worker and one for the kernel; a bar per task coloured by state; arrows for
transfers; a "now" line; the plan of each ``%%parallel`` run as hollow bars over what
ran; and a ``<title>`` on every shape, which browsers show on hover.
"""

from __future__ import annotations

import html
import json
from typing import Any

from .timeline import (
    AXIS_HEIGHT,
    COLORS,
    KERNEL,
    LABEL_WIDTH,
    MAX_ARROWS,
    PLAN_TRACK,
    PLANNED,
    ROW_HEIGHT,
    Arrow,
    Bar,
    TimelineModel,
    extent,
    human_bytes,
    human_seconds,
    summary_line,
    who,
)


def render_svg(model: TimelineModel, now: float | None = None, window: tuple[float, float] | None = None,
               width: int = 900) -> str:
    """The timeline as one SVG document; ``window`` (seconds from the origin) zooms."""
    now = model.last_time if now is None else now
    t0, t1 = window if window is not None else extent(model, now)
    t1 = max(t1, t0 + 1e-6)
    rows = model.rows()
    plot = width - LABEL_WIDTH - 10
    height = AXIS_HEIGHT + ROW_HEIGHT * len(rows) + 4
    x = _scale(t0, t1, plot)
    row_y = {r: AXIS_HEIGHT + i * ROW_HEIGHT for i, r in enumerate(rows)}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="ipyworkers-timeline" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        _defs(),
        *_axis(t0, t1, plot, height),
        *_row_labels(rows, row_y, model.dead),
        f'<g transform="translate({LABEL_WIDTH},0)">',
        *_bars(model, rows, row_y, x, t0, t1, now, plot),
        *_planned(model, row_y, x, t0, t1),
        *_arrows(model, row_y, x, t0, t1),
    ]
    if t0 <= now <= t1 and model.running:
        parts.append(f'<line class="now" x1="{x(now):.1f}" x2="{x(now):.1f}" y1="{AXIS_HEIGHT - 4}" '
                     f'y2="{height}" stroke="#bf3989" stroke-dasharray="3,2"/>')
    parts += ["</g>", "</svg>"]
    return "".join(parts)


def _scale(t0: float, t1: float, plot: int):
    factor = plot / (t1 - t0)
    return lambda t: (t - t0) * factor


def _defs() -> str:
    return ('<defs><marker id="ipw-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" '
            'markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#6e40c9"/>'
            '</marker></defs>')


def _axis(t0: float, t1: float, plot: int, height: int) -> list[str]:
    out = []
    step = _tick_step(t1 - t0)
    tick = (int(t0 / step) + 1) * step if t0 > 0 else 0.0
    while tick <= t1:
        px = LABEL_WIDTH + (tick - t0) * plot / (t1 - t0)
        out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{AXIS_HEIGHT - 6}" y2="{height}" stroke="#eaeef2"/>'
                   f'<text x="{px:.1f}" y="{AXIS_HEIGHT - 9}" text-anchor="middle" fill="#57606a">'
                   f'{_tick_label(tick, step)}</text>')
        tick += step
    return out


def _tick_step(span: float) -> float:
    for step in (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60,
                 120, 300, 600, 1800, 3600):
        if span / step <= 10:
            return step
    return 7200.0


def _tick_label(t: float, step: float) -> str:
    if step < 1e-3:
        return f"{t * 1e3:.1f} ms"
    if step < 1:
        return f"{t * 1e3:.0f} ms" if t < 1 else f"{t:.2f} s"
    return f"{t:.0f} s"


def _row_labels(rows: list[int], row_y: dict[int, int], dead: dict[int, float]) -> list[str]:
    out = []
    for row in rows:
        name = "kernel" if row == KERNEL else f"worker {row}"
        colour = "#cf222e" if row in dead else "#24292f"
        suffix = " ✝" if row in dead else ""
        y = row_y[row]
        out.append(f'<rect x="0" y="{y}" width="100%" height="{ROW_HEIGHT}" fill="{"#f6f8fa" if row % 2 else "#fff"}"/>'
                   f'<text class="row-label" x="6" y="{y + ROW_HEIGHT / 2 + 4}" fill="{colour}">{name}{suffix}</text>')
    return out


def _bars(model: TimelineModel, rows, row_y, x, t0, t1, now, plot) -> list[str]:
    """One rect per task; where tasks are narrower than a pixel, one rect per pixel (level of detail)."""
    out: list[str] = []
    crowded: dict[tuple[int, int, str], list[Bar]] = {}
    for bar in model.bars.values():
        if bar.worker not in row_y:
            continue
        start = bar.start if bar.start is not None else bar.queued
        end = bar.end if bar.end is not None else now
        if end < t0 or start > t1:
            continue
        if bar.start is None and bar.state == "waiting":
            out.append(_waiting(bar, row_y, x, t0, t1, now))
            continue
        x0, x1 = x(max(start, t0)), x(min(end, t1))
        if x1 - x0 < 1.0:
            crowded.setdefault((bar.worker, int(x0), bar.state), []).append(bar)
            continue
        out.append(_rect(bar, row_y[bar.worker], x0, x1, _tooltip(bar, now)))
    for (worker, px, state), group in crowded.items():
        tooltip = _tooltip(group[0], now) if len(group) == 1 else f"{len(group)} {state} tasks"
        out.append(_rect(group[0], row_y[worker], px, px + 1, tooltip, state))
    return out


def _waiting(bar: Bar, row_y, x, t0, t1, now) -> str:
    y = row_y[bar.worker] + ROW_HEIGHT - 7
    x0, x1 = x(max(bar.queued, t0)), x(min(now, t1))
    return (f'<rect class="task waiting" x="{x0:.1f}" y="{y}" width="{max(1.0, x1 - x0):.1f}" height="4" '
            f'fill="{COLORS["waiting"]}"><title>{html.escape(_tooltip(bar, now))}</title></rect>')


def _rect(bar: Bar, y: int, x0: float, x1: float, tooltip: str, state: str | None = None) -> str:
    state = state or bar.state
    return (f'<rect class="task {state}" data-task="{bar.task}" x="{x0:.1f}" y="{y + 4}" '
            f'width="{max(1.0, x1 - x0):.1f}" height="{ROW_HEIGHT - 12}" rx="2" fill="{COLORS[state]}">'
            f'<title>{html.escape(tooltip)}</title></rect>')


def _tooltip(bar: Bar, now: float) -> str:
    lines = [f"task #{bar.task} on {'kernel' if bar.worker == KERNEL else f'worker {bar.worker}'}: {bar.state}"]
    if bar.code:
        lines.append(bar.code)
    if bar.start is not None:
        end = bar.end if bar.end is not None else now
        lines.append(f"start {human_seconds(bar.start)}, duration {human_seconds(end - bar.start)}")
    else:
        lines.append(f"queued at {human_seconds(bar.queued)}")
    if bar.bytes_in or bar.bytes_out:
        lines.append(f"in {human_bytes(bar.bytes_in)}, out {human_bytes(bar.bytes_out)}")
    if bar.error:
        lines.append(bar.error)
    return "\n".join(lines)


def _arrows(model: TimelineModel, row_y, x, t0, t1) -> list[str]:
    visible = [a for a in model.arrows if a.end >= t0 and a.start <= t1 and a.source in row_y and a.dest in row_y]
    out = []
    labels: list[tuple[float, float]] = []
    for arrow in _aggregate(visible, (t1 - t0) / 200):
        xs, xe = x(max(arrow.start, t0)), x(min(arrow.end, t1))
        ys = row_y[arrow.source] + ROW_HEIGHT / 2
        ye = row_y[arrow.dest] + ROW_HEIGHT / 2
        ye += -8 if ye > ys else 8
        duration = max(arrow.end - arrow.start, 1e-9)
        name = arrow.name if arrow.count == 1 else f"{arrow.count}× {arrow.name}"
        tooltip = (f"{name}: {who(arrow.source)} → {who(arrow.dest)}\n{human_bytes(arrow.bytes)} "
                   f"in {human_seconds(duration)} ({human_bytes(arrow.bytes / duration)}/s)")
        lx, ly = (xs + xe) / 2 + 3, (ys + ye) / 2
        anchor = "start"
        if lx > x(t1) - 90:
            lx, anchor = min(xs, xe) - 4, "end"
        label = ""
        if not any(abs(lx - px) < 80 and abs(ly - py) < 12 for px, py in labels):
            labels.append((lx, ly))
            label = (f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" fill="#6e40c9">'
                     f'{html.escape(name)} {human_bytes(arrow.bytes)}</text>')
        out.append(f'<g class="transfer"><path d="M {xs:.1f} {ys:.1f} L {max(xe, xs + 2):.1f} {ye:.1f}" '
                   f'stroke="#6e40c9" stroke-width="1.5" fill="none" marker-end="url(#ipw-arrow)"/>'
                   f'{label}<title>{html.escape(tooltip)}</title></g>')
    return out


def _aggregate(arrows: list[Arrow], bucket: float) -> list[Arrow]:
    """Many small messages between the same two rows are drawn as one arrow per time bucket."""
    if len(arrows) <= MAX_ARROWS:
        return arrows
    merged: dict[tuple[int, int, int], Arrow] = {}
    for a in arrows:
        key = (a.source, a.dest, int(a.start / bucket) if bucket > 0 else 0)
        m = merged.get(key)
        if m is None:
            merged[key] = Arrow(a.name, a.source, a.dest, a.bytes, a.start, a.end, a.count)
        else:
            m.bytes += a.bytes
            m.count += a.count
            m.start, m.end = min(m.start, a.start), max(m.end, a.end)
            if m.name != a.name:
                m.name = "messages"
    return list(merged.values())


def _planned(model: TimelineModel, row_y, x, t0, t1) -> list[str]:
    """The plan of each %%parallel run as hollow bars: where and when each statement was
    predicted to run, over the filled bars of what did. Only plans in seconds: a plan made
    before anything was measured (equal weights, in units) has no place on the time axis."""
    out = []
    for plan in model.plans:
        if not plan.measured:
            continue
        for slot in plan.slots:
            start, finish = plan.at + slot["start"], plan.at + slot["finish"]
            if slot["worker"] not in row_y or finish < t0 or start > t1:
                continue
            x0, x1 = x(max(start, t0)), x(min(finish, t1))
            if x1 - x0 < 1.0 and slot.get("setup"):
                continue  # an import or def: no time to speak of
            where = "kernel" if slot["worker"] == KERNEL else f"worker {slot['worker']}"
            tooltip = (f"planned: line {slot['line']} on {where}" + (" (setup)" if slot.get("setup") else "")
                       + (f"\n{slot['code']}" if slot.get("code") else "")
                       + f"\nstart {human_seconds(slot['start'])} after submission, "
                         f"duration {human_seconds(slot['finish'] - slot['start'])}")
            out.append(f'<rect class="planned" data-line="{slot["line"]}" x="{x0:.1f}" y="{row_y[slot["worker"]] + 2}" '
                       f'width="{max(1.0, x1 - x0):.1f}" height="{ROW_HEIGHT - 8}" rx="2" fill="none" '
                       f'stroke="{PLANNED}" stroke-width="1.2" stroke-dasharray="4,2">'
                       f'<title>{html.escape(tooltip)}</title></rect>')
    return out


def html_page(model: TimelineModel, title: str = "ipyworkers timeline") -> str:
    """A standalone page: the drawing, its summary, wheel zoom and drag pan; no kernel needed."""
    svg = render_svg(model, width=1200)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} svg{{border:1px solid #d0d7de;cursor:grab}}
.legend span{{display:inline-block;margin-right:1em}} .legend i{{display:inline-block;width:.9em;height:.9em;
margin-right:.3em;vertical-align:middle}}</style></head>
<body><h2>{html.escape(title)}</h2>
<p class="summary">{html.escape(summary_line(model))}</p>
<p class="legend">{"".join(f'<span><i style="background:{c}"></i>{s}</span>' for s, c in COLORS.items())}
<span><i style="border:1.5px dashed {PLANNED};box-sizing:border-box"></i>planned (%%parallel)</span>
<span>scroll to zoom, drag to pan, hover for details</span></p>
{svg}
<script>
const svg = document.querySelector("svg.ipyworkers-timeline");
const full = svg.viewBox.baseVal; let box = [full.x, full.y, full.width, full.height]; let drag = null;
const set = () => svg.setAttribute("viewBox", box.join(" "));
svg.addEventListener("wheel", e => {{ e.preventDefault(); const r = svg.getBoundingClientRect();
  const fx = (e.clientX - r.left) / r.width, k = e.deltaY > 0 ? 1.25 : 0.8, w = Math.min(box[2] * k, full.width);
  box[0] = Math.max(0, box[0] + (box[2] - w) * fx); box[2] = w; set(); }});
svg.addEventListener("mousedown", e => drag = [e.clientX, box[0]]);
window.addEventListener("mouseup", () => drag = null);
window.addEventListener("mousemove", e => {{ if (!drag) return; const r = svg.getBoundingClientRect();
  box[0] = Math.max(0, drag[1] - (e.clientX - drag[0]) * box[2] / r.width); set(); }});
</script></body></html>
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
