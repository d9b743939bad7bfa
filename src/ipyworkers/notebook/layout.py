"""Where text goes on the timeline so that none of it collides. Pure: numbers in, numbers out.

The drawing takes the width of its container: times are percentages of the plot, text
keeps its size in pixels. Text is therefore placed for the narrowest width the drawing
is laid out for (its ``min-width``): two labels apart there are further apart at any
wider width, and a label that fits in a bar there fits at any wider width too.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

CHAR_WIDTH = 0.6
"""Average advance of a character, as a fraction of the font size (sans-serif, a little
generous: an estimate that is too wide only drops a label that would have fitted)."""
GAP = 6.0


def text_width(text: str, font_size: float = 11.0) -> float:
    return len(text) * font_size * CHAR_WIDTH


def fits(text: str, room: float, font_size: float = 11.0, padding: float = 6.0) -> bool:
    """Whether ``text`` fits in ``room`` pixels, with ``padding`` to spare."""
    return text_width(text, font_size) + padding <= room


@dataclass(frozen=True, slots=True)
class LaneLabel:
    """A label wanted at ``x`` pixels into a lane (the arrow head, the mark); labels of
    higher ``priority`` are placed first."""

    x: float
    text: str
    priority: int = 0


@dataclass(slots=True)
class Placed:
    """Where a label went: ``index`` into the labels asked for, the ``text`` to draw (with
    "+N" for N labels dropped next to it, when that fits too) and its ``anchor``: "start"
    puts the text right of ``x``, "end" left of it (near the lane's right end)."""

    index: int
    left: float
    width: float
    anchor: str
    text: str
    priority: int = 0
    hidden: int = 0

    @property
    def right(self) -> float:
        return self.left + self.width


def place_lane(labels: list[LaneLabel], width: float, font_size: float = 10.0) -> list[Placed]:
    """Labels in one lane of ``width`` pixels, none overlapping: greedily by priority then
    position, each right of its ``x`` or, if that runs off the end, left of it. A label
    that would overlap one already placed is dropped, and counted on that one if it is
    of the same priority (the same kind of thing)."""
    placed: list[Placed] = []  # sorted by left
    lefts: list[float] = []
    for index in sorted(range(len(labels)), key=lambda i: (-labels[i].priority, labels[i].x)):
        label = labels[index]
        size = text_width(label.text, font_size)
        anchor, left = ("start", label.x) if label.x + size <= width else ("end", label.x - size)
        if left < 0:
            continue
        at = bisect_left(lefts, left)
        blocker = _blocker(placed, at, left, left + size)
        if blocker is not None:
            if blocker.priority == label.priority:
                blocker.hidden += 1
            continue
        placed.insert(at, Placed(index, left, size, anchor, label.text, label.priority))
        lefts.insert(at, left)
    _count_dropped(placed, width, font_size)
    return placed


def _blocker(placed: list[Placed], at: int, left: float, right: float) -> Placed | None:
    """The placed label that [left, right] would come within ``GAP`` of, if any."""
    if at > 0 and placed[at - 1].right + GAP > left:
        return placed[at - 1]
    if at < len(placed) and right + GAP > placed[at].left:
        return placed[at]
    return None


def _count_dropped(placed: list[Placed], width: float, font_size: float) -> None:
    """Append "+N" to a label that stands for N dropped ones, where the longer text fits."""
    for i, label in enumerate(placed):
        if not label.hidden:
            continue
        extra = text_width(f" +{label.hidden}", font_size)
        if label.anchor == "start":
            limit = placed[i + 1].left - GAP if i + 1 < len(placed) else width
            grows = label.right + extra <= limit
        else:
            limit = placed[i - 1].right + GAP if i > 0 else 0.0
            grows = label.left - extra >= limit
        if grows:
            label.text += f" +{label.hidden}"
            label.width += extra
            if label.anchor == "end":
                label.left -= extra


def tick_step(span: float, plot_width: float, min_spacing: float = 64.0) -> float:
    """A round step for axis ticks, at least ``min_spacing`` pixels apart."""
    most = max(1, int(plot_width / min_spacing))
    for step in (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60,
                 120, 300, 600, 1800, 3600):
        if span / step <= most:
            return step
    return 7200.0


def wrap(items: list[float], width: float, gap: float = 14.0) -> list[tuple[int, float]]:
    """(line, x) for items of the given widths laid left to right, wrapping at ``width``."""
    out: list[tuple[int, float]] = []
    line, x = 0, 0.0
    for size in items:
        if x > 0 and x + size > width:
            line, x = line + 1, 0.0
        out.append((line, x))
        x += size + gap
    return out
