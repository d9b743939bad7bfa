"""``%%parallel`` cells on a running cluster: the plan (tagged or ``--auto``), its tasks,
and the ``parallel-plan`` event that lets the timeline draw the plan against the run.

Both kinds of cell get a prediction from the same model (``plan.schedule``), costed
with what earlier runs measured (``costs``): an ``--auto`` cell is placed with it, a
tagged cell is placed by its tags and only predicted. An ``--auto`` cell runs one task
per statement, so each statement's time is measured on its own and drawn against its
slot; setup lines (imports, defs, constants) run as one replicated task on each worker
that needs them, as in a tagged cell.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ClusterError
from ..plan import export, parallel, schedule
from ..plan.analysis import analyze
from . import costs
from . import events as ev
from .code import label as label_of
from .code import transform
from .records import Submission
from .tasks import TaskGroup

SHOW_WIDTH = 60
"""``--show`` columns grow to fit the cell's lines up to this many characters."""

if TYPE_CHECKING:
    from .cluster import Cluster
    from .sinks import Sink


def plan_cell(cluster: Cluster, cell: str, *, default: int | None = None, auto: bool = False,
              workers: Sequence[int] | None = None) -> schedule.AutoPlan:
    """The placement of ``cell`` and its prediction. Raises ``SyntaxError`` ("line N: ..."),
    ``TagError`` (a tag or ``--default`` naming no worker) or ``ClusterError``."""
    source = transform(cell)
    schedule.parse_cell(source)
    measured, sizes = costs.measured(cluster.events.events())
    if auto:
        if default is not None:
            raise ClusterError("--default is for tagged cells: --auto places untagged statements itself")
        everyone = _auto_workers(cluster, None)
        return schedule.auto_plan(source, everyone, measured, sizes, place_on=_auto_workers(cluster, workers))
    if workers is not None:
        raise ClusterError("--workers goes with --auto: in a tagged cell, the tags name the workers")
    ids = cluster.check_ids(None) if cluster.running else list(range(1, cluster.n_workers + 1))
    groups = parallel.split(source, ids, default)
    return schedule.tagged_plan(source, groups, ids, measured, sizes)


def _auto_workers(cluster: Cluster, workers: Sequence[int] | None) -> list[int]:
    """The live workers among ``workers`` (default: all): a tag may pin a statement to any
    of them, and unpinned statements go to those ``--workers`` names."""
    if not cluster.running:
        return cluster.check_ids(workers)
    ids = cluster.live_workers(workers)
    if not ids:
        raise ClusterError("no live worker to place the statements on: restart some (%workers restart)")
    return ids


def run(cluster: Cluster, cell: str, *, default: int | None, auto: bool, workers: Sequence[int] | None,
        sink: Sink, cell_number: int | None) -> TaskGroup:
    """Submit the cell's tasks and record its plan; returns at once."""
    planned = plan_cell(cluster, cell, default=default, auto=auto, workers=workers)
    groups = planned.statement_groups() if auto else planned.groups
    subs = []
    for group in groups:
        reads, writes = cluster._names(analyze(group.source))
        subs.append(Submission(group.worker, group.code, reads, writes, label_of(group.source), sink, cell_number,
                               False, kernel_values=cluster._kernel_values(reads), replicas=group.replicas))
    submitted = time.monotonic()
    tasks = cluster._submit(subs)
    cluster.events.record(ev.PLAN, at=submitted, **plan_record(planned, groups, tasks, cell_number, auto))
    return TaskGroup(tasks)


def plan_record(planned: schedule.AutoPlan, groups: list[parallel.Group], tasks: list, cell_number: int | None,
                auto: bool) -> dict[str, Any]:
    """The ``parallel-plan`` event's data: the statements each task runs (keys for the
    measurements) and the predicted slots, in seconds after the event."""
    statements: dict[int, list[str]] = {}
    copies = iter(tasks)
    for group in groups:
        keys = [schedule.statement_key(s.source) for s in planned.statements_of(group)]
        for _ in group.workers:
            statements[next(copies).id] = keys
    return {"cell": cell_number, "auto": auto, "workers": list(planned.workers), "tasks": [t.id for t in tasks],
            "statements": statements, "slots": schedule.timeline(planned), "makespan": planned.makespan,
            "serial": planned.serial, "unit": planned.unit}


def show(cluster: Cluster, cell: str, *, default: int | None, auto: bool, workers: Sequence[int] | None) -> str:
    """Each worker's program with its sends and receives, then the prediction; runs nothing."""
    planned = plan_cell(cluster, cell, default=default, auto=auto, workers=workers)
    kernel_names = {n for n in list(cluster.namespace) if cluster._kernel_has(n)}
    with cluster._scheduler.lock:
        steps = parallel.plan(planned.groups, cluster._scheduler.flow, kernel_names)
    longest = max((len(line) for line in transform(cell).splitlines()), default=0)
    text = parallel.render(steps, list(planned.workers), width=max(36, min(SHOW_WIDTH, longest + 1)))
    return text + "\n\n" + planned.summary() if auto else text


def export_cell(cluster: Cluster, cell: str, directory: str | Path, *, default: int | None, auto: bool,
                workers: Sequence[int] | None) -> list[Path]:
    """Write ``worker_<k>.py`` per worker and ``run.py`` (see ``plan.export``)."""
    planned = plan_cell(cluster, cell, default=default, auto=auto, workers=workers)
    return export.export_program(planned, range(1, cluster.n_workers + 1), directory)
