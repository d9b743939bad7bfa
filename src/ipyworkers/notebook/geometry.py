"""Shared by the drawing's modules: its sizes, the frame that maps time and rows to
positions, and the tooltips (see ``svg`` for how they work without a script)."""

from __future__ import annotations

from dataclasses import dataclass

LABEL_COLUMN = 70
"""Pixels left of the plot for the row labels (the SVG's padding)."""
AXIS_HEIGHT = 22
BAND = 24
"""Height of a row's bars; below them, the row's lane for the labels of arrows and marks."""
LANE = 13
ROW_HEIGHT = BAND + LANE
LEGEND_LINE = 17
STATES = ("done", "running", "waiting", "failed", "cancelled")
FAILED_BORDER = "#cf222e"
TIP_LINES = 6
STYLE = """<style>
svg.ipyworkers-timeline .tip foreignObject{visibility:hidden;pointer-events:none}
svg.ipyworkers-timeline .tip:hover foreignObject{visibility:visible}
svg.ipyworkers-timeline .ipw-tip{position:absolute;max-width:340px;padding:4px 7px;background:#fff;color:#1f2328;
border:1px solid #8c959f;border-radius:4px;box-shadow:0 2px 6px rgba(0,0,0,.25);font:11px/1.35 sans-serif;
text-align:left;white-space:normal;overflow-wrap:anywhere}
svg.ipyworkers-timeline .ipw-tip pre{margin:2px 0;font:10.5px/1.3 monospace;white-space:pre-wrap}
svg.ipyworkers-timeline .ipw-tip .err{color:#cf222e}
svg.ipyworkers-timeline text.lane,svg.ipyworkers-timeline text.bar-label{paint-order:stroke;stroke-linejoin:round}
</style>"""
DEFS = ('<defs><marker id="ipw-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#6e40c9"/></marker>'
        '<pattern id="ipw-stripes" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="3" height="6" fill="#fff" fill-opacity="0.45"/></pattern></defs>')


@dataclass(frozen=True)
class Frame:
    """Time to x (a percentage of the plot) and rows to y; ``plot`` is the plot's width in
    pixels at the narrowest the drawing gets, for deciding what text fits."""

    t0: float
    t1: float
    plot: float
    row_y: dict[int, int]
    height: int

    def frac(self, t: float) -> float:
        return (min(max(t, self.t0), self.t1) - self.t0) / (self.t1 - self.t0)

    def x(self, t: float) -> str:
        return f"{self.frac(t) * 100:.3f}%"

    def px(self, t: float) -> float:
        return self.frac(t) * self.plot


def tip(frame: Frame, hit: str, x_frac: float, y_top: float, y_bottom: float, body: str) -> str:
    """``hit`` (a transparent shape) with a tooltip that shows while it is hovered: beside
    the shape, below it or above it, whichever has more room (the legend is room too)."""
    side = f"left:{x_frac * 100:.2f}%" if x_frac <= 0.55 else f"right:{(1 - x_frac) * 100:.2f}%"
    below = frame.height + LEGEND_LINE + 6 - y_bottom
    if below >= min(y_top, TIP_LINES * 15):
        box, place = f'y="{y_bottom:.0f}" height="100%"', "top:2px"
    else:
        box, place = f'y="0" height="{y_top:.0f}"', "bottom:2px"
    return (f'<g class="tip">{hit}<foreignObject x="0" {box} width="100%" visibility="hidden">'
            f'<div xmlns="http://www.w3.org/1999/xhtml" style="position:relative;width:100%;height:100%">'
            f'<div class="ipw-tip" style="{side};{place}">{body}</div></div></foreignObject></g>')
