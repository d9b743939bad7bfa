"""The scheduler alone: fake links, no processes. It decides; the caller carries out."""

from __future__ import annotations

import time

import pytest

from ipyworkers import protocol as p
from ipyworkers.errors import TaskCancelled, TaskFailed
from ipyworkers.kernel.peer_news import IDLE_NEWS_SECONDS, PeerNews
from ipyworkers.kernel.records import Submission
from ipyworkers.kernel.scheduler import Scheduler
from ipyworkers.kernel.sinks import RecordingSink


class FakeLinks:
    """Records what the scheduler posts; a ticket is whatever ``unpost`` says."""

    def __init__(self) -> None:
        self.posted: list[tuple[int, object]] = []
        self.unpostable = True

    def post(self, worker, msg, parts):
        self.posted.append((worker, msg))
        return (worker, msg)

    def unpost(self, ticket) -> bool:
        return self.unpostable

    def of(self, kind, worker=None) -> list:
        return [m for w, m in self.posted if isinstance(m, kind) and (worker is None or w == worker)]


@pytest.fixture
def links():
    return FakeLinks()


@pytest.fixture
def scheduler(links):
    s = Scheduler(links.post, kernel_has=lambda name: False)
    s.add_worker(1, "addr-1")
    s.add_worker(2, "addr-2")
    return s


def sub(worker, code, reads=(), writes=()) -> Submission:
    return Submission(worker, code, frozenset(reads), frozenset(writes), code, RecordingSink())


def finished(task, error=None, written=(), epochs=None) -> p.Finished:
    return p.Finished(task, 0.0, 1.0, error, {}, [], list(written), epochs or {})


def test_a_reader_is_sent_at_once_with_where_to_fetch_from(scheduler, links):
    (producer,), _ = scheduler.submit([sub(1, "x = 1", writes={"x"})])
    (reader,), _ = scheduler.submit([sub(2, "x + 1", reads={"x"})])
    (run,) = links.of(p.Run, 2)
    assert run.deps == [("x", producer.id, 1)] and run.peers == {1: "addr-1"}
    assert reader.state == "dispatched"


def test_work_and_idleness_are_told_to_the_other_workers(scheduler, links):
    (task,), _ = scheduler.submit([sub(1, "x = 1", writes={"x"})])
    assert links.of(p.PeerBusy, 2) == [p.PeerBusy(1)]
    effects = scheduler.on_finished(1, finished(task.id, written=["x"], epochs={2: 3}), None)
    assert [e.state for e in effects.endings] == ["done"]
    assert not links.of(p.PeerIdle, 2), "idle after work that went well: told once it lasts"
    assert not scheduler.tell_idle_news(time.monotonic())
    assert scheduler.tell_idle_news(time.monotonic() + IDLE_NEWS_SECONDS)
    (idle,) = links.of(p.PeerIdle, 2)
    assert idle.worker == 1 and idle.epochs == {2: 3} and "#1 ended" in idle.reason
    scheduler.submit([sub(1, "y = 2", writes={"y"})])
    assert links.of(p.PeerBusy, 2) == [p.PeerBusy(1), p.PeerBusy(1)]


def test_a_worker_between_two_tasks_in_a_row_tells_nobody(scheduler, links):
    (first,), _ = scheduler.submit([sub(1, "x = 1", writes={"x"})])
    scheduler.on_finished(1, finished(first.id, written=["x"]), None)
    scheduler.submit([sub(1, "y = 2", writes={"y"})])
    assert not scheduler.tell_idle_news(time.monotonic() + IDLE_NEWS_SECONDS)
    assert not links.of(p.PeerIdle, 2) and links.of(p.PeerBusy, 2) == [p.PeerBusy(1)]


def test_a_failure_is_the_idle_reason_and_the_root_of_cancelled_readers(scheduler, links):
    (task,), _ = scheduler.submit([sub(1, "x = 1 / 0", writes={"x"})])
    effects = scheduler.on_finished(1, finished(task.id, error=("ZeroDivisionError", "division by zero", [])), None)
    assert effects.endings[0].error.ename == "ZeroDivisionError"
    (idle,) = links.of(p.PeerIdle, 2)
    assert idle.reason == f"its last task #{task.id} failed (ZeroDivisionError: division by zero)"
    (reader,), effects = scheduler.submit([sub(2, "y = x", reads={"x"}, writes={"y"})])
    (ending,) = effects.endings
    assert ending.task is reader and ending.state == "cancelled"
    assert f"task #{task.id} on worker 1 failed (ZeroDivisionError" in str(ending.error)
    assert not links.of(p.Run, 2), "a reader of a value that will never exist is never sent"


