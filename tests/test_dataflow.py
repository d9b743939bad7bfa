"""Ordering rules of the task graph, with no process at all."""

from __future__ import annotations

from ipyworkers.plan.dataflow import DISPATCHED, KERNEL, Dataflow


def flow_with(*workers: int) -> Dataflow:
    flow = Dataflow()
    for w in workers:
        flow.add_worker(w)
    return flow


def ids(records) -> list[int]:
    return [r.id for r in records]


def test_reader_is_sent_at_once_with_the_producer_as_source():
    flow = flow_with(1, 2)
    producer = flow.submit(1, [], ["x"])
    reader = flow.submit(2, ["x"], ["y"])
    dispatch, cancelled = flow.ready()
    assert ids(dispatch) == [producer.id, reader.id]
    assert [(d.name, d.version, d.source) for d in reader.deps] == [("x", producer.id, 1)]
    assert reader.remote_deps() and not cancelled


def test_local_read_needs_no_transfer():
    flow = flow_with(1)
    flow.submit(1, [], ["x"])
    reader = flow.submit(1, ["x"], [])
    assert reader.remote_deps() == []


def test_unknown_name_is_no_dependency_so_python_raises_nameerror():
    flow = flow_with(1)
    reader = flow.submit(1, ["nowhere"], [])
    assert reader.deps == []


def test_kernel_value_is_taken_from_the_kernel():
    flow = flow_with(1)
    reader = flow.submit(1, ["data"], [], kernel_has={"data"}.__contains__)
    assert [(d.name, d.source) for d in reader.kernel_deps()] == [("data", KERNEL)]


def test_write_waits_until_an_earlier_remote_reader_has_fetched():
    flow = flow_with(1, 2)
    flow.submit(1, [], ["x"])
    reader = flow.submit(2, ["x"], [])
    overwrite = flow.submit(1, [], ["x"])
    dispatch, _ = flow.ready()
    assert overwrite.id not in ids(dispatch)
    flow.fetched(reader.id, "x")
    dispatch, _ = flow.ready()
    assert ids(dispatch) == [overwrite.id]


def test_fetch_into_a_worker_counts_as_an_overwrite_there():
    flow = flow_with(1, 2, 3)
    flow.submit(1, [], ["x"])          # x v1 on worker 1
    reader = flow.submit(3, ["x"], [])  # worker 3 needs v1 from worker 1
    flow.submit(2, [], ["x"])          # x v2 on worker 2
    refetch = flow.submit(1, ["x"], [])  # worker 1 fetches v2 over its v1
    dispatch, _ = flow.ready()
    assert refetch.id not in ids(dispatch)
    flow.fetched(reader.id, "x")
    assert ids(flow.ready()[0]) == [refetch.id]


def test_tasks_on_one_worker_are_dispatched_in_order():
    flow = flow_with(1, 2)
    flow.submit(1, [], ["x"])
    flow.submit(2, ["x"], [])
    held = flow.submit(1, [], ["x"])
    after = flow.submit(1, [], ["z"])
    dispatch, _ = flow.ready()
    assert held.id not in ids(dispatch) and after.id not in ids(dispatch)


def test_reader_queued_behind_a_held_task_is_cancelled_when_its_input_failed():
    flow = flow_with(1, 2)
    flow.submit(2, [], ["w"])
    early_reader = flow.submit(1, ["w"], [])
    producer = flow.submit(1, [], ["x"])
    hold = flow.submit(2, [], ["w"])  # held: worker 1 has not fetched w yet
    reader = flow.submit(2, ["x"], [])
    flow.ready()
    assert hold.state != DISPATCHED and reader.state != DISPATCHED
    flow.finished(producer.id, False, "task #3 on worker 1 failed (ValueError: bad)")
    flow.fetched(early_reader.id, "w")
    dispatch, cancelled = flow.ready()
    assert ids(dispatch) == [hold.id]
    assert ids(cancelled) == [reader.id]
    assert reader.missing_input == "x" and "task #3 on worker 1 failed" in reader.reason


