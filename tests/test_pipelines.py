"""Streams between workers, file chunks by offset, map and map-reduce."""

from __future__ import annotations

import operator
import re
import time

import pytest

from ipyworkers import RemoteError, TaskFailed, chunks, range_lines, read_range
from ipyworkers.kernel import events as ev

# -- chunks by offset (no processes) -------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"one line without newline",
        b"a\nb\nc\n",
        b"a\nb\nc",
        b"\n\n\n",
        b"short\n" + b"x" * 5000 + b"\nafter a very long line\n",
        b"".join(b"%d\n" % i for i in range(1000)),
    ],
)
@pytest.mark.parametrize("size", [1, 7, 64, 10_000])
def test_chunks_cover_the_file_once_and_never_cut_a_line(tmp_path, content, size):
    path = tmp_path / "data.txt"
    path.write_bytes(content)
    ranges = list(chunks(path, size))
    assert b"".join(read_range(path, s, e) for s, e in ranges) == content
    assert all(s < e for s, e in ranges)
    assert [s for s, _ in ranges[1:]] == [e for _, e in ranges[:-1]]
    for _, end in ranges[:-1]:
        assert content[end - 1 : end] == b"\n"
    lines = [line for s, e in ranges for line in range_lines(path, s, e)]
    assert lines == content.decode().splitlines()


def test_chunk_size_must_be_positive(tmp_path):
    (tmp_path / "f").write_text("x\n")
    with pytest.raises(ValueError, match="whole number of bytes >= 1, not 0"):
        list(chunks(tmp_path / "f", 0))


# -- streams ----------------------------------------------------------------------------------------

PRODUCER = "for i in range({n}):\n    send([i] * 10, to=2)\nclose(to=2)"
CONSUMER = "seen = [block[0] for block in stream(frm=1)]\nlen(seen)"


def test_stream_ends_at_close_and_keeps_fifo_order(cluster):
    producer = cluster.run(PRODUCER.format(n=5000), on=1)
    consumer = cluster.run(CONSUMER, on=2)
    assert consumer.wait(60).result == 5000
    assert producer.wait(60).state == "done"
    assert cluster.run("seen == list(range(5000))", on=2, block=True).result is True


def test_recv_after_close_is_eoferror_and_a_new_stream_can_follow(cluster):
    cluster.run("send('a', to=2)\nclose(to=2)\nsend('b', to=2)\nclose(to=2)", on=1)
    got = cluster.run("first = [x for x in stream(frm=1)]\nsecond = recv(frm=1)\n(first, second)", on=2)
    assert got.wait(30).result == (["a"], "b")
    with pytest.raises(RemoteError, match="EOFError: the stream from worker 1 is closed"):
        cluster.run("recv(frm=1)", on=2, block=True)


def test_a_fast_producer_is_held_back_and_the_consumer_memory_stays_bounded(cluster):
    producer = cluster.run(
        "import numpy as np, time\nstarted = time.monotonic()\n"
        "for i in range(300):\n    send(np.full(1 << 17, i, dtype=np.float64), to=2)\n"
        "close(to=2)\ntime.monotonic() - started", on=1)
    consumer = cluster.run(
        "import resource, time\npeak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "count = 0\nfor block in stream(frm=1):\n    assert block[0] == count\n    count += 1\n    time.sleep(0.005)\n"
        "(count, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) // 1024)", on=2)
    count, growth_mib = consumer.wait(120).result
    producer_seconds = producer.wait(120).result
    assert count == 300
    assert growth_mib < 64, f"consumer grew by {growth_mib} MiB while 300 MiB streamed through it"
    assert producer_seconds > 1.0, "the producer must have waited for the slow consumer"


def test_consumer_failure_stops_the_producer_with_a_clear_error(cluster):
    producer = cluster.run(PRODUCER.format(n=100_000), on=1)
    consumer = cluster.run(
        "for block in stream(frm=1):\n    if block[0] == 50:\n        raise ValueError('bad row')", on=2)
    consumer.wait(30), producer.wait(30)
    assert isinstance(consumer.error, RemoteError) and consumer.error.ename == "ValueError"
    assert isinstance(producer.error, RemoteError) and producer.error.ename == "ChannelError"
    assert "worker 2 stopped receiving" in producer.error.evalue and "ValueError: bad row" in producer.error.evalue


