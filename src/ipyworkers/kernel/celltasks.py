"""Tasks by the cell that made them, and what a queued task waits for: for the cell's
state line, ``Task.cancel`` and ``%workers cancel``. Reads the scheduler's state under
its lock, briefly; decides nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .tasks import Task

if TYPE_CHECKING:
    from .cluster import Cluster


def tasks_of_cell(cluster: Cluster, cell: int) -> list[Task]:
    """The tasks cell ``In[cell]`` submitted that the cluster still tracks, by id."""
    scheduler = cluster._scheduler
    with scheduler.lock:
        return sorted((t for t in scheduler.tasks.values() if t.cell == cell), key=lambda t: t.id)


def task_by_id(cluster: Cluster, task_id: int) -> Task | None:
    scheduler = cluster._scheduler
    with scheduler.lock:
        return scheduler.tasks.get(task_id)


def waits_for(cluster: Cluster, task: Task) -> list[Task]:
    """The unfinished tasks ``task`` waits for: the producers of its inputs, and the
    task its worker runs now."""
    scheduler = cluster._scheduler
    with scheduler.lock:
        record = scheduler.flow.tasks.get(task.id)
        if record is None:
            return []
        ahead = [scheduler.tasks.get(dep.version) for dep in record.deps]
        progress = scheduler.progress.get(task.worker)
        if progress is not None and progress.current is not None:
            ahead.append(scheduler.tasks.get(progress.current))
    seen: dict[int, Task] = {}
    for other in ahead:
        if other is not None and other is not task and not other.done():
            seen.setdefault(other.id, other)
    return list(seen.values())


def cell_label(task: Task, here: int | None = None) -> str:
    """``In[5]`` for a task of another cell, ``task #12`` otherwise."""
    return f"In[{task.cell}]" if task.cell is not None and task.cell != here else f"task #{task.id}"
