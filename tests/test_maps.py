"""Fine-grained work on real workers: submit, maps, mapreduce, the streaming processor.

No absolute times: only orderings and counts.
"""

from __future__ import annotations

import _thread
import collections
import operator
import os
import signal
import threading
import time

import pytest

from ipyworkers import ClusterError, RemoteError, TaskCancelled
from ipyworkers.kernel import batching, jobs, mapreduce, sources
from ipyworkers.kernel import events as ev


def square(v):
    return v * v


def add3(a, b, c):
    return a + b + c


def nap(v, seconds=0.01):
    time.sleep(seconds)
    return v


def jittery(v):
    time.sleep(0.002 * (v % 4))
    return v * 10


def bad_13(v):
    if v == 13:
        raise ValueError(f"item {v} is bad")
    return v


# -- futures ------------------------------------------------------------------------------------------


def test_submit_runs_a_plain_call_with_args_kwargs_and_on(cluster):
    task = cluster.submit(add3, 1, 2, c=3)
    assert task.result == 6
    assert cluster.submit(square, 7, on=2).wait().worker == 2
    assert cluster.submit(square, 7, on=[2]).result == 49
    assert task.succeeded()


def test_submit_goes_to_the_worker_with_fewest_open_tasks(cluster):
    busy = cluster.submit(nap, 1, 1.0, on=1)
    assert cluster.submit(square, 3).worker == 2
    busy.cancel()


def test_as_completed_yields_in_the_order_tasks_end(cluster):
    slow = cluster.submit(nap, "slow", 0.6, on=1)
    fast = cluster.submit(nap, "fast", 0.0, on=2)
    assert [t.result for t in cluster.as_completed([slow, fast])] == ["fast", "slow"]


def test_a_submitted_call_is_one_bar_with_a_start(cluster):
    task = cluster.submit(square, 4)
    task.wait()
    kinds = [e.kind for e in cluster.events.events() if e.task == task.id]
    assert kinds[0] == ev.TASK_QUEUED and kinds[-2:] == [ev.TASK_STARTED, ev.TASK_FINISHED]
    assert task.started_at is not None and task.started_at <= task.finished_at


# -- maps ----------------------------------------------------------------------------------------------


def test_map_and_imap_keep_input_order(cluster):
    expected = [v * 10 for v in range(200)]
    assert cluster.map(jittery, range(200), progress=False) == expected
    assert list(cluster.imap(jittery, range(200), chunksize=3, progress=False)) == expected
    assert list(cluster.imap(jittery, iter(range(200)), progress=False)) == expected


def test_imap_unordered_returns_every_result_once(cluster):
    out = list(cluster.imap_unordered(jittery, (v for v in range(300)), chunksize=7, progress=False))
    assert sorted(out) == [v * 10 for v in range(300)]


def test_starmap_and_several_iterables(cluster):
    rows = [(a, a + 1, a + 2) for a in range(50)]
    assert cluster.starmap(add3, rows, progress=False) == [sum(r) for r in rows]
    assert cluster.map(add3, range(5), [10] * 5, (100 for _ in range(5)), progress=False) == [
        110 + v for v in range(5)]


def test_map_reads_a_slow_generator_as_it_goes(cluster):
    cluster.map(square, range(4), chunksize=1, progress=False)  # each worker imports this module first
    yielded = []

    def slow_input():
        for v in range(6):
            time.sleep(0.15)
            yielded.append(time.monotonic())
            yield v

    results = cluster.imap(square, slow_input(), progress=False)
    first = next(results)
    first_at = time.monotonic()
    assert first == 0
    rest = list(results)
    assert rest == [v * v for v in range(1, 6)]
    assert first_at < yielded[-1]  # the first result came while the generator was still going
    assert len([t for t in yielded if t <= first_at]) <= 2


def test_memory_in_flight_is_bounded_for_an_endless_input(cluster):
    taken = []

    def endless():
        v = 0
        while True:
            taken.append(v)
            yield v
            v += 1

    results = cluster.imap(square, endless(), progress=False)
    assert [next(results) for _ in range(10)] == [v * v for v in range(10)]
    time.sleep(0.5)  # nobody consumes: the feeder must stop at its bound
    seen = len(taken)
    time.sleep(0.3)
    assert len(taken) == seen
    assert seen <= sources.INPUT_BUFFER + 2 * batching.MAX_CHUNK * jobs.UNCONSUMED_PER_WORKER * 2 + 10
    results.cancel()