def test_dead_worker_fails_its_tasks_and_loses_what_only_it_held():
    flow = flow_with(1, 2)
    producer = flow.submit(1, [], ["x"])
    flow.ready()
    flow.finished(producer.id, True)
    running = flow.submit(1, [], ["y"])
    flow.ready()
    failed = flow.remove_worker(1, "worker 1 died (signal SIGKILL)")
    assert ids(failed) == [running.id]
    reader = flow.submit(2, ["x"], [])
    _, cancelled = flow.ready()
    assert ids(cancelled) == [reader.id] and "worker 1" in reader.reason


def test_fetched_copy_is_used_when_the_producer_is_gone():
    flow = flow_with(1, 2, 3)
    producer = flow.submit(1, [], ["x"])
    first = flow.submit(2, ["x"], [])
    flow.ready()
    flow.finished(producer.id, True)
    flow.fetched(first.id, "x")
    flow.remove_worker(1, "worker 1 died")
    reader = flow.submit(3, ["x"], [])
    assert [(d.name, d.source) for d in reader.deps] == [("x", 2)]


def test_directory_knows_holders():
    flow = flow_with(1, 2)
    producer = flow.submit(1, [], ["x"])
    reader = flow.submit(2, ["x"], [])
    flow.ready()
    flow.finished(producer.id, True, sizes={"x": 800})
    flow.fetched(reader.id, "x", 800)
    assert flow.where("x") == (producer.id, {1, 2})
    assert flow.names_held_by(2) == ["x"]
    assert flow.sizes[("x", producer.id)] == 800


def test_kernel_cell_makes_kernel_the_holder():
    flow = flow_with(1)
    flow.submit(1, [], ["x"])
    flow.note_kernel_writes(["x"])
    version, holders = flow.where("x")
    assert holders == {KERNEL}
    reader = flow.submit(1, ["x"], [])
    assert reader.deps[0].source == KERNEL and reader.deps[0].version == version


def test_names_a_failed_task_bound_before_its_error_stay_readable():
    flow = flow_with(1, 2)
    producer = flow.submit(1, [], ["values", "ratios"])
    flow.ready()
    flow.finished(producer.id, False, "task #1 on worker 1 failed (ZeroDivisionError)", written=["values"])
    good = flow.submit(2, ["values"], [])
    bad = flow.submit(2, ["ratios"], [])
    dispatch, cancelled = flow.ready()
    assert ids(dispatch) == [good.id] and ids(cancelled) == [bad.id]


def test_prune_forgets_ended_tasks_but_keeps_current_values_and_pending_inputs():
    flow = flow_with(1, 2)
    for _ in range(100):
        task = flow.submit(1, [], ["x"])
        flow.ready()
        flow.finished(task.id, True)
    current = flow.latest["x"]
    slow = flow.submit(1, [], ["y"])
    reader = flow.submit(2, ["y"], [])
    flow.ready()
    gone = flow.prune()
    assert len(gone) == 99 and current not in gone
    assert set(flow.tasks) == {current, slow.id, reader.id}
    assert flow.where("x") == (current, {1})
    flow.finished(slow.id, True)
    assert flow.prune() == []
    flow.finished(reader.id, True)
    assert flow.prune() == [reader.id]


# -- replicated writes (setup lines each worker runs for itself) ------------------------------


def test_replicated_write_is_one_version_and_each_copy_reads_locally():
    flow = flow_with(1, 2, 3)
    first, second = flow.submit_replicated([1, 2], [], ["os"], label="import os")
    assert second.replica_of == first.id and first.version == second.version == first.id
    assert flow.latest["os"] == first.id
    on_1 = flow.submit(1, ["os"], ["x"])
    on_2 = flow.submit(2, ["os"], ["y"])
    assert on_1.remote_deps() == [] and on_2.remote_deps() == []
    assert [(d.name, d.version, d.source) for d in on_2.deps] == [("os", first.id, 2)]


def test_worker_without_a_copy_fetches_from_the_first_copy():
    flow = flow_with(1, 2, 3)
    first, _ = flow.submit_replicated([2, 1], [], ["os"])
    reader = flow.submit(3, ["os"], [])
    assert first.worker == 2
    assert [(d.name, d.source) for d in reader.remote_deps()] == [("os", 2)]


