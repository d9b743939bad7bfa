"""The live dashboard under ``%workers start``: worker status and the timeline.

Recording an event only queues it. One background thread folds the queue into the
timeline model and redraws, at most every ``REFRESH_SECONDS`` (longer for a huge
timeline), so a flood of tiny tasks costs one redraw per interval, whose size is
bounded by the pixels, not the task count.

Two outputs: the live widget, and after it a static picture of the timeline that the
notebook file keeps (``picture.py`` says why and how only one of them shows). Under the
drawing, a cancel button per running or queued task of a cell (``cancelbar.py``).
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections import deque
from typing import Any

from ..kernel import events as ev
from ..kernel.cluster import Cluster
from .cancelbar import CancelBar
from .picture import Picture
from .runs import default_window
from .svg import render_svg
from .timeline import KERNEL, TimelineModel, summary_line

log = logging.getLogger("ipyworkers.notebook")

REFRESH_SECONDS = 0.08
TICK_SECONDS = 0.25
MAX_DRAW_SHARE_INVERSE = 8
"""Redraws take at most an eighth of the time: a small timeline (a few ms to draw) is
redrawn every 80 ms, one of 10,000 tasks (about 20 ms, with its widget message) every
160 ms, so drawing never starves the coordinator's threads in the kernel."""


class Dashboard:
    def __init__(self, cluster: Cluster, width: int = 400):
        """``width``: the narrowest the timeline is laid out for (it fills wider panes)."""
        import ipywidgets as widgets

        self.cluster = cluster
        self.width = width
        self.model = TimelineModel.from_events(cluster.events.events(), cluster.events.origin)
        self._lock = threading.Lock()
        self._incoming: deque[ev.Event] = deque()
        self._dirty = threading.Event()
        self._closed = False
        self._window: tuple[float, float] | None = None
        self.status = widgets.HTML()
        self.summary = widgets.HTML()
        self.drawing = widgets.HTML(layout=widgets.Layout(width="auto", overflow="auto"))
        self.follow = widgets.ToggleButton(value=True, description="Follow",
                                           tooltip="show the latest burst of work, live (drag the window to see more)")
        self.span = widgets.FloatRangeSlider(value=(0.0, 1.0), min=0.0, max=1.0, step=0.001,
                                             description="window (s)", continuous_update=False,
                                             readout_format=".1f",
                                             layout=widgets.Layout(flex="1 1 300px", min_width="0"))
        self.follow.observe(self._on_follow, "value")
        self.span.observe(self._on_span, "value")
        self.picture = Picture()
        self.cancels = CancelBar(cluster)
        self._pending_version = -1
        hider = widgets.HTML(self.picture.live_style(), layout=widgets.Layout(display="none"))
        controls = widgets.HBox([self.follow, self.span], layout=widgets.Layout(flex_flow="row wrap"))
        self.widget = widgets.VBox([self.status, self.summary, self.drawing, self.cancels.widget, controls, hider])
        self.widget.add_class("ipyworkers-dashboard")
        self._unsubscribe = cluster.events.subscribe(self._on_event)
        self._render()
        self._thread = threading.Thread(target=self._refresh_loop, name="ipyworkers-dashboard", daemon=True)
        self._thread.start()

    def _on_event(self, event: ev.Event) -> None:
        """On the coordinator's threads: only queue the event, never wait for a redraw."""
        self._incoming.append(event)
        if not self._dirty.is_set():
            self._dirty.set()

    def _on_follow(self, change: dict) -> None:
        if change["new"]:
            self._window = None
            self._dirty.set()

    def _on_span(self, change: dict) -> None:
        if self._updating_span:
            return
        self._window = tuple(change["new"])
        self.follow.value = False
        self._dirty.set()

    _updating_span = False

    def _refresh_loop(self) -> None:
        last, cost = 0.0, 0.0
        while not self._closed and self.cluster.running:
            woke = self._dirty.wait(TICK_SECONDS)
            if woke:
                interval = max(REFRESH_SECONDS, MAX_DRAW_SHARE_INVERSE * cost)
                time.sleep(max(0.0, interval - (time.monotonic() - last)))
            self._dirty.clear()
            if woke or self.model.running:
                last = time.monotonic()
                self._render()
                cost = time.monotonic() - last
            self._flush_picture()
        self._render()

    def _render(self) -> None:
        now = time.monotonic() - self.model.origin
        with self._lock:
            while self._incoming:
                self.model.add(self._incoming.popleft())
            running = bool(self.model.running)
            shown = self._window or default_window(self.model, now if running else None)
            svg = render_svg(self.model, now=now if running else None, window=shown, width=self.width)
            line = summary_line(self.model, now if running else None, window=shown)
            end = max(now if running else self.model.last_time, shown[1], 1e-3)
            pending = self._pending_locked()
        self.drawing.value = svg
        self.picture.offer(line, svg)
        if pending is not None:
            self.cancels.update(pending if self.cluster.running else [])
        self.summary.value = f'<span class="ipyworkers-summary">{html.escape(line)}</span>'
        self.status.value = status_html(self.cluster.status()) if self.cluster.running else "<i>workers stopped</i>"
        if self._window is None:
            self._updating_span = True
            try:
                self.span.max = end
                self.span.value = shown
            finally:
                self._updating_span = False

    def _pending_locked(self) -> list[int] | None:
        """The tasks not ended, oldest first, if the model changed since last asked."""
        if self.model.version == self._pending_version:
            return None
        self._pending_version = self.model.version
        return sorted(b.task for b in self.model.bars.values() if b.end is None and b.worker != KERNEL)

    def _flush_picture(self) -> None:
        try:
            self.picture.flush()
        except Exception:
            log.exception("publishing the dashboard's picture failed")

    def show(self) -> None:
        """Display the live widget, then its picture (the one the notebook file keeps); in
        the running cell. Shown again (``%timeline``), the picture keeps its display id."""
        from IPython.display import display

        display(self.widget)
        with self._lock:
            line, svg = summary_line(self.model), self.drawing.value
        self.picture.show(line, svg)

    def close(self) -> None:
        """Stop redrawing; the picture gets the last timeline at once, and the cancel
        buttons go."""
        self._closed = True
        self._unsubscribe()
        self._dirty.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self.cancels.close()
        self.picture.flush(force=True)


