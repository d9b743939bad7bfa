"""The timeline: events in, shapes out. Pure: no widgets, no threads.

``TimelineModel`` is fed events one at a time (incrementally, as they happen) and
keeps bars (tasks) and arrows (transfers). ``render_svg`` draws it: a row per worker
and one for the kernel, a bar per task coloured by state, arrows for transfers, a
"now" line, and a ``<title>`` on every shape, which browsers show on hover. The
same SVG serves the live widget and the standalone HTML export; ``chrome_trace``
writes the Chrome trace event format that Perfetto loads.

The model keeps only recent history (see ``MAX_BARS``): a session of 100,000 tasks must
not hold 100,000 bars, and a drawing is bounded by its pixels anyway. Totals that speak
for the whole session (tasks, bytes, busy time) are running sums, kept apart from the
shapes, so they stay right when old shapes go.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..kernel import events as ev

KERNEL = 0
COLORS = {
    "waiting": "#d0d7de",
    "running": "#54aeff",
    "done": "#2da44e",
    "failed": "#cf222e",
    "cancelled": "#8c959f",
}
ROW_HEIGHT = 30
LABEL_WIDTH = 78
AXIS_HEIGHT = 22
MAX_ARROWS = 400
"""Above this many visible transfers, arrows are merged per time bucket when drawn."""
MAX_BARS = 10_000
"""Ended bars kept. A full-width drawing has about 800 pixels per row, so beyond a few
thousand tasks older ones are only merged pixels; 10,000 still lets one zoom into the
recent past (a tenth of that is the slack pruned at once, see ``TimelineModel``)."""
MAX_KEPT_ARROWS = 5_000
"""Transfers kept: drawn, more than ``MAX_ARROWS`` are merged anyway, so a few thousand
exact ones are enough to zoom into the recent past."""


@dataclass(slots=True)
class Bar:
    task: int
    worker: int
    label: str = ""
    code: str = ""
    queued: float = 0.0
    start: float | None = None
    end: float | None = None
    state: str = "waiting"
    error: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass(slots=True)
class Arrow:
    name: str
    source: int
    dest: int
    bytes: int
    start: float
    end: float
    count: int = 1


@dataclass
class TimelineModel:
    """Bars and arrows for recent work, plus running totals for the whole session.

    At most ``max_bars`` bars of ended tasks are kept, the most recent by end time, and
    at most ``max_arrows`` arrows; bars of waiting and running tasks are never dropped,
    however old, since they are what one is watching. When a cap is passed, the oldest
    tenth goes at once: a prune sorts what is kept (nearly sorted already, as tasks end
    roughly in order) and rescans it for ``first_time``, so doing it once per ``cap / 10``
    endings costs a constant amount per event, where keeping exactly ``cap`` would mean a
    rescan per event. Recomputing ``first_time`` makes the drawn extent that of what is
    kept, not of the whole session.

    ``task_count``, ``bytes_moved`` and the busy times in ``summary`` count every event
    the model saw (and, via ``from_log``, those the log had already dropped);
    ``dropped_bars`` and ``dropped_arrows`` say how many shapes are no longer drawn.
    """

    origin: float
    bars: dict[int, Bar] = field(default_factory=dict)
    arrows: list[Arrow] = field(default_factory=list)
    workers: set[int] = field(default_factory=set)
    dead: dict[int, float] = field(default_factory=dict)
    last_time: float = 0.0
    version: int = 0
    first_time: float | None = None
    running: set[int] = field(default_factory=set)
    task_count: int = 0
    bytes_moved: int = 0
    max_bars: int = MAX_BARS
    max_arrows: int = MAX_KEPT_ARROWS
    dropped_bars: int = 0
    dropped_arrows: int = 0
    dropped_events: int = 0
    _busy_done: dict[int, float] = field(default_factory=dict)
    _ran_first: float | None = None
    _ran_last: float | None = None
    _ended: list[int] = field(default_factory=list)

    @classmethod
    def from_events(cls, events: Iterable[ev.Event], origin: float, **caps: int) -> TimelineModel:
        model = cls(origin, **caps)
        for event in events:
            model.add(event)
        return model

    @classmethod
    def from_log(cls, log: ev.EventLog, **caps: int) -> TimelineModel:
        """The model of what ``log`` retains, with its session totals (tasks, bytes) also
        counting what the log has dropped; busy time and wall cover only what it retains."""
        dropped = log.dropped_totals()
        model = cls(log.origin, **caps)
        model.task_count = sum(n for worker, n in dropped["tasks"].items() if worker != KERNEL)
        model.bytes_moved = dropped["bytes"]
        model.dropped_events = dropped["events"]
        for event in log.events():
            model.add(event)
        return model

    def add(self, event: ev.Event) -> None:
        self.version += 1
        t = event.time - self.origin
        self.last_time = max(self.last_time, t)
        handler = _HANDLERS.get(event.kind)
        if handler is not None:
            handler(self, event, t)

    def _on_worker(self, event: ev.Event, t: float) -> None:
        self.workers.add(event.worker)
        if event.kind == ev.WORKER_DIED:
            self.dead[event.worker] = t
        elif event.kind == ev.WORKER_STARTED:
            self.dead.pop(event.worker, None)

    def _seen(self, t: float) -> None:
        self.first_time = t if self.first_time is None else min(self.first_time, t)

    def _on_queued(self, event: ev.Event, t: float) -> None:
        self.workers.add(event.worker)
        self._seen(t)
        self.bars[event.task] = Bar(event.task, event.worker, event.data.get("label", ""),
                                    event.data.get("code", ""), queued=t)
        if event.worker != KERNEL:
            self.task_count += 1

    def _on_started(self, event: ev.Event, t: float) -> None:
        bar = self.bars.get(event.task)
        if bar is not None:
            bar.start, bar.state = t, "running"
            if bar.worker != KERNEL:
                self.running.add(bar.task)
                self._ran_first = t if self._ran_first is None else min(self._ran_first, t)

    def _on_ended(self, event: ev.Event, t: float) -> None:
        bar = self.bars.get(event.task)
        if bar is None:
            return
        if bar.end is None:
            self._ended.append(bar.task)
        bar.end = t
        bar.state = _END_STATES.get(event.kind, "cancelled")
        bar.error = event.data.get("error")
        if bar.task in self.running:
            self.running.discard(bar.task)
            self._busy_done[bar.worker] = self._busy_done.get(bar.worker, 0.0) + t - bar.start
            self._ran_last = t if self._ran_last is None else max(self._ran_last, t)
        if len(self._ended) > self.max_bars:
            self._prune_bars()

    def _prune_bars(self) -> None:
        """Keep the ``max_bars - max_bars // 10`` most recently ended bars."""
        ended: dict[int, Bar] = {}
        for task in self._ended:  # a task id queued again may be listed twice, or not ended now
            bar = self.bars.get(task)
            if bar is not None and bar.end is not None:
                ended[task] = bar
        order = sorted(ended, key=lambda task: ended[task].end)  # nearly sorted already: linear
        cut = len(order) - (self.max_bars - self.max_bars // 10)
        for task in order[:max(cut, 0)]:
            del self.bars[task]
        self.dropped_bars += max(cut, 0)
        self._ended = order[max(cut, 0):]
        self._recompute_first_time()

    def _on_transfer(self, event: ev.Event, t: float) -> None:
        data = event.data
        arrow = Arrow(data["name"], data["source"], data["dest"], data["bytes"],
                      data["start"] - self.origin, data["end"] - self.origin, data.get("count", 1))
        self.arrows.append(arrow)
        self.bytes_moved += arrow.bytes
        self._seen(arrow.start)
        self.workers.update(h for h in (arrow.source, arrow.dest) if h != KERNEL)
        reader = self.bars.get(event.task) if event.task is not None else None
        if reader is not None:
            reader.bytes_in += arrow.bytes
        producer = self.bars.get(data.get("version"))
        if producer is not None:
            producer.bytes_out += arrow.bytes
        if len(self.arrows) > self.max_arrows:
            self._prune_arrows()

    def _prune_arrows(self) -> None:
        """Keep the ``max_arrows - max_arrows // 10`` most recently ended arrows."""
        self.arrows.sort(key=lambda arrow: arrow.end)  # appended as they end: nearly sorted
        cut = len(self.arrows) - (self.max_arrows - self.max_arrows // 10)
        del self.arrows[:cut]
        self.dropped_arrows += cut
        self._recompute_first_time()

    def _recompute_first_time(self) -> None:
        """What is no longer drawn no longer stretches the drawing (runs at prunes only)."""
        starts = [bar.queued for bar in self.bars.values()] + [arrow.start for arrow in self.arrows]
        self.first_time = min(starts) if starts else None

    def rows(self) -> list[int]:
        return [KERNEL, *sorted(w for w in self.workers if w != KERNEL)]

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """Tasks, busy fraction per worker, bytes moved, wall time and speed-up (kept up to
        date as events come, so this costs nothing per task)."""
        now = self.last_time if now is None else now
        if self._ran_first is None:
            return {"tasks": self.task_count, "busy": {}, "bytes": self.bytes_moved, "wall": 0.0, "speedup": 0.0}
        busy = dict(self._busy_done)
        last = self._ran_last if self._ran_last is not None else self._ran_first
        for task in self.running:
            bar = self.bars[task]
            busy[bar.worker] = busy.get(bar.worker, 0.0) + now - bar.start
            last = max(last, now)
        wall = max(last - self._ran_first, 1e-9)
        return {
            "tasks": self.task_count,
            "busy": {w: busy[w] / wall for w in sorted(busy)},
            "bytes": self.bytes_moved,
            "wall": wall,
            "speedup": sum(busy.values()) / wall,
        }


_END_STATES = {ev.TASK_FINISHED: "done", ev.TASK_FAILED: "failed"}
_HANDLERS = {
    ev.WORKER_STARTED: TimelineModel._on_worker,
    ev.WORKER_DIED: TimelineModel._on_worker,
    ev.TASK_QUEUED: TimelineModel._on_queued,
    ev.TASK_STARTED: TimelineModel._on_started,
    ev.TASK_FINISHED: TimelineModel._on_ended,
    ev.TASK_FAILED: TimelineModel._on_ended,
    ev.TASK_CANCELLED: TimelineModel._on_ended,
    ev.TRANSFER: TimelineModel._on_transfer,
}


# -- text -----------------------------------------------------------------------------------


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def human_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def summary_line(model: TimelineModel, now: float | None = None) -> str:
    s = model.summary(now)
    busy = ", ".join(f"w{w} {fraction:.0%}" for w, fraction in s["busy"].items()) or "-"
    line = (f"{s['tasks']} tasks · busy {busy} · moved {human_bytes(s['bytes'])} · "
            f"wall {human_seconds(s['wall'])} · speed-up {s['speedup']:.2f}×")
    if model.dropped_bars or model.dropped_arrows or model.dropped_events:
        line += f" · drawing the latest {len(model.bars)} tasks"
    return line


def render_text(model: TimelineModel, now: float | None = None, width: int = 60) -> str:
    """For plain IPython: a character per time slot, per worker."""
    now = model.last_time if now is None else now
    t0, t1 = _extent(model, now)
    scale = width / max(t1 - t0, 1e-9)
    marks = {"done": "#", "running": ">", "failed": "x", "cancelled": "-", "waiting": "."}
    lines = [summary_line(model, now)]
    for row in model.rows()[1:]:
        cells = [" "] * width
        for bar in model.bars.values():
            if bar.worker != row or bar.start is None:
                continue
            a = int((bar.start - t0) * scale)
            b = max(a + 1, int(((bar.end if bar.end is not None else now) - t0) * scale))
            for i in range(max(0, a), min(width, b)):
                cells[i] = marks[bar.state]
        lines.append(f"worker {row:<3}|{''.join(cells)}|")
    lines.append(f"{'':10} {human_seconds(0)}{human_seconds(t1 - t0):>{width - 4}}")
    return "\n".join(lines)


# -- SVG ------------------------------------------------------------------------------------------


def _extent(model: TimelineModel, now: float) -> tuple[float, float]:
    t0 = model.first_time if model.first_time is not None else 0.0
    return t0, max(now, t0 + 1e-3)


def render_svg(model: TimelineModel, now: float | None = None, window: tuple[float, float] | None = None,
               width: int = 900) -> str:
    """The timeline as one SVG document; ``window`` (seconds from the origin) zooms."""
    now = model.last_time if now is None else now
    t0, t1 = window if window is not None else _extent(model, now)
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
        tooltip = (f"{name}: {_who(arrow.source)} → {_who(arrow.dest)}\n{human_bytes(arrow.bytes)} "
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


def _who(holder: int) -> str:
    return "kernel" if holder == KERNEL else f"worker {holder}"


# -- exports ----------------------------------------------------------------------------------------


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
        events.append({"ph": "M", "pid": 1, "tid": row, "name": "thread_name", "args": {"name": _who(row)}})
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
    trace: dict[str, Any] = {"traceEvents": events, "displayTimeUnit": "ms"}
    if model.dropped_bars or model.dropped_arrows or model.dropped_events:
        trace["otherData"] = {"note": "only recent tasks and transfers were kept", "tasks": model.task_count,
                              "bars_not_kept": model.dropped_bars, "arrows_not_kept": model.dropped_arrows,
                              "events_not_kept": model.dropped_events}
    return trace


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
