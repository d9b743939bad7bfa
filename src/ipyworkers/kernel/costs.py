"""What ``%%parallel --auto`` plans with: measured costs, read from the cluster's event log.

* A statement's cost is the median of its last ``RECENT`` run times in ``%%parallel``
  runs (tagged or automatic), keyed by its code (``plan.graph.statement_key``). A run
  time is ``task-started`` to the task's end, on the worker, after its inputs arrived.
  A task that ran several statements (a tagged group) has its time shared among them in
  proportion to what they cost when run alone, or evenly where that is unknown.
* A name's transfer cost is the median size of its last ``RECENT`` transfers.

Pure over events: nothing here holds state, so the measurements are those the log
still has (its last 50,000 events).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from . import events as ev

RECENT = 5
"""Observations kept per statement or name: recent ones, so a changed input shows soon."""


def measured(events: Iterable[ev.Event]) -> tuple[dict[str, float], dict[str, float]]:
    """(statement key -> seconds, name -> bytes), from the ``%%parallel`` runs in ``events``."""
    keys: dict[int, list[str]] = {}
    started: dict[int, float] = {}
    ended: dict[int, float] = {}
    sizes: dict[str, list[float]] = {}
    for event in events:
        if event.kind == ev.PLAN:
            for task, statements in event.data.get("statements", {}).items():
                keys[int(task)] = list(statements)
        elif event.kind == ev.TASK_STARTED and event.task is not None:
            started[event.task] = event.time
        elif event.kind == ev.TASK_FINISHED and event.task is not None:
            ended[event.task] = event.time
        elif event.kind == ev.TRANSFER and event.data.get("name") != "stream":
            sizes.setdefault(event.data["name"], []).append(float(event.data.get("bytes", 0)))
    runs = sorted((task, ended[task] - started[task]) for task in keys if task in started and task in ended)
    alone: dict[str, list[float]] = {}
    for task, seconds in runs:
        if len(keys[task]) == 1:
            alone.setdefault(keys[task][0], []).append(seconds)
    typical = {key: statistics.median(times[-RECENT:]) for key, times in alone.items()}
    times: dict[str, list[float]] = {}
    for task, seconds in runs:
        for key, share in _shares(keys[task], typical):
            times.setdefault(key, []).append(seconds * share)
    costs = {key: statistics.median(values[-RECENT:]) for key, values in times.items()}
    return costs, {name: statistics.median(values[-RECENT:]) for name, values in sizes.items()}


def _shares(keys: list[str], typical: dict[str, float]) -> list[tuple[str, float]]:
    """Each statement's share of its task's time."""
    if len(keys) == 1:
        return [(keys[0], 1.0)]
    weights = [typical.get(key) for key in keys]
    if all(w is not None for w in weights) and sum(weights) > 0:
        total = sum(weights)
        return [(key, w / total) for key, w in zip(keys, weights, strict=True)]
    return [(key, 1.0 / len(keys)) for key in keys]
