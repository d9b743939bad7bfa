"""``%workers cancel In[7] | #12 ...``: cancel the tasks of a cell, or a task, and say what
happened to each. A word that names nothing is a ``ValueError`` (the magic's usage error)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..kernel import celltasks

if TYPE_CHECKING:
    from ..kernel.cluster import Cluster
    from ..kernel.tasks import Task

CELL = re.compile(r"(?:In)?\s*\[\s*(\d+)\s*\]", re.I)
TASK = re.compile(r"#(\d+)")
USAGE = "name a cell as In[7] or a task as #12: %workers cancel In[7] #12"


def targets(cluster: Cluster, words: list[str]) -> list[Task]:
    """The tasks ``words`` name, in order, each once."""
    if not words:
        raise ValueError(f"what to cancel? {USAGE}")
    found: dict[int, Task] = {}
    for word in words:
        cell, task = CELL.fullmatch(word), TASK.fullmatch(word)
        if cell:
            tasks = celltasks.tasks_of_cell(cluster, int(cell[1]))
            if not tasks:
                raise ValueError(f"In[{cell[1]}] has no tasks on the workers (it ran no worker code, "
                                 "or its tasks ended long ago and are forgotten)")
        elif task:
            one = celltasks.task_by_id(cluster, int(task[1]))
            if one is None:
                raise ValueError(f"there is no task #{task[1]} (or it ended long ago and is forgotten)")
            tasks = [one]
        else:
            raise ValueError(f"{word!r} names no cell or task; {USAGE}")
        found.update((t.id, t) for t in tasks)
    return list(found.values())


def cancel(cluster: Cluster, words: list[str]) -> list[str]:
    """Cancel what ``words`` name; a line for each task saying what happened to it."""
    lines = []
    for task in targets(cluster, words):
        what = f"task #{task.id} on worker {task.worker}" + (f" (In[{task.cell}])" if task.cell is not None else "")
        if task.done():
            lines.append(f"{what} had already ended: {task.state}")
            continue
        started = task.started_at is not None
        task.cancel()
        if started:
            lines.append(f"{what}: interrupted")
        elif task.done():
            lines.append(f"{what}: cancelled before it started")
        else:
            lines.append(f"{what}: cancelled; it is skipped when worker {task.worker} gets to it")
    return lines