def test_batches_are_bars_with_their_item_counts(cluster):
    cluster.map(square, range(100), chunksize=10, progress=False)
    queued = [e for e in cluster.events.events(ev.TASK_QUEUED) if e.data["label"].startswith("map square")]
    assert len(queued) == 10
    assert all(e.data["items"] == 10 and e.data["function"] == "square" for e in queued)  # the timeline's groups
    assert "map square[0:10]" in [e.data["label"] for e in queued]
    assert "(10 items)" in queued[0].data["code"]
    ended = {e.task for e in cluster.events.events(ev.TASK_FINISHED)}
    started = {e.task for e in cluster.events.events(ev.TASK_STARTED)}
    assert {e.task for e in queued} <= ended & started


def test_progress_reports_the_total_when_known(cluster):
    known, unknown = [], []
    cluster.map(square, range(40), progress=lambda done, total: known.append((done, total)))
    cluster.map(square, iter(range(40)), progress=lambda done, total: unknown.append((done, total)))
    assert known[0] == (0, 40) and known[-1] == (40, 40)
    assert unknown[0] == (0, None) and unknown[-1] == (40, 40)


# -- batch sizes and batches in flight (pure) -----------------------------------------------------------------


def _sizes(chunker: batching.Chunker, per_item: float) -> list[int]:
    sizes, sent = [], 0
    while sent < chunker.total:
        size = min(chunker.next(sent), chunker.total - sent)
        chunker.observe(size, size * per_item)
        sizes.append(size)
        sent += size
    return sizes


def test_batches_shrink_towards_the_end_but_not_below_the_tail_floor():
    per_item = 0.0002
    sizes = _sizes(batching.Chunker(None, 10_000, 2), per_item)
    floor = int(batching.TAIL_SECONDS / per_item)
    assert min(sizes[1:-1]) >= floor  # besides the first (a probe), only the last may hold less: what was left
    assert len(sizes) < 60


def test_a_fold_aims_at_longer_batches_than_a_map():
    per_item = 0.0002
    mapped = _sizes(batching.Chunker(None, 10_000, 2), per_item)
    folded = _sizes(batching.Chunker(None, 10_000, 2, batching.FOLD_TARGET_SECONDS), per_item)
    assert max(folded) * per_item >= 0.9 * batching.FOLD_TARGET_SECONDS
    assert len(folded) < len(mapped)


# -- mapreduce -----------------------------------------------------------------------------------------------


def test_mapreduce_streams_and_folds(cluster):
    assert cluster.mapreduce(square, operator.add, (v for v in range(2000)), progress=False) == sum(
        v * v for v in range(2000))
    assert cluster.mapreduce(add3, operator.add, range(10), range(10), range(10), progress=False) == 3 * 45
    assert cluster.mapreduce(square, operator.add, [], initial=5, progress=False) == 5


def test_mapreduce_folds_in_a_tree_on_the_workers(cluster, monkeypatch):
    monkeypatch.setattr(mapreduce, "TREE_FANIN", 1)
    assert cluster.mapreduce(square, operator.add, range(500), chunksize=10, progress=False) == sum(
        v * v for v in range(500))
    labels = [e.data["label"] for e in cluster.events.events(ev.TASK_QUEUED)]
    assert "fold square" in labels


def test_one_batch_waits_behind_the_running_one_so_the_end_is_even(cluster):
    """Enough to cover a round trip; more would be work the other workers wait for at the end."""
    cluster.map(square, range(4), chunksize=1, progress=False)  # each worker imports this module first
    before = max(t.id for t in cluster.tasks())
    assert cluster.starmap(nap, [(v, 0.03) for v in range(16)], chunksize=1, progress=False) == list(range(16))
    batches = [t for t in cluster.tasks() if t.id > before]
    for worker in (1, 2):
        mine = [t for t in batches if t.worker == worker]
        in_flight = [sum(t.submitted_at <= b.submitted_at < t.finished_at for t in mine) for b in mine]
        assert max(in_flight) == 2


def test_mapreduce_asks_for_each_partial_result_behind_the_last_batch(cluster):
    assert cluster.mapreduce(nap, operator.add, range(40), chunksize=5, progress=False) == sum(range(40))
    tasks = sorted(cluster.tasks(), key=lambda t: t.id)
    for worker in (1, 2):
        mine = [t for t in tasks if t.worker == worker]
        collect = next(t for t in mine if t.label == "collect nap")
        last_batch = max((t for t in mine if t.label.startswith("mapreduce nap")), key=lambda t: t.id)
        assert collect.submitted_at < last_batch.finished_at  # no round trip of its own at the end
    assert len([t for t in tasks if t.label == "collect nap"]) == 2


