"""The timeline drawn: one SVG document, the live widget's and the HTML export's. Pure:
shapes from a ``TimelineModel``.

A row per worker and one for the kernel; a bar per task, coloured by its cell or function
(with a legend) and filled or bordered by its state; arrows for transfers; marks where a
worker died or restarted; a "now" line; the plan of each ``%%parallel`` run as hollow bars.

The drawing takes the width of its container: the SVG is ``width="100%"``, times are
percentages of the plot, and text keeps its size in pixels; the row labels sit in the
SVG's left padding. Text is placed for ``width``, the narrowest the drawing gets (see
``layout``). Hovering a shape shows an HTML tooltip, by CSS alone (no script runs in a
widget): each shape has a transparent twin in a top layer, with its tooltip in a hidden
``<foreignObject>`` that ``:hover`` reveals; the twins are drawn last, so a tooltip is
never under a later bar. Shapes keep a ``<title>`` for screen readers.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from . import layout
from .geometry import (
    AXIS_HEIGHT,
    BAND,
    DEFS,
    FAILED_BORDER,
    LABEL_COLUMN,
    LEGEND_LINE,
    ROW_HEIGHT,
    STATES,
    STYLE,
    Frame,
    tip,
)
from .lanes import flows
from .runs import default_window
from .timeline import PLANNED, Bar, TimelineModel, human_bytes, human_seconds, who


def render_svg(model: TimelineModel, now: float | None = None, window: tuple[float, float] | None = None,
               width: int = 640) -> str:
    """The timeline as one SVG document that fills its container's width, and is laid out
    for ``width`` pixels or more; ``window`` (seconds from the origin) is what it shows,
    by default the latest burst of work (``runs.default_window``)."""
    now = model.last_time if now is None else now
    t0, t1 = window if window is not None else default_window(model, now)
    rows = model.rows()
    row_y = {r: AXIS_HEIGHT + i * ROW_HEIGHT for i, r in enumerate(rows)}
    rows_bottom = AXIS_HEIGHT + ROW_HEIGHT * len(rows)
    frame = Frame(t0, max(t1, t0 + 1e-6), width - LABEL_COLUMN - 8, row_y, rows_bottom)
    bars, bar_tips, groups = _bars(model, frame, now)
    planned, planned_tips = _planned(model, frame)
    arrows, arrow_tips = flows(model, frame, now)
    legend, legend_height = _legend(model, groups, bool(planned), frame, width)
    height = rows_bottom + legend_height
    return "".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" class="ipyworkers-timeline" width="100%" height="{height}" '
        f'overflow="visible" font-family="sans-serif" font-size="11" style="display:block;box-sizing:border-box;'
        f'min-width:{width}px;padding-left:{LABEL_COLUMN}px">',
        STYLE, DEFS, *_row_labels(rows, row_y, model.dead), *legend,
        f'<svg class="plot" x="0" y="0" width="100%" height="{height}" overflow="hidden">'
        f'<svg class="zoom" x="0" y="0" width="100%" height="{height}" overflow="visible">',
        *_axis(frame), *bars, *planned, *arrows, _now_line(model, frame, now),
        *bar_tips, *planned_tips, *arrow_tips, "</svg></svg></svg>",
    ])


def _row_labels(rows: list[int], row_y: dict[int, int], dead: dict[int, float]) -> list[str]:
    out = []
    for row in rows:
        y, shade = row_y[row], "#f6f8fa" if row % 2 else "#fff"
        colour, suffix = ("#cf222e", " ✝") if row in dead else ("#24292f", "")
        out.append(f'<rect x="{-LABEL_COLUMN}" y="{y}" width="{LABEL_COLUMN}" height="{ROW_HEIGHT}" fill="{shade}"/>'
                   f'<rect x="0" y="{y}" width="100%" height="{ROW_HEIGHT}" fill="{shade}"/>'
                   f'<text class="row-label" x="{6 - LABEL_COLUMN}" y="{y + BAND / 2 + 4}" fill="{colour}">'
                   f'{who(row)}{suffix}</text>')
    return out


def _axis(frame: Frame) -> list[str]:
    step = layout.tick_step(frame.t1 - frame.t0, frame.plot)
    tick = (int(frame.t0 / step) + 1) * step if frame.t0 > 0 else 0.0
    out = []
    while tick <= frame.t1:
        label = _tick_label(tick, step)
        out.append(f'<line x1="{frame.x(tick)}" x2="{frame.x(tick)}" y1="{AXIS_HEIGHT - 6}" y2="{frame.height}" '
                   f'stroke="#eaeef2"/>')
        if frame.px(tick) + layout.text_width(label) + 4 <= frame.plot:
            out.append(f'<text x="{frame.x(tick)}" dx="3" y="{AXIS_HEIGHT - 9}" fill="#57606a">{label}</text>')
        tick += step
    return out


def _tick_label(t: float, step: float) -> str:
    if step < 1e-3:
        return f"{t * 1e3:.1f} ms"
    if step < 1:
        return f"{t * 1e3:.0f} ms" if t < 1 else f"{t:.2f} s"
    return f"{t:.0f} s"


# -- bars ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Crowd:
    """Tasks narrower than a pixel, of one row, state and group, in adjacent pixel columns:
    drawn as one rect. Kept as running totals, not a list, since there may be thousands."""

    first: Bar
    start: float
    end: float
    count: int = 1
    busy: float = 0.0
    items: int = 0

    def add(self, bar: Bar, start: float, end: float) -> None:
        self.count += 1
        self.start = start if start < self.start else self.start
        self.end = end if end > self.end else self.end
        self.busy += end - start if bar.start is not None else 0.0
        self.items += bar.items

    def merge(self, other: Crowd) -> None:
        self.count += other.count
        self.start, self.end = min(self.start, other.start), max(self.end, other.end)
        self.busy += other.busy
        self.items += other.items


def _bars(model: TimelineModel, frame: Frame, now: float) -> tuple[list[str], list[str], list[str]]:
    """A rect per task (and its tooltip twin), and the groups drawn; where tasks are
    narrower than a pixel, one rect per run of adjacent pixels (level of detail), so the
    drawing is bounded by its pixels, not the task count. The loop runs over every task
    kept at each redraw: it does arithmetic only."""
    shapes: list[str] = []
    tips: list[str] = []
    crowded: dict[tuple[int, str, str, int], Crowd] = {}
    groups: dict[str, None] = {}
    t0, t1, rows = frame.t0, frame.t1, frame.row_y
    scale = frame.plot / (t1 - t0)
    for bar in model.bars.values():
        end = now if bar.end is None else bar.end
        start = bar.queued if bar.start is None else bar.start
        if end < t0 or start > t1 or bar.worker not in rows:
            continue
        groups[bar.group] = None
        if bar.start is None and bar.state == "waiting":
            shapes.append(_waiting(model, bar, frame, now))
            continue
        x0 = ((t0 if start < t0 else start) - t0) * scale
        if ((t1 if end > t1 else end) - t0) * scale - x0 < 1.0:
            key = (bar.worker, bar.state, bar.group, int(x0))
            crowd = crowded.get(key)
            if crowd is None:
                crowded[key] = Crowd(bar, start, end, busy=end - start if bar.start is not None else 0.0,
                                     items=bar.items)
            else:
                crowd.add(bar, start, end)
            continue
        shapes.append(_rect(model, bar, frame, (start, end), bar.state, _bar_title(bar, now), (bar.label, bar.group)))
        tips.append(_tip_rect(frame, bar.worker, start, end, _bar_tip(bar, now)))
    for (worker, state, group), crowd in _runs_of_columns(crowded):
        one = crowd.count == 1
        title = _bar_title(crowd.first, now) if one else _crowd_title(crowd, state, group)
        shapes.append(_rect(model, crowd.first, frame, (crowd.start, crowd.end), state, title, (group,)))
        tips.append(_tip_rect(frame, worker, crowd.start, crowd.end, _bar_tip(crowd.first, now) if one else
                              _crowd_tip(crowd, state, group)))
    return shapes, tips, list(groups)


def _runs_of_columns(crowded: dict[tuple[int, str, str, int], Crowd]) -> list[tuple[tuple, Crowd]]:
    """Crowds of one row, state and group in adjacent pixel columns, merged into one."""
    runs: list[tuple[tuple, Crowd]] = []
    previous: tuple | None = None
    for key in sorted(crowded):
        if previous is not None and previous[:3] == key[:3] and key[3] <= previous[3] + 1:
            runs[-1][1].merge(crowded[key])
        else:
            runs.append((key[:3], crowded[key]))
        previous = key
    return runs


def _rect(model: TimelineModel, bar: Bar, frame: Frame, span: tuple[float, float], state: str, title: str,
          labels: tuple[str, ...]) -> str:
    """The bar of ``bar`` (or of a run of tiny tasks like it) over ``span``, labelled with
    the first of ``labels`` that fits inside it, if any."""
    start, end = span
    colour = model.colour_of(bar.group)
    y = frame.row_y[bar.worker] + 3
    width = max(frame.frac(end) - frame.frac(start), 1 / frame.plot) * 100
    rect = (f'<rect class="task {state}" data-task="{bar.task}" x="{frame.x(start)}" y="{y}" width="{width:.3f}%" '
            f'height="{BAND - 6}" rx="2" fill="{colour}"{_state_style(state)}><title>{html.escape(title)}</title>'
            f'</rect>')
    if state == "running":
        rect += (f'<rect class="stripes" x="{frame.x(start)}" y="{y}" width="{width:.3f}%" height="{BAND - 6}" '
                 f'fill="url(#ipw-stripes)" pointer-events="none"/>')
    room = width / 100 * frame.plot
    label = next((text for text in labels if text and layout.fits(text, room, font_size=10)), None)
    if label is not None and end > start:
        rect += (f'<text class="bar-label" x="{frame.x(start)}" dx="3" y="{y + BAND / 2 + 1}" font-size="10" '
                 f'fill="#1f2328" stroke="#fff" stroke-width="2.5" stroke-opacity="0.7" pointer-events="none">'
                 f'{html.escape(label)}</text>')
    return rect


def _state_style(state: str) -> str:
    """State as fill and border, the colour being the cell's or function's."""
    return {"done": "",
            "running": ' fill-opacity="0.6" stroke="#1f2328" stroke-width="1"',
            "failed": f' stroke="{FAILED_BORDER}" stroke-width="2.5"',
            "cancelled": ' fill-opacity="0.22" stroke="#57606a" stroke-dasharray="3,2"',
            "waiting": ' fill-opacity="0.5"'}[state]


def _waiting(model: TimelineModel, bar: Bar, frame: Frame, now: float) -> str:
    y = frame.row_y[bar.worker] + BAND - 3
    width = max(frame.frac(now) - frame.frac(bar.queued), 1 / frame.plot) * 100
    return (f'<rect class="task waiting" data-task="{bar.task}" x="{frame.x(bar.queued)}" y="{y}" '
            f'width="{width:.3f}%" height="3" fill="{model.colour_of(bar.group)}" fill-opacity="0.6">'
            f'<title>{html.escape(_bar_title(bar, now))}</title></rect>')


def _bar_title(bar: Bar, now: float) -> str:
    return "\n".join(_bar_lines(bar, now))


def _bar_lines(bar: Bar, now: float) -> list[str]:
    head = f"{bar.group}: task #{bar.task} on {who(bar.worker)}: {bar.state}"
    lines = [head + (f" ({bar.items} items)" if bar.items else "")]
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
    return lines


def _bar_tip(bar: Bar, now: float) -> str:
    head, *rest = _bar_lines(bar, now)
    body = [f"<b>{html.escape(head)}</b>"]
    for line in rest:
        if line == bar.code:
            body.append(f"<pre>{html.escape(line)}</pre>")
        elif line == bar.error:
            body.append(f'<div class="err">{html.escape(line[:300])}</div>')
        else:
            body.append(f"<div>{html.escape(line)}</div>")
    return "".join(body)


def _crowd_title(crowd: Crowd, state: str, group: str) -> str:
    return f"{crowd.count} {state} tasks of {group}" + (f", {crowd.items} items" if crowd.items else "")


def _crowd_tip(crowd: Crowd, state: str, group: str) -> str:
    return (f"<b>{html.escape(_crowd_title(crowd, state, group))}</b>"
            f"<div>{human_seconds(crowd.start)} to {human_seconds(crowd.end)}, busy {human_seconds(crowd.busy)}</div>")


def _tip_rect(frame: Frame, worker: int, start: float, end: float, body: str) -> str:
    y = frame.row_y[worker] + 3
    width = max(frame.frac(end) - frame.frac(start), 2 / frame.plot) * 100
    hit = (f'<rect x="{frame.x(start)}" y="{y}" width="{width:.3f}%" height="{BAND - 6}" fill="#fff" '
           f'fill-opacity="0"/>')
    return tip(frame, hit, frame.frac(start), y, y + BAND - 6, body)


# -- the plan of %%parallel runs ---------------------------------------------------------------------


def _planned(model: TimelineModel, frame: Frame) -> tuple[list[str], list[str]]:
    """The plan of each %%parallel run as hollow bars: where and when each statement was
    predicted to run, over the filled bars of what did. Only plans in seconds: a plan made
    before anything was measured (equal weights, in units) has no place on the time axis."""
    shapes, tips = [], []
    for plan in model.plans:
        if not plan.measured:
            continue
        for slot in plan.slots:
            start, finish = plan.at + slot["start"], plan.at + slot["finish"]
            if slot["worker"] not in frame.row_y or finish < frame.t0 or start > frame.t1:
                continue
            if frame.px(finish) - frame.px(start) < 1.0 and slot.get("setup"):
                continue  # an import or def: no time to speak of
            setup = " (setup)" if slot.get("setup") else ""
            lines = [f"planned: line {slot['line']} on {who(slot['worker'])}{setup}",
                     *([slot["code"]] if slot.get("code") else []),
                     f"start {human_seconds(slot['start'])} after submission, "
                     f"duration {human_seconds(slot['finish'] - slot['start'])}"]
            y = frame.row_y[slot["worker"]] + 1
            width = max(frame.frac(finish) - frame.frac(start), 1 / frame.plot) * 100
            box = f'x="{frame.x(start)}" y="{y}" width="{width:.3f}%" height="{BAND - 2}"'
            shapes.append(f'<rect class="planned" data-line="{slot["line"]}" {box} rx="2" fill="none" '
                          f'stroke="{PLANNED}" stroke-width="1.2" stroke-dasharray="4,2">'
                          f'<title>{html.escape(chr(10).join(lines))}</title></rect>')
            body = f"<b>{html.escape(lines[0])}</b>" + "".join(f"<div>{html.escape(line)}</div>" for line in lines[1:])
            tips.append(tip(frame, f'<rect {box} fill="#fff" fill-opacity="0"/>', frame.frac(start), y,
                            y + BAND - 2, body))
    return shapes, tips


def _now_line(model: TimelineModel, frame: Frame, now: float) -> str:
    if not (frame.t0 <= now <= frame.t1 and model.running):
        return ""
    return (f'<line class="now" x1="{frame.x(now)}" x2="{frame.x(now)}" y1="{AXIS_HEIGHT - 4}" y2="{frame.height}" '
            f'stroke="#bf3989" stroke-dasharray="3,2"/>')


# -- legend ----------------------------------------------------------------------------------------


MAX_LEGEND_GROUPS = 8


def _legend(model: TimelineModel, groups: list[str], planned: bool, frame: Frame, width: int) -> tuple[list[str], int]:
    """Swatches for the cells and functions drawn, then for the states; wrapped to fit."""
    shown = sorted(groups, key=lambda g: model.groups.get(g, 0))
    more = len(shown) - MAX_LEGEND_GROUPS
    entries = [(_swatch(f'fill="{model.colour_of(g)}"'), g) for g in shown[:MAX_LEGEND_GROUPS]]
    if more > 0:
        entries.append(("", f"+{more} more"))
    grey = 'fill="#8c959f"'
    entries += [(_swatch(grey + _state_style(state)), state) for state in STATES if state != "waiting"]
    entries.append((f'<rect x="0" y="7" width="12" height="3" {grey} fill-opacity="0.6"/>', "waiting"))
    if planned:
        entries.append((_swatch(f'fill="none" stroke="{PLANNED}" stroke-dasharray="4,2"'), "planned (%%parallel)"))
    entries += [(_mark_swatch(kind), kind) for kind in sorted({m.kind for m in model.marks
                                                                if frame.t0 <= m.time <= frame.t1})]
    sizes = [16 + layout.text_width(text) for _, text in entries]
    places = layout.wrap(sizes, width - 8)
    top = frame.height + 4
    out = ['<g class="legend" font-size="11" fill="#57606a">']
    for (swatch, text), (line, x) in zip(entries, places, strict=True):
        out.append(f'<g transform="translate({x - LABEL_COLUMN + 6:.0f},{top + line * LEGEND_LINE})">{swatch}'
                   f'<text x="{16 if swatch else 0}" y="11">{html.escape(text)}</text></g>')
    out.append("</g>")
    lines = 1 + max((line for line, _ in places), default=0)
    return out, lines * LEGEND_LINE + 6


def _swatch(style: str) -> str:
    return f'<rect x="0" y="2" width="12" height="11" rx="2" {style}/>'


def _mark_swatch(kind: str) -> str:
    colour = "#cf222e" if kind == "died" else "#1a7f37"
    return f'<line x1="6" x2="6" y1="1" y2="14" stroke="{colour}" stroke-width="2"/>'


def __getattr__(name: str) -> Any:
    """The exports live in ``exports`` now; old imports keep working."""
    if name in ("html_page", "chrome_trace", "save"):
        from . import exports

        return getattr(exports, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
