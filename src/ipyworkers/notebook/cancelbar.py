"""Cancel buttons in the dashboard: one per running or queued task of a notebook cell.

A click calls ``Task.cancel``: a queued task is dropped, with the tasks that need what it
would make (each says so in its cell's state line); a running one is interrupted, and
nothing else. The dashboard's thread calls ``update`` after a redraw; the row is rebuilt
only when the set of tasks, or which of them run, changed. Clicks arrive on the kernel's
main thread, so they are handled while no cell runs there (non-blocking cells).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..kernel import celltasks

if TYPE_CHECKING:
    from ..kernel.cluster import Cluster
    from ..kernel.tasks import Task

log = logging.getLogger("ipyworkers.notebook")

MAX_BUTTONS = 8
"""More than this many tasks in flight get one line saying how to cancel the rest."""


class CancelBar:
    """A row of buttons; a task keeps its button while it is shown (a click that lands
    while the row changes still reaches it), and a button goes when its task ends."""

    def __init__(self, cluster: Cluster):
        import ipywidgets as widgets

        self.cluster = cluster
        self.widget = widgets.HBox([], layout=widgets.Layout(flex_flow="row wrap"))
        self.widget.add_class("ipyworkers-cancel-bar")
        self._more = widgets.Label("and more: %workers cancel In[N]")
        self._buttons: dict[int, Any] = {}
        self._shown: tuple = ()

    def update(self, pending: list[int]) -> None:
        """``pending``: the ids of the tasks not ended (the timeline's), oldest first."""
        tasks = self._cell_tasks(pending)
        shown, more = tasks[:MAX_BUTTONS], len(tasks) > MAX_BUTTONS
        key = tuple((t.id, t.started_at is not None) for t in shown) + (more,)
        if key == self._shown:
            return
        self._shown = key
        per_cell = Counter(t.cell for t in shown)
        old, self._buttons = self._buttons, {}
        for task in shown:
            self._buttons[task.id] = old.pop(task.id, None) or _button(task)
            _describe(self._buttons[task.id], task, several=per_cell[task.cell] > 1)
        self.widget.children = [*self._buttons.values()] + ([self._more] if more else [])
        for button in old.values():
            button.close()

    def _cell_tasks(self, pending: list[int]) -> list[Task]:
        tasks = []
        for task_id in pending:
            task = celltasks.task_by_id(self.cluster, task_id)
            if task is not None and task.cell is not None and not task.done():
                tasks.append(task)
                if len(tasks) > MAX_BUTTONS:
                    break
        return tasks

    def close(self) -> None:
        self.update([])


def _button(task: Task) -> Any:
    import ipywidgets as widgets

    button = widgets.Button(layout=widgets.Layout(width="auto"))
    button.add_class("ipyworkers-cancel")
    button.on_click(lambda _: _cancel(task))
    return button


def _describe(button: Any, task: Task, several: bool) -> None:
    """``✕ In[7]``, or ``✕ In[7] #12`` when the cell has several tasks shown."""
    button.description = f"✕ In[{task.cell}]" + (f" #{task.id}" if several else "")
    what = "interrupt it" if task.started_at is not None else "drop it, and what needs it"
    button.tooltip = f"cancel task #{task.id} on worker {task.worker}: {what}"


def _cancel(task: Task) -> None:
    try:
        task.cancel()
    except Exception:
        log.exception("cancelling task #%s from the dashboard failed", task.id)
