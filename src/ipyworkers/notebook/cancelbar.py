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
    def __init__(self, cluster: Cluster):
        import ipywidgets as widgets

        self.cluster = cluster
        self.widget = widgets.HBox([], layout=widgets.Layout(flex_flow="row wrap"))
        self.widget.add_class("ipyworkers-cancel-bar")
        self._shown: tuple = ()

    def update(self, pending: list[int]) -> None:
        """``pending``: the ids of the tasks not ended (the timeline's), oldest first."""
        tasks = self._cell_tasks(pending)
        key = tuple((t.id, t.started_at is not None) for t in tasks)
        if key == self._shown:
            return
        self._shown = key
        old = self.widget.children
        self.widget.children = self._buttons(tasks[:MAX_BUTTONS]) + self._more(tasks[MAX_BUTTONS:])
        for child in old:
            child.close()

    def _cell_tasks(self, pending: list[int]) -> list[Task]:
        tasks = []
        for task_id in pending:
            task = celltasks.task_by_id(self.cluster, task_id)
            if task is not None and task.cell is not None and not task.done():
                tasks.append(task)
                if len(tasks) > MAX_BUTTONS:
                    break
        return tasks

    def _buttons(self, tasks: list[Task]) -> list[Any]:
        import ipywidgets as widgets

        per_cell = Counter(t.cell for t in tasks)
        buttons = []
        for task in tasks:
            label = f"✕ In[{task.cell}]" + (f" #{task.id}" if per_cell[task.cell] > 1 else "")
            what = "interrupt it" if task.started_at is not None else "drop it, and what needs it"
            tooltip = f"cancel task #{task.id} on worker {task.worker}: {what}"
            button = widgets.Button(description=label, tooltip=tooltip, layout=widgets.Layout(width="auto"))
            button.add_class("ipyworkers-cancel")
            button.on_click(lambda _, task=task: _cancel(task))
            buttons.append(button)
        return buttons

    def _more(self, rest: list[Task]) -> list[Any]:
        import ipywidgets as widgets

        return [widgets.Label("and more: %workers cancel In[N]")] if rest else []

    def close(self) -> None:
        self.update([])


def _cancel(task: Task) -> None:
    try:
        task.cancel()
    except Exception:
        log.exception("cancelling task #%s from the dashboard failed", task.id)
