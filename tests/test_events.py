"""The event log keeps a bounded window of recent events and says what it dropped."""

from __future__ import annotations

import pytest

from ipyworkers.kernel import events as ev
from ipyworkers.notebook.timeline import TimelineModel


def short_task(log: ev.EventLog, task: int, t: float, worker: int = 1) -> None:
    log.record(ev.TASK_QUEUED, worker=worker, task=task, at=t)
    log.record(ev.TASK_STARTED, worker=worker, task=task, at=t + 0.1)
    log.record(ev.TASK_FINISHED, worker=worker, task=task, at=t + 0.2)


def test_a_small_log_keeps_everything_in_order():
    log = ev.EventLog()
    short_task(log, 1, 0.0)
    log.record(ev.TRANSFER, worker=2, task=2, at=0.3, name="x", source=1, dest=2, bytes=10, start=0.2, end=0.3)
    assert [e.kind for e in log.events()] == [ev.TASK_QUEUED, ev.TASK_STARTED, ev.TASK_FINISHED, ev.TRANSFER]
    assert [e.data["bytes"] for e in log.events(ev.TRANSFER)] == [10]
    assert (len(log), log.recorded, log.dropped) == (4, 4, 0)


def test_the_window_is_bounded_and_what_left_it_is_counted():
    log = ev.EventLog(max_events=10)
    for i in range(25):
        log.record(ev.TRANSFER, worker=1, at=float(i), name="x", source=2, dest=1, bytes=i, start=i, end=i)
    kept = log.events()
    assert len(log) == len(kept) == 10
    assert [e.data["bytes"] for e in kept] == list(range(15, 25))
    assert (log.recorded, log.dropped) == (25, 15)
    assert log.dropped_totals() == {"events": 15, "tasks": {}, "bytes": sum(range(15))}


def test_subscribers_see_every_event_even_those_the_log_drops():
    log = ev.EventLog(max_events=3)
    seen: list[int] = []
    unsubscribe = log.subscribe(lambda e: seen.append(e.task))
    for i in range(50):
        short_task(log, i, float(i))
    assert seen == [i for i in range(50) for _ in range(3)]
    unsubscribe()
    short_task(log, 50, 50.0)
    assert len(seen) == 150


def test_open_tasks_and_workers_outlive_the_window():
    log = ev.EventLog(max_events=6)
    log.record(ev.WORKER_STARTED, worker=1, at=0.0)
    log.record(ev.WORKER_STARTED, worker=2, at=0.0)
    log.record(ev.TASK_QUEUED, worker=2, task=0, at=0.0)
    log.record(ev.TASK_STARTED, worker=2, task=0, at=0.5)
    for i in range(1, 101):
        short_task(log, i, float(i))
    kept = log.events()
    assert [(e.kind, e.worker, e.task) for e in kept[:4]] == [
        (ev.WORKER_STARTED, 1, None), (ev.WORKER_STARTED, 2, None),
        (ev.TASK_QUEUED, 2, 0), (ev.TASK_STARTED, 2, 0)]
    assert [e.task for e in kept[4:]] == [99, 99, 99, 100, 100, 100]
    assert log.recorded == len(log) + log.dropped

    model = TimelineModel.from_log(log)
    assert model.bars[0].state == "running" and model.bars[0].start == 0.5 - log.origin
    assert model.task_count == 101  # 2 in the events kept, 99 counted as dropped
    assert model.rows() == [0, 1, 2]

    log.record(ev.TASK_FINISHED, worker=2, task=0, at=200.0)
    assert [e.task for e in log.events(ev.TASK_QUEUED)] == [100]  # released once the task ended
    assert log.recorded == len(log) + log.dropped
    assert log.dropped_totals()["tasks"] == {1: 99, 2: 1}


def test_a_worker_keeps_only_its_latest_lifecycle_event_past_the_window():
    log = ev.EventLog(max_events=2)
    log.record(ev.WORKER_STARTED, worker=1, at=0.0)
    log.record(ev.WORKER_DIED, worker=1, at=1.0, reason="killed")
    log.record(ev.WORKER_STARTED, worker=1, at=2.0)
    for i in range(10):
        short_task(log, i, 3.0 + i)
    assert [(e.kind, e.time) for e in log.events() if e.kind in ev.WORKER_LIFECYCLE] == [(ev.WORKER_STARTED, 2.0)]
    assert log.recorded == len(log) + log.dropped


def test_a_window_must_hold_at_least_one_event():
    with pytest.raises(ValueError, match="at least 1"):
        ev.EventLog(max_events=0)
