"""The dashboard's picture for the notebook file: the latest timeline as plain HTML.

JupyterLab 4 and Notebook 7 save no widget state by default, and for an output whose
bundle holds a widget view they draw the widget whatever else the bundle holds: reopened,
such an output says "Error displaying widget: model not found" (that is how
jupyterlab_widgets' renderer treats a missing model; tests/test_browser.py saw it in both
frontends, even with ``text/html`` beside the view). So the dashboard is two outputs: the
live widget, then this picture (summary and SVG, ``text/html``), kept up to date by
display id at most once every ``PICTURE_SECONDS`` and once more when the work settles or
the workers stop. A saved notebook thus holds the latest timeline, stopped or not.

Which of the two shows. The live widget carries a style that hides its own picture, so
while the widget renders one sees only the live view; where it cannot render, the style
is not in the page and the picture shows. The picture carries a style that hides the output
just before it (the widget's) when no live dashboard rendered there, so its error text
does not show either. Both rules name this dashboard's id. A frontend that strips
``<style>`` from output (an untrusted notebook) shows both the error and the picture.

A browser reload while the kernel runs: the widget renders again and hides the picture as
last saved, but the reloaded page no longer knows the picture's display id, so later
updates do not reach it; ``%timeline`` shows the dashboard again with a picture that does.
"""

from __future__ import annotations

import html
import time
import uuid

PICTURE_SECONDS = 1.0
"""The dashboard redraws every 80 ms; its picture goes to the notebook at most once a second."""
_CLASS = "ipyworkers-picture"


class Picture:
    """The picture output of one dashboard: shown by ``show``, kept current by ``offer``."""

    def __init__(self) -> None:
        self.uid = uuid.uuid4().hex[:12]
        self.display_id = f"ipyworkers-dashboard-picture-{self.uid}"
        self._latest: tuple[str, str] = ("", "")
        self._published: tuple[str, str] | None = None
        self._last = 0.0

    @property
    def selector(self) -> str:
        return f'.{_CLASS}[data-dashboard="{self.uid}"]'

    def live_style(self) -> str:
        """For the live widget: while it renders, its picture (and that output's margin) is hidden."""
        return (f"<style>{self.selector}{{display:none}}"
                f".jp-OutputArea-child:has({self.selector}){{display:none}}</style>")

    def bundle(self) -> dict:
        line, svg = self._latest
        hide_dead_widget = (f".jp-OutputArea-child:has(+ .jp-OutputArea-child {self.selector})"
                            ":not(:has(.ipyworkers-dashboard)){display:none}")
        body = (f'<div class="{_CLASS}" data-dashboard="{self.uid}"><style>{hide_dead_widget}</style>'
                f'<div class="ipyworkers-summary">{html.escape(line)}</div>{svg}</div>')
        return {"text/html": body, "text/plain": f"ipyworkers timeline: {line}"}

    def show(self, line: str, svg: str) -> None:
        """Display it here (in the running cell), with this dashboard's display id;
        ``line`` is the summary, in plain text."""
        from IPython.display import display

        self._latest = (line, svg)
        self._published, self._last = self._latest, time.monotonic()
        display(self.bundle(), raw=True, display_id=self.display_id)

    def offer(self, line: str, svg: str) -> None:
        """The latest drawing; published by ``flush``."""
        self._latest = (line, svg)

    def flush(self, force: bool = False) -> bool:
        """Publish the latest drawing if it changed and ``PICTURE_SECONDS`` have passed
        since the last one (or ``force``); True if it did."""
        if self._published is None or self._latest == self._published:
            return False
        now = time.monotonic()
        if not force and now - self._last < PICTURE_SECONDS:
            return False
        from IPython.display import update_display

        self._published, self._last = self._latest, now
        update_display(self.bundle(), raw=True, display_id=self.display_id)
        return True
