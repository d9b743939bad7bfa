"""Transfers (arrows) and worker marks (died, restarted) on the timeline, with their labels
in each row's lane: the strip under the row's bars, so a label never covers a bar, and
``layout.place_lane`` keeps labels from covering each other. Marks are placed first."""

from __future__ import annotations

import html

from .geometry import BAND, LANE, Frame, tip
from .layout import LaneLabel, Placed, place_lane
from .timeline import MAX_ARROWS, Arrow, Mark, TimelineModel, human_bytes, human_seconds, who

ARROW_COLOUR = "#6e40c9"
MARK_COLOURS = {"died": "#cf222e", "restarted": "#1a7f37"}
MARK_PRIORITY = {"died": 2, "restarted": 1}
"""A death is labelled before a restart, and arrows after both (priority 0)."""
LANE_FONT = 10


def flows(model: TimelineModel, frame: Frame, now: float) -> tuple[list[str], list[str]]:
    """Shapes (marks, arrows, their lane labels) and their tooltip twins, in the window."""
    t0, t1, rows = frame.t0, frame.t1, frame.row_y
    visible = [a for a in model.arrows if a.end >= t0 and a.start <= t1 and a.source in rows and a.dest in rows]
    arrows = aggregate(visible, (t1 - t0) / 200)
    marks = [m for m in model.marks if t0 <= m.time <= t1 and m.worker in rows]
    wanted: dict[int, list[LaneLabel]] = {}
    owners: dict[int, list[object]] = {}
    for mark in marks:
        label = LaneLabel(frame.px(mark.time) + 3, mark.kind, priority=MARK_PRIORITY[mark.kind])
        wanted.setdefault(mark.worker, []).append(label)
        owners.setdefault(mark.worker, []).append(mark)
    for arrow in arrows:
        wanted.setdefault(arrow.dest, []).append(LaneLabel(frame.px(arrow.end) + 2, _arrow_label(arrow)))
        owners.setdefault(arrow.dest, []).append(arrow)
    placed: dict[int, Placed] = {}
    for row, labels in wanted.items():
        for spot in place_lane(labels, frame.plot, LANE_FONT):
            placed[id(owners[row][spot.index])] = spot
    shapes, tips = [], []
    for mark in marks:
        shape, twin = _mark(mark, frame, placed.get(id(mark)))
        shapes.append(shape)
        tips.append(twin)
    for arrow in arrows:
        shape, twin = _arrow(arrow, frame, placed.get(id(arrow)))
        shapes.append(shape)
        tips.append(twin)
    return shapes, tips


def _lane_text(frame: Frame, row: int, spot: Placed | None, colour: str) -> str:
    if spot is None:
        return ""
    x = (spot.left if spot.anchor == "start" else spot.right) / frame.plot * 100
    return (f'<text class="lane" x="{x:.3f}%" y="{frame.row_y[row] + BAND + LANE - 3}" text-anchor="{spot.anchor}" '
            f'font-size="{LANE_FONT}" fill="{colour}" stroke="#fff" stroke-width="3">{html.escape(spot.text)}</text>')


# -- transfers -----------------------------------------------------------------------------------------


def _arrow_label(arrow: Arrow) -> str:
    return f"{_arrow_name(arrow)} {human_bytes(arrow.bytes)}"


def _arrow_name(arrow: Arrow) -> str:
    return arrow.name if arrow.count == 1 else f"{arrow.count}× {arrow.name}"


def _arrow(arrow: Arrow, frame: Frame, spot: Placed | None) -> tuple[str, str]:
    xs, xe = frame.x(arrow.start), frame.x(arrow.end)
    ys = frame.row_y[arrow.source] + BAND / 2
    ye = frame.row_y[arrow.dest] + BAND / 2
    ye += -7 if ye > ys else 7
    duration = max(arrow.end - arrow.start, 1e-9)
    head = f"{_arrow_name(arrow)}: {who(arrow.source)} → {who(arrow.dest)}"
    detail = (f"{human_bytes(arrow.bytes)} in {human_seconds(duration)} ({human_bytes(arrow.bytes / duration)}/s), "
              f"from {human_seconds(arrow.start)}")
    line = f'x1="{xs}" y1="{ys:.1f}" x2="{xe}" y2="{ye:.1f}"'
    shape = (f'<g class="transfer"><line {line} stroke="{ARROW_COLOUR}" stroke-width="1.5" '
             f'marker-end="url(#ipw-arrow)"/>{_lane_text(frame, arrow.dest, spot, ARROW_COLOUR)}'
             f'<title>{html.escape(head)}\n{html.escape(detail)}</title></g>')
    hit = f'<line {line} stroke="#fff" stroke-opacity="0" stroke-width="8"/>'
    body = f"<b>{html.escape(head)}</b><div>{html.escape(detail)}</div>"
    return shape, tip(frame, hit, frame.frac(arrow.end), min(ys, ye), max(ys, ye), body)


def aggregate(arrows: list[Arrow], bucket: float) -> list[Arrow]:
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


# -- worker marks --------------------------------------------------------------------------------------


def _mark(mark: Mark, frame: Frame, spot: Placed | None) -> tuple[str, str]:
    colour = MARK_COLOURS.get(mark.kind, "#57606a")
    y = frame.row_y[mark.worker]
    x = frame.x(mark.time)
    text = f"{who(mark.worker)} {mark.kind} at {human_seconds(mark.time)}" + (f": {mark.detail}" if mark.detail else "")
    shape = (f'<g class="mark {mark.kind}"><line x1="{x}" x2="{x}" y1="{y + 1}" y2="{y + BAND + LANE - 1}" '
             f'stroke="{colour}" stroke-width="2"/><circle cx="{x}" cy="{y + 4}" r="3.5" fill="{colour}"/>'
             f'{_lane_text(frame, mark.worker, spot, colour)}<title>{html.escape(text)}</title></g>')
    hit = f'<rect x="{x}" y="{y}" width="6" height="{BAND}" fill="#fff" fill-opacity="0"/>'
    return shape, tip(frame, hit, frame.frac(mark.time), y, y + BAND, f"<b>{html.escape(text)}</b>")