# -- the streaming processor --------------------------------------------------------------------------------


def test_processor_collects_each_result_exactly_once_on_the_callback_thread(cluster):
    got = []
    threads = set()

    def collect(value):
        threads.add(threading.current_thread().name)
        got.append(value)

    with cluster.processor(add3, collector=collect, progress=False) as p:
        for v in range(3000):
            p.add_task(v, 1, c=2)
    assert sorted(got) == [v + 3 for v in range(3000)]
    assert max(collections.Counter(got).values()) == 1
    assert threads == {"ipyworkers-callbacks"}


def test_processor_raises_the_first_remote_error_with_its_traceback(cluster):
    with pytest.raises(RemoteError) as info:
        with cluster.processor(bad_13, collector=lambda v: None, progress=False) as p:
            for v in range(100):
                p.add_task(v)
    assert info.value.ename == "ValueError"
    text = "\n".join(info.value.traceback)
    assert "bad_13" in text and "while mapping item" in text
    assert cluster.map(square, range(5), progress=False) == [0, 1, 4, 9, 16]


# -- errors ------------------------------------------------------------------------------------------------------


def test_remote_errors_come_back_with_tracebacks(cluster):
    with pytest.raises(RemoteError) as info:
        cluster.map(bad_13, range(40), chunksize=4, progress=False)
    assert "item 13 is bad" in info.value.evalue
    text = "\n".join(info.value.traceback)
    assert "bad_13" in text and "(while mapping item 13)" in text
    assert "calls.py" not in text
    with pytest.raises(RemoteError):
        list(cluster.imap_unordered(bad_13, range(40), progress=False))
    with pytest.raises(RemoteError, match="item 13 is bad"):
        _ = cluster.submit(bad_13, 13).result
    assert not [o for o in cluster.default_sink.outputs if o[0] == "error"]  # raised, not printed twice