def status_html(rows: list[dict[str, Any]]) -> str:
    from .tables import STATE_COLOURS, _size, state_kind, warnings_html

    head = "".join(f"<th style='text-align:left;padding:0 .8em 0 0'>{c}</th>"
                   for c in ("worker", "host", "pid", "state", "cpu", "rss", "task", "names"))
    body = []
    for row in rows:
        names = row.get("names") or []
        shown = ", ".join(names[:6]) + (" …" if len(names) > 6 else "")
        colour = STATE_COLOURS[state_kind(row["state"])]
        task = row.get("task") or "-"
        if row.get("queued"):
            task += f" (+{row['queued']} queued)"
        cpu = "-" if row.get("cpu") is None else f"{row['cpu']:.0f}%"
        rss = "-" if row.get("rss") is None else _size(row["rss"])
        body.append(
            f"<tr><td>{row['id']}</td><td>{html.escape(_host(row))}</td><td>{row['pid'] or '-'}</td>"
            f"<td style='color:{colour}'>{html.escape(row['state'])}</td><td>{cpu}</td><td>{rss}</td>"
            f"<td>{html.escape(task)}</td>"
            f"<td>{len(names)}{': ' + html.escape(shown) if names else ''}</td></tr>"
        )
    return f"<table class='ipyworkers-status'><tr>{head}</tr>{''.join(body)}</table>" + warnings_html(rows)


def _host(row: dict[str, Any]) -> str:
    """The worker's host, and the workers it reaches only through the kernel, if any."""
    host = row.get("host") or "-"
    relayed = row.get("relayed_from") or []
    return f"{host} (via kernel from {', '.join(map(str, relayed))})" if relayed else host