def test_each_copy_runs_in_its_own_queue_and_adds_its_worker_as_holder():
    flow = flow_with(1, 2)
    first, second = flow.submit_replicated([1, 2], [], ["os"])
    dispatch, _ = flow.ready()
    assert ids(dispatch) == [first.id, second.id]
    flow.finished(second.id, True, sizes={"os": 10})
    assert flow.where("os") == (first.id, {2})
    flow.finished(first.id, True)
    assert flow.where("os") == (first.id, {1, 2})
    assert flow.sizes[("os", first.id)] == 10


def test_copies_read_what_came_before_not_each_others_writes():
    flow = flow_with(1, 2)
    producer = flow.submit(1, [], ["n"])
    first, second = flow.submit_replicated([1, 2], ["n"], ["n"])  # n = n + 1 on both
    assert [(d.version, d.source) for d in first.deps] == [(producer.id, 1)]
    assert [(d.version, d.source) for d in second.deps] == [(producer.id, 1)]
    assert flow.latest["n"] == first.id


def test_replicated_code_reads_kernel_values_on_every_copy():
    flow = flow_with(1, 2)
    copies = flow.submit_replicated([1, 2], ["path"], ["data"], kernel_has={"path"}.__contains__)
    assert [[(d.name, d.source) for d in c.kernel_deps()] for c in copies] == [[("path", KERNEL)]] * 2


def test_a_failed_copy_makes_its_workers_reads_fetch_from_a_good_one():
    flow = flow_with(1, 2)
    first, second = flow.submit_replicated([1, 2], [], ["os"])
    flow.ready()
    flow.finished(first.id, True)
    flow.finished(second.id, False, "task failed (ImportError)")
    local_on_1 = flow.submit(1, ["os"], [])
    refetch_on_2 = flow.submit(2, ["os"], [])
    assert local_on_1.remote_deps() == []
    assert [(d.name, d.source) for d in refetch_on_2.remote_deps()] == [("os", 1)]
    dispatch, cancelled = flow.ready()
    assert set(ids(dispatch)) == {local_on_1.id, refetch_on_2.id} and cancelled == []


def test_reader_queued_behind_a_failing_copy_is_cancelled():
    flow = flow_with(1, 2)
    first, second = flow.submit_replicated([1, 2], [], ["os"])
    reader = flow.submit(2, ["os"], [])
    flow.finished(first.id, True)
    flow.finished(second.id, False, "task #2 on worker 2 failed (ImportError)")
    _, cancelled = flow.ready()
    assert ids(cancelled) == [reader.id] and "ImportError" in reader.reason


def test_replication_needs_workers_and_never_the_kernel():
    flow = flow_with(1)
    for workers in ([], [KERNEL, 1]):
        try:
            flow.submit_replicated(workers, [], ["x"])
        except ValueError:
            continue
        raise AssertionError(f"{workers} accepted")


def test_prune_keeps_a_replicated_version_and_drops_ended_copies():
    flow = flow_with(1, 2)
    first, second = flow.submit_replicated([1, 2], [], ["os"])
    flow.ready()
    flow.finished(first.id, True)
    flow.finished(second.id, True)
    assert flow.prune() == [second.id]
    assert flow.where("os") == (first.id, {1, 2})
    assert flow.submit(2, ["os"], []).remote_deps() == []


def test_a_value_lost_with_its_worker_stays_lost_when_a_worker_with_that_id_is_back():
    flow = flow_with(1, 2)
    producer = flow.submit(1, (), ("x",))
    flow.ready()
    flow.finished(producer.id, True)
    flow.remove_worker(1, "worker 1 was restarted")
    flow.add_worker(1)
    reader = flow.submit(2, ("x",), ())
    dispatch, cancelled = flow.ready()
    assert reader not in dispatch and cancelled == [reader]
    assert reader.reason == "worker 1 was restarted"


def test_after_a_restart_a_copy_elsewhere_serves_the_value():
    flow = flow_with(1, 2)
    producer = flow.submit(1, (), ("x",))
    flow.ready()
    flow.finished(producer.id, True)
    first = flow.submit(2, ("x",), ())
    flow.ready()
    flow.fetched(first.id, "x")
    flow.remove_worker(1, "worker 1 was restarted")
    flow.add_worker(1)
    reader = flow.submit(1, ("x",), ())
    assert [(d.name, d.source) for d in reader.deps] == [("x", 2)]