def test_producer_failure_ends_the_consumer_with_a_clear_error(cluster):
    cluster.run("send(1, to=2)\nraise RuntimeError('cannot parse line 7')", on=1)
    consumer = cluster.run("items = [x for x in stream(frm=1)]", on=2)
    consumer.wait(30)
    assert consumer.error.ename == "ChannelError"
    assert "worker 1 failed (RuntimeError: cannot parse line 7), before closing its stream" in consumer.error.evalue


def test_producer_death_ends_the_consumer_with_a_clear_error(cluster):
    cluster.run("send(1, to=2)\nimport os\nos._exit(1)", on=1)
    consumer = cluster.run("items = [x for x in stream(frm=1)]", on=2)
    consumer.wait(30)
    assert consumer.error.ename == "ChannelError" and "worker 1 died before closing its stream" in consumer.error.evalue


def test_consumer_death_makes_the_next_send_raise(cluster):
    consumer = cluster.run("x = recv(frm=1)\nimport os\nos._exit(1)", on=2)
    producer = cluster.run("import time\nfor i in range(100_000):\n    send(i, to=2)\n    time.sleep(0.001)", on=1)
    consumer.wait(30), producer.wait(60)
    assert isinstance(consumer.error, TaskFailed)
    assert producer.error.ename == "ChannelError" and "worker 2 died" in producer.error.evalue


def test_interrupt_stops_both_ends(cluster):
    producer = cluster.run(PRODUCER.format(n=10**9), on=1)
    consumer = cluster.run("import time\nfor block in stream(frm=1):\n    time.sleep(0.01)", on=2)
    deadline_task = cluster.run("1", on=1)
    time.sleep(1.0)
    assert sorted(cluster.interrupt()) == [1, 2]
    producer.wait(30), consumer.wait(30), deadline_task.wait(30)
    assert producer.error.ename in ("KeyboardInterrupt", "ChannelError")
    assert consumer.error.ename in ("KeyboardInterrupt", "ChannelError")


def _a_fresh_stream_works(cluster, producer_first=False):
    """A new producer/consumer pair between workers 1 and 2 gets exactly its own stream."""
    def consume():
        return cluster.run(
            "got = list(stream(frm=1))\n(len(got), got[:2], got == [('new', i) for i in range(300)])", on=2)

    def produce():
        return cluster.run("for i in range(300):\n    send(('new', i), to=2)\nclose(to=2)", on=1)

    producer, consumer = (produce(), consume()) if producer_first else (None, consume())
    producer = producer or produce()
    assert producer.wait(30).state == "done", producer.error
    assert consumer.wait(30).result == (300, [("new", 0), ("new", 1)], True)


def test_producer_failing_before_its_first_send_stops_the_consumer(cluster):
    consumer = cluster.run("items = [x for x in stream(frm=1)]", on=2)
    producer = cluster.run(
        "with open('/nonexistent/input.txt') as f:\n    for line in f:\n        send(line, to=2)\nclose(to=2)", on=1)
    producer.wait(30), consumer.wait(30)
    assert producer.error.ename == "FileNotFoundError"
    assert consumer.error.ename == "ChannelError"
    assert "worker 1 has nothing left to run that could send to worker 2" in consumer.error.evalue
    assert "FileNotFoundError" in consumer.error.evalue
    assert consumer.finished_at - producer.finished_at < 1.0
    _a_fresh_stream_works(cluster)


def test_consumer_failing_before_its_first_recv_stops_the_producer(cluster):
    producer = cluster.run(PRODUCER.format(n=10_000), on=1)
    consumer = cluster.run(
        "out = open('/nonexistent/dir/out.txt', 'w')\nfor block in stream(frm=1):\n    out.write(str(block))", on=2)
    consumer.wait(30), producer.wait(30)
    assert consumer.error.ename == "FileNotFoundError"
    assert producer.error.ename == "ChannelError"
    assert "worker 2 is not receiving" in producer.error.evalue and "FileNotFoundError" in producer.error.evalue
    assert producer.finished_at - consumer.finished_at < 1.0
    _a_fresh_stream_works(cluster)


