"""The dashboard in a real kernel: its picture for the notebook file, its cancel buttons,
and what it draws for a session whose first work was long ago."""

from __future__ import annotations

import re

from kernel_session import KernelSession

PICTURE = "ipyworkers-dashboard-picture-"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def picture_id(session: KernelSession) -> str:
    """The display id of the picture of the latest dashboard."""
    return [d for d in session.displays if d.startswith(PICTURE)][-1]


def picture_updates(session: KernelSession, display_id: str) -> int:
    return sum(1 for m in session.messages if m["msg_type"] == "update_display_data"
               and m["content"].get("transient", {}).get("display_id") == display_id)


def test_picture_follows_the_run_once_a_second_and_is_a_plain_output(nb):
    """The notebook file keeps the latest timeline as text/html without the workers being
    stopped; the picture is published at most once a second, not at every 80 ms redraw."""
    shown = picture_id(nb)
    before = picture_updates(nb, shown)
    cell = nb.execute("%%worker 1\nimport time\nfor i in range(25):\n    time.sleep(0.1)")
    nb.execute("%%worker 2\nw = 1")
    nb.wait_for_state(cell, lambda s: s.startswith("done in"), timeout=20)

    def drawn() -> bool:
        html = nb.displays[shown]["data"]["text/html"]
        return html.count('class="task done"') >= 2 and 'class="task running"' not in html

    nb.wait_for(drawn, timeout=5, what="the picture of the ended run, with the workers still running")
    assert picture_updates(nb, shown) - before <= 2.5 / 1.0 + 3, "the picture is not throttled"
    assert nb.displays[shown]["data"]["text/plain"].startswith("ipyworkers timeline: ")
    again = nb.execute("%timeline")
    kinds = [sorted(o["data"]) for o in again.outputs if o["msg_type"] == "display_data"]
    assert kinds == [sorted([WIDGET_VIEW, "text/plain"]), ["text/html", "text/plain"]], \
        "the live widget and the picture are outputs of their own (a frontend draws only the widget of a bundle)"
    assert again.outputs[1]["transient"]["display_id"] == shown, "shown again, the picture keeps its display id"


def test_picture_gets_the_last_timeline_when_the_workers_stop(kernel):
    kernel.execute("%workers start 1")
    shown = picture_id(kernel)
    kernel.execute("%%worker 1 --block\nx = 1")
    stopped = kernel.execute("%workers stop")
    assert stopped.status == "ok", stopped.error_text
    html = kernel.displays[shown]["data"]["text/html"]
    assert 'class="task done"' in html and f'data-dashboard="{shown.removeprefix(PICTURE)}"' in html


def cancel_buttons(session: KernelSession) -> dict[str, str]:
    """{label: comm id} of the dashboard's cancel buttons shown now."""
    return {state.get("description", ""): comm for comm, state in session.widget_children("ipyworkers-cancel-bar")
            if "ipyworkers-cancel" in state.get("_dom_classes", ())}


def test_cancel_buttons_drop_a_queued_task_and_interrupt_a_running_one(nb):
    running = nb.execute("%%worker 1\nimport time\ntime.sleep(60)")
    queued = nb.execute("%%worker 1\nprint('never')")
    first, second = (c.reply["content"]["execution_count"] for c in (running, queued))
    nb.wait_for(lambda: {f"✕ In[{first}]", f"✕ In[{second}]"} <= set(cancel_buttons(nb)), timeout=10,
                what="a cancel button for each task")
    nb.wait_for_state(running, lambda s: s.startswith("running"), timeout=10)
    nb.click(cancel_buttons(nb)[f"✕ In[{second}]"])
    assert nb.wait_for_state(queued, lambda s: s.startswith("cancelled"), timeout=10) == "cancelled on worker 1"
    assert nb.cell_state(running).startswith("running"), "cancelling a queued task leaves the running one be"
    nb.wait_for(lambda: set(cancel_buttons(nb)) == {f"✕ In[{first}]"}, timeout=10, what="its button gone")
    nb.click(cancel_buttons(nb)[f"✕ In[{first}]"])
    assert nb.wait_for_state(running, lambda s: s.startswith("interrupted"), timeout=10) == "interrupted on worker 1"
    nb.wait_for(lambda: not cancel_buttons(nb), timeout=10, what="no cancel buttons once nothing runs")


BACKDATE_EARLIER_WORK = """
import dataclasses as _dc
from ipyworkers.notebook import magics as _magics
from ipyworkers.notebook.timeline import TimelineModel as _Model
_log = _magics._magics.cluster.events
with _log._lock:
    _shifted = [_dc.replace(e, time=e.time - {seconds}) for e in _log._events]
    _log._events.clear()
    _log._events.extend(_shifted)
    _log.origin -= {seconds}
_dash = _magics._magics.dashboard
with _dash._lock:
    _dash._incoming.clear()  # what it had not drawn yet is in the log, shifted
    _dash.model = _Model.from_events(_log.events(), _log.origin)
"""
"""Test helper, run in the kernel: what the session recorded so far happened ``seconds``
earlier (the event log's times and origin shift back; the dashboard redraws from it), as
if the session had started that long ago, without waiting for it."""


def test_timeline_shows_the_latest_run_readably_two_minutes_into_a_session(nb):
    assert nb.execute("%%worker 1 --block\nx = 1").status == "ok"
    assert nb.execute(BACKDATE_EARLIER_WORK.format(seconds=120)).status == "ok"
    latest = nb.execute("%%worker 2\nimport time\ntime.sleep(1)")
    nb.wait_for_state(latest, lambda s: s.startswith("done in"), timeout=20)
    nb.pump_for(0.5)
    svg = nb.execute("print(_magics._magics.dashboard.drawing.value)").stdout
    done = re.finditer(r'class="task done" data-task="(\d+)"[^>]*width="([\d.]+)%"', svg)
    bars = {int(m[1]): float(m[2]) for m in done}
    assert bars[max(bars)] >= 50, f"the latest 1 s task is {bars[max(bars)]:.1f}% of the plot's width"