def test_a_lost_worker_fails_its_tasks_and_the_pulls_from_it(scheduler, links):
    (task,), _ = scheduler.submit([sub(1, "x = 1", writes={"x"})])
    req, future = scheduler.request_pull("x", task.id, 1)
    effects = scheduler.remove_worker(1, "worker 1 died (signal SIGKILL)")
    assert [(e.task.id, type(e.error)) for e in effects.endings] == [(task.id, TaskFailed)]
    ((pulled, error),) = effects.pulls
    assert pulled is future and "worker 1 died (signal SIGKILL) before sending 'x'" in str(error)
    assert links.of(p.PeerLost, 2) == [p.PeerLost(1, "worker 1 died (signal SIGKILL)")]


def test_a_task_held_for_a_reader_is_cancelled_without_being_sent(scheduler, links):
    (producer,), _ = scheduler.submit([sub(1, "x = 1", writes={"x"})])
    scheduler.submit([sub(2, "x", reads={"x"})])
    (writer,), _ = scheduler.submit([sub(1, "x = 2", writes={"x"})])
    assert writer.state == "queued", "held until worker 2 has fetched the old x"
    effects = scheduler.cancel(writer, links.unpost)
    assert [(e.task, e.state) for e in effects.endings] == [(writer, "cancelled")]
    assert isinstance(effects.endings[0].error, TaskCancelled)
    assert all(run.task != writer.id for run in links.of(p.Run))


def test_a_task_already_on_its_way_is_interrupted_instead(scheduler, links):
    (task,), _ = scheduler.submit([sub(1, "import time; time.sleep(9)")])
    links.unpostable = False
    effects = scheduler.cancel(task, links.unpost)
    assert effects.endings == []
    assert links.of(p.Interrupt, 1) == [p.Interrupt(task.id)]


def test_each_task_ends_once_even_if_reported_twice(scheduler):
    (task,), _ = scheduler.submit([sub(1, "1")])
    first = scheduler.on_finished(1, finished(task.id), None)
    second = scheduler.on_unrun(1, p.Unrun(task.id, "late", None, 2.0))
    assert len(first.endings) == 1 and second.endings == []
    assert scheduler.progress[1].open == 0


def test_status_rows_say_what_a_worker_waits_for(scheduler):
    (task,), _ = scheduler.submit([sub(2, "x", reads={"x"})])
    scheduler.on_waiting(2, p.Waiting(task.id, [("x", 1)]))
    row = scheduler.worker_rows()[2]
    assert row["task_id"] == task.id and row["waiting"] == [("x", 1)]


def test_an_interrupt_reaches_the_task_a_worker_is_about_to_run(scheduler):
    (first,), _ = scheduler.submit([sub(1, "import time; time.sleep(9)")])
    scheduler.submit([sub(1, "later = 1", writes={"later"})])
    assert scheduler.busy_tasks([1, 2]) == {1: first}, "dispatched, not started (the worker builds its shell)"
    scheduler.on_started(1, p.Started(first.id, 0.0))
    assert scheduler.busy_tasks([1]) == {1: first}


def test_cancelling_a_task_sent_behind_an_unfinished_one_ends_it_at_once(scheduler, links):
    (busy,), _ = scheduler.submit([sub(1, "while True: pass")])
    (queued,), _ = scheduler.submit([sub(1, "made = 1", writes={"made"})])
    links.unpostable = False
    effects = scheduler.cancel(queued, links.unpost)
    assert [(e.task, e.state) for e in effects.endings] == [(queued, "cancelled")]
    assert p.Interrupt(queued.id) in links.of(p.Interrupt, 1), "the worker skips it when it gets there"
    assert scheduler.cancel(busy, links.unpost).endings == [], "the running one is interrupted instead"


def test_peer_news_tells_a_failure_at_once_and_a_good_idle_once_it_lasts():
    news = PeerNews()
    news.joined(1)
    assert news.busy(1), "a new worker is taken for idle by the others: its first task is told"
    assert not news.idle(1, failed=False, now=10.0) and news.due(10.0) == []
    assert news.due(10.0 + IDLE_NEWS_SECONDS) == [1]
    assert not news.busy(1), "busy again before the idle news went: nobody hears of either"
    assert news.idle(1, failed=True, now=11.0), "a failure's idle news goes at once"
    assert news.due(100.0) == [] and news.busy(1)