def test_producer_death_before_it_sends_stops_the_consumer(cluster):
    consumer = cluster.run("items = [x for x in stream(frm=1)]", on=2)
    time.sleep(0.2)
    producer = cluster.run("import os\nos._exit(3)", on=1)
    producer.wait(30), consumer.wait(30)
    assert isinstance(producer.error, TaskFailed)
    assert consumer.error.ename == "ChannelError" and "worker 1 died" in consumer.error.evalue
    assert consumer.finished_at - producer.finished_at < 1.5
    cluster.restart(1)
    _a_fresh_stream_works(cluster)


def test_a_stream_to_a_restarted_consumer_starts_afresh(cluster):
    consumer = cluster.run("x = recv(frm=1)\nimport os\nos._exit(1)", on=2)
    producer = cluster.run(PRODUCER.format(n=100_000), on=1)
    consumer.wait(30), producer.wait(30)
    assert producer.error.ename == "ChannelError" and "worker 2 died" in producer.error.evalue
    cluster.restart(2)
    _a_fresh_stream_works(cluster)
    _a_fresh_stream_works(cluster, producer_first=True)


def test_a_stream_left_open_by_a_task_that_went_well_may_go_on_in_a_later_cell(cluster):
    cluster.run("for i in range(5):\n    send(i, to=2)", on=1, block=True)
    consumer = cluster.run("got = []\nfor x in stream(frm=1):\n    got.append(x)\nlen(got)", on=2)
    time.sleep(1.0)
    assert not consumer.done(), "an idle producer whose work went well may still send"
    cluster.run("for i in range(5, 8):\n    send(i, to=2)\nclose(to=2)", on=1, block=True)
    assert consumer.wait(30).result == 8


def test_a_consumer_waiting_on_an_idle_producer_ends_by_an_interrupt(cluster):
    consumer = cluster.run("for x in stream(frm=1):\n    pass", on=2)
    time.sleep(1.0)
    assert not consumer.done()
    assert cluster.interrupt(2) == {2: "interrupted"}
    assert consumer.wait(10).error.ename == "KeyboardInterrupt"


def test_cells_run_by_hand_seconds_apart_stream_as_the_readme_shows(cluster):
    producer = cluster.run(PRODUCER.format(n=5000), on=1)
    time.sleep(1.5)
    consumer = cluster.run(CONSUMER, on=2)
    assert consumer.wait(60).result == 5000
    assert producer.wait(60).state == "done"


@pytest.mark.parametrize("first", ["consumer", "producer"])
def test_the_other_end_submitted_a_moment_later_is_not_failed(cluster, first):
    cluster.run("1", on=1, block=True)
    cluster.run("1", on=2, block=True)
    runs = {"consumer": lambda: cluster.run(CONSUMER, on=2),
            "producer": lambda: cluster.run(PRODUCER.format(n=10_000), on=1)}
    early = runs[first]()
    time.sleep(0.2)
    late = runs["producer" if first == "consumer" else "consumer"]()
    early.wait(30), late.wait(30)
    consumer, producer = (early, late) if first == "consumer" else (late, early)
    assert producer.state == "done", producer.error
    assert consumer.result == 10_000


def test_a_stream_after_an_interrupted_one_gets_nothing_old(cluster):
    producer = cluster.run(PRODUCER.format(n=10**9), on=1)
    consumer = cluster.run("import time\nfor block in stream(frm=1):\n    time.sleep(0.01)", on=2)
    time.sleep(1.0)
    assert sorted(cluster.interrupt()) == [1, 2]
    producer.wait(30), consumer.wait(30)
    assert producer.error is not None and consumer.error is not None
    _a_fresh_stream_works(cluster, producer_first=True)


@pytest.mark.parametrize("producer_first", [False, True])
def test_a_stream_after_a_failed_one_nobody_read_gets_nothing_old(cluster, producer_first):
    producer = cluster.run("for i in range(50):\n    send(('old', i), to=2)\nraise RuntimeError('mid-stream')", on=1)
    assert producer.wait(30).error.ename == "RuntimeError"
    _a_fresh_stream_works(cluster, producer_first)


