"""A cell waiting in the kernel's main thread for its tasks (``--block``, ``%wait``): the
output shown as it comes, the stop button, and the error the cell ends with."""

from __future__ import annotations

from ..errors import TaskCancelled
from ..kernel.cluster import Cluster
from ..kernel.tasks import Task, TaskGroup
from .blocked import QueueSink
from .outputs import CellOutput


def wait_showing(cluster: Cluster | None, handle: Task | TaskGroup, sink: QueueSink | None = None,
                 prefix_lines: bool = False) -> None:
    """Wait in the kernel's main thread, showing output as it comes; the stop button
    stops the work (see ``stop_button``). A ``--block`` cell's output is written as it
    comes (batched); the cells of the waited tasks that show their output as display
    outputs get their final state published from here, so it is part of this cell's
    execution for a headless runner."""
    while True:
        try:
            while not handle.done():
                if sink is not None:
                    sink.drain(prefix_lines)
                _wait_briefly(handle)
            break
        except KeyboardInterrupt:
            if stop_button(cluster, handle):
                break
    if sink is not None:
        sink.drain(prefix_lines, final=True)
    for shown in {id(t.sink): t.sink for t in tasks_of(handle) if isinstance(t.sink, CellOutput)}.values():
        shown.sync()


def stop_button(cluster: Cluster | None, handle: Task | TaskGroup) -> bool:
    """The stop button, pressed while a cell waits for ``handle``: its tasks not yet
    running are cancelled, and the code running (or waiting for its inputs) is
    interrupted, waiting up to 2 s for it to stop. If it stopped, True: the cell ends
    now, with the tasks' own KeyboardInterrupt (``cell_error``). If a worker did not
    stop, the cell ends with a KeyboardInterrupt that names it and how to restart it."""
    if cluster is None or not cluster.running:
        raise KeyboardInterrupt
    pending = [t for t in tasks_of(handle) if not t.done()]
    current = {row["id"]: row.get("task_id") for row in cluster.status()}
    running = sorted({t.worker for t in pending if current.get(t.worker) == t.id})
    for task in pending:
        if current.get(task.worker) != task.id:
            cluster.cancel(task)
    report = cluster.interrupt(running) if running else {}
    stuck = [outcome_line(w, outcome) for w, outcome in sorted(report.items()) if outcome != "interrupted"]
    if stuck:
        raise KeyboardInterrupt("\n".join(stuck))
    return True


def outcome_line(worker: int, outcome: str) -> str:
    """One line of ``Cluster.interrupt``'s report."""
    return outcome if outcome.startswith(f"worker {worker} ") else f"worker {worker}: {outcome}"


def _wait_briefly(handle: Task | TaskGroup) -> None:
    pending = next((t for t in tasks_of(handle) if not t.done()), None)
    if pending is not None:
        try:
            pending.wait(0.02)
        except TimeoutError:
            pass


def cell_error(tasks: list[Task]) -> BaseException | None:
    """The error a cell that waited for ``tasks`` ends with: the first that is a cause (an
    exception, an interrupt, a death) rather than a task cancelled because of another's;
    or, if the stop button left some cancelled but still queued behind other work on
    their worker, a KeyboardInterrupt that says so."""
    errors = [t.error for t in tasks if t.error is not None]
    error = next((e for e in errors if not isinstance(e, TaskCancelled)), errors[0] if errors else None)
    queued = [t for t in tasks if not t.done()]
    if error is None and queued:
        which = ", ".join(f"#{t.id} on worker {t.worker}" for t in queued)
        error = KeyboardInterrupt(f"cancelled task {which}: it will be skipped when its worker gets to it")
    return error


def tasks_of(handle: Task | TaskGroup) -> list[Task]:
    return handle.tasks if isinstance(handle, TaskGroup) else [handle]