def test_bad_input_gets_clear_errors(cluster):
    with pytest.raises(TypeError, match="must be callable, not int"):
        cluster.map(3, range(3))
    with pytest.raises(TypeError, match="must be callable"):
        cluster.submit("square")
    with pytest.raises(TypeError, match="collector given to processor"):
        cluster.processor(square, collector=5)
    with pytest.raises(ValueError, match=r"chunksize must be a whole number >= 1.*not 0"):
        cluster.map(square, range(3), chunksize=0)
    with pytest.raises(ValueError, match=r"different lengths \[3, 2, 3\]"):
        cluster.map(add3, [1, 2, 3], [1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="different lengths"):
        cluster.map(add3, iter([1, 2, 3]), [1, 2], [1, 2, 3], progress=False)
    with pytest.raises(TypeError, match="iterable 2 is not iterable"):
        cluster.map(add3, [1], 5, [1])
    with pytest.raises(TypeError, match="at least one iterable"):
        cluster.map(square)
    with pytest.raises(ZeroDivisionError):  # the input's own error, as it is
        cluster.map(square, (1 // (2 - v) for v in range(5)), progress=False)
    assert cluster.map(square, range(3), progress=False) == [0, 1, 4]


# -- deaths, interrupts, cancellation ------------------------------------------------------------------------


def _kill_later(cluster, worker: int, after: float) -> threading.Thread:
    pid = next(row["pid"] for row in cluster.status() if row["id"] == worker)

    def kill():
        time.sleep(after)
        os.kill(pid, signal.SIGKILL)

    thread = threading.Thread(target=kill)
    thread.start()
    return thread


def test_a_dead_workers_items_run_again_elsewhere(cluster):
    killer = _kill_later(cluster, 2, 0.3)
    out = cluster.map(nap, range(120), chunksize=2, progress=False)
    killer.join()
    assert out == list(range(120))
    assert [e.worker for e in cluster.events.events(ev.WORKER_DIED)] == [2]
    failed_on_2 = [e for e in cluster.events.events(ev.TASK_FAILED) if e.worker == 2]
    assert failed_on_2, "a batch was on worker 2 when it died"


def test_a_restarted_worker_gets_the_function_again(cluster):
    results = cluster.imap(nap, range(60), chunksize=1, progress=False)
    assert next(results) == 0
    cluster.restart(2)
    assert list(results) == list(range(1, 60))


@pytest.mark.parametrize("checkpoint", [3, 1000])
def test_mapreduce_survives_a_dead_worker(cluster, monkeypatch, checkpoint):
    """What the dead worker had folded since its last checkpoint runs again elsewhere."""
    monkeypatch.setattr(mapreduce, "CHECKPOINT_BATCHES", checkpoint)
    killer = _kill_later(cluster, 2, 0.4)
    assert cluster.mapreduce(nap, operator.add, range(240), chunksize=2, progress=False) == sum(range(240))
    killer.join()
    assert [e.worker for e in cluster.events.events(ev.WORKER_DIED)] == [2]
    checkpoints = [e for e in cluster.events.events(ev.TASK_QUEUED) if e.data["label"] == "checkpoint nap"]
    assert bool(checkpoints) == (checkpoint == 3)


def test_cluster_interrupt_stops_a_map_and_the_workers_stay_usable(cluster):
    outcome = {}

    def run():
        try:
            cluster.starmap(nap, [(v, 0.5) for v in range(20)], chunksize=1, progress=False)
        except BaseException as exc:
            outcome["error"] = exc

    slow = threading.Thread(target=run)
    slow.start()
    time.sleep(0.3)
    cluster.interrupt()
    slow.join(10)
    assert not slow.is_alive()
    assert isinstance(outcome.get("error"), RemoteError) and outcome["error"].ename == "KeyboardInterrupt"
    assert cluster.map(square, range(4), progress=False) == [0, 1, 4, 9]


def test_keyboard_interrupt_in_the_waiting_thread_stops_the_map(cluster):
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        cluster.starmap(nap, [(v, 0.2) for v in range(100)], chunksize=1, progress=False)
    timer.join()
    assert cluster.map(square, range(4), progress=False) == [0, 1, 4, 9]
    naps = {e.task for e in cluster.events.events(ev.TASK_QUEUED) if e.data["label"].startswith("map nap")}
    ran = {e.task for e in cluster.events.events(ev.TASK_FINISHED)} & naps
    stopped = {e.task for e in cluster.events.events(ev.TASK_CANCELLED)} | {
        e.task for e in cluster.events.events(ev.TASK_FAILED)}
    assert len(naps) < 100 and len(ran) < len(naps) and naps & stopped  # the rest never went out


def test_cancel_stops_a_map_by_its_iterator_or_by_one_of_its_batches(cluster):
    results = cluster.imap(nap, range(100), chunksize=1, progress=False)
    assert next(results) == 0
    cluster.cancel(results)
    with pytest.raises(ClusterError, match="cancelled"):
        list(results)
    before = max(t.id for t in cluster.tasks())
    # the first item ends at once, the others run long: no batch ends as the cancel comes
    results = cluster.imap(nap, range(100), [0.05] + [2.0] * 99, chunksize=1, progress=False)
    assert next(results) == 0
    deadline = time.monotonic() + 10
    while not (ours := [t for t in cluster.unfinished() if t.id > before]) and time.monotonic() < deadline:
        time.sleep(0.01)
    batch = max(ours, key=lambda t: t.id)  # of this map (the first one's may still be ending)
    batch.cancel()
    with pytest.raises((TaskCancelled, RemoteError)):
        list(results)
    assert cluster.map(square, range(4), progress=False) == [0, 1, 4, 9]


def test_task_cancel_drops_a_queued_call(cluster):
    running = cluster.submit(nap, 1, 0.5, on=1)
    queued = cluster.submit(square, 3, on=1)
    queued.cancel()
    assert isinstance(queued.wait().error, TaskCancelled)
    assert running.result == 1


def test_leaving_an_imap_early_stops_it(cluster):
    for value in cluster.imap(nap, range(1000), chunksize=1, progress=False):
        assert value == 0
        break
    assert cluster.map(square, range(3), progress=False) == [0, 1, 4]
    ran = cluster.events.events(ev.TASK_FINISHED)
    assert len(ran) < 100  # the 1,000 naps did not all run


# -- functions pickled once while nothing they use changes --------------------------------------------


def test_a_function_is_pickled_again_when_a_global_it_names_is_rebound(cluster):
    """The pickle of a notebook function is kept between calls, but rebinding a global it
    reads, its defaults or the function itself ships the new version."""
    from ipyworkers.kernel.shipping import FunctionCache

    cache = FunctionCache()
    namespace: dict = {"K": 1}
    exec("def f(x=10):\n    return K + x", namespace)
    f = namespace["f"]
    first = cache.ship(f, "function")
    assert cache.ship(f, "function") == first
    namespace["K"] = 2
    second = cache.ship(f, "function")
    assert second[0] != first[0]
    f.__defaults__ = (20,)
    assert cache.ship(f, "function")[0] not in (first[0], second[0])
    assert cluster.submit(f).result == 22
    namespace["K"] = 5
    assert cluster.submit(f).result == 25