@pytest.mark.parametrize("producer_code, consumer_code", [
    (PRODUCER.format(n=100_000),
     "for block in stream(frm=1):\n    if block[0] == 50:\n        raise ValueError('bad')"),
    ("for i in range(100):\n    send([i], to=2)\nraise RuntimeError('after the last message')",
     "import time\nfor block in stream(frm=1):\n    time.sleep(0.001)"),
    ("for i in range(100):\n    send([i], to=2)\n    if i == 50:\n        raise RuntimeError('mid-stream')",
     "items = [x for x in stream(frm=1)]"),
])
def test_after_a_failure_at_either_end_a_new_stream_works(cluster, producer_code, consumer_code):
    producer = cluster.run(producer_code, on=1)
    consumer = cluster.run(consumer_code, on=2)
    producer.wait(30), consumer.wait(30)
    assert producer.error is not None and consumer.error is not None
    _a_fresh_stream_works(cluster)


@pytest.mark.parametrize("call, message", [
    ("send(1, to=9)", "to=9: there is no such worker (workers are 1..2)"),
    ("send(1, to=1)", "to=1: a worker cannot stream to itself"),
    ("recv(frm='two')", "frm='two': there is no such worker"),
])
def test_bad_stream_arguments_name_the_problem(cluster, call, message):
    with pytest.raises(RemoteError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cluster.run(call, on=1, block=True)


def test_a_stream_is_drawn_as_aggregated_transfers(cluster):
    cluster.run(PRODUCER.format(n=2000), on=1)
    cluster.run(CONSUMER, on=2, block=True)
    streams = [e for e in cluster.events.events(ev.TRANSFER) if e.data["name"] == "stream"]
    assert 1 <= len(streams) < 200
    assert sum(e.data["count"] for e in streams) == 2000
    assert all((e.data["source"], e.data["dest"]) == (1, 2) for e in streams)


# -- per-message cost, promptness and the window ---------------------------------------------------------

COUNT_FRAMES = """
import collections
from ipyworkers import wire
if not hasattr(wire.Connection, "uncounted_send"):
    wire.Connection.uncounted_send = wire.Connection.send
    wire.frames_sent = collections.Counter()
    def counted_send(self, msg, parts=()):
        wire.frames_sent[type(msg).__name__] += 1
        return self.uncounted_send(msg, parts)
    wire.Connection.send = counted_send
wire.frames_sent.clear()
"""
FRAMES_SENT = "dict(__import__('ipyworkers.wire').wire.frames_sent)"


def test_relaying_through_a_middle_stage_costs_no_round_trip_per_message():
    """10,000 small messages through worker 2: it sends them on in batches, and credit comes
    back to it (and goes from it) a batch at a time, not a frame per message."""
    from ipyworkers import Cluster
    from ipyworkers.kernel.sinks import RecordingSink

    n = 10_000
    with Cluster(3, default_sink=RecordingSink()) as cluster:
        for worker in (2, 3):
            cluster.run(COUNT_FRAMES, on=worker, block=True)
        stages = [cluster.run(PRODUCER.format(n=n), on=1),
                  cluster.run("for block in stream(frm=1):\n    send(block, to=3)\nclose(to=3)", on=2),
                  cluster.run("count = 0\nfor block in stream(frm=2):\n    assert block[0] == count\n"
                              "    count += 1\ncount", on=3)]
        for stage in stages:
            assert stage.wait(60).error is None, stage.error
        assert stages[2].result == n
        middle = cluster.run(FRAMES_SENT, on=2, block=True).result
        last = cluster.run(FRAMES_SENT, on=3, block=True).result
    relayed, credit_to_first, credit_to_middle = middle["Chans"], middle["Credit"], last["Credit"]
    assert (relayed + credit_to_first + credit_to_middle) / n < 0.1, (relayed, credit_to_first, credit_to_middle)


def test_a_lone_send_arrives_within_a_few_ms(cluster):
    """A send after a quiet spell goes at once; one that ends a burst, while the sender goes
    on computing (holding the GIL), goes when its batch is due."""
    producer = cluster.run(
        "import time\n"
        "for i in range(10):\n    send(time.monotonic(), to=2)\n    time.sleep(0.05)\n"
        "for i in range(5):\n"
        "    for j in range(100):\n        send(None, to=2)\n"
        "    send(-time.monotonic(), to=2)\n"
        "    end = time.monotonic() + 0.1\n"
        "    while time.monotonic() < end:\n        pass\n"
        "close(to=2)", on=1)
    consumer = cluster.run(
        "import time\nquiet, burst = [], []\n"
        "for stamp in stream(frm=1):\n"
        "    if stamp is not None:\n"
        "        (quiet if stamp > 0 else burst).append(time.monotonic() - abs(stamp))\n"
        "(sorted(quiet), sorted(burst))", on=2)
    quiet, burst = consumer.wait(30).result
    assert producer.wait(30).state == "done", producer.error
    assert len(quiet) == 10 and len(burst) == 5
    assert quiet[len(quiet) // 2] < 0.005, f"lone sends took {[round(t * 1e3, 1) for t in quiet]} ms"
    assert burst[len(burst) // 2] < 0.02, f"the last sends of bursts took {[round(t * 1e3, 1) for t in burst]} ms"


def test_the_window_holds_back_a_producer_and_the_readme_states_it(cluster):
    from pathlib import Path

    from ipyworkers.worker.streams import WINDOW, WINDOW_BYTES

    n = WINDOW * 2 + 50
    producer = cluster.run(
        f"import time\nstamps = []\nfor i in range({n}):\n    send(i, to=2)\n"
        "    stamps.append(time.monotonic())\nclose(to=2)\nstamps", on=1)
    consumer = cluster.run(
        "import time\ntime.sleep(1.0)\nstarted = time.monotonic()\n"
        f"(started, list(stream(frm=1)) == list(range({n})))", on=2)
    started, in_order = consumer.wait(60).result
    stamps = producer.wait(60).result
    assert in_order
    assert sum(1 for stamp in stamps if stamp < started) == WINDOW
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert f"At most {WINDOW} messages ({WINDOW_BYTES >> 20} MiB) wait at the consumer" in readme


# -- map and map-reduce --------------------------------------------------------------------------------------


def square(v):
    return v * v


def test_map_keeps_input_order_and_reports_progress(cluster):
    seen = []
    assert cluster.map(square, range(50), progress=lambda done, total: seen.append((done, total))) == [
        v * v for v in range(50)]
    assert seen[-1] == (50, 50)
    labels = [e.data["label"] for e in cluster.events.events(ev.TASK_QUEUED)]
    assert labels[0] in ("map square[0]", *(f"map square[0:{n}]" for n in range(2, 51))), labels
    assert labels[-1] == "map square[49]" or re.fullmatch(r"map square\[\d+:50\]", labels[-1]), labels


def test_map_balances_across_workers(cluster):
    cluster.map(square, range(40), progress=False)
    workers = {e.worker for e in cluster.events.events(ev.TASK_STARTED)}
    assert workers == {1, 2}


def test_map_raises_the_first_error_with_its_remote_traceback(cluster):
    def shaky(v):
        if v == 13:
            raise ValueError(f"item {v} is bad")
        return v

    with pytest.raises(RemoteError) as info:
        cluster.map(shaky, range(40), progress=False)
    assert info.value.ename == "ValueError" and "item 13 is bad" in info.value.evalue
    assert "shaky" in "\n".join(info.value.traceback)
    assert cluster.map(square, [3], progress=False) == [9]


def test_mapreduce_folds_on_workers_then_in_the_kernel(cluster):
    assert cluster.mapreduce(square, operator.add, range(1000), progress=False) == sum(v * v for v in range(1000))
    assert cluster.mapreduce(square, operator.add, [], progress=False, initial=0) == 0
    with pytest.raises(TypeError, match="no items with no initial value"):
        cluster.mapreduce(square, operator.add, [], progress=False)


def test_map_of_an_unpicklable_function_names_it(cluster):
    import threading

    lock = threading.Lock()
    with pytest.raises(Exception, match="'function'"):
        cluster.map(lambda v: lock, [1], progress=False)
