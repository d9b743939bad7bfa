"""Fine-grained work: ipyworkers' maps beside multiprocessing.Pool, pyrallel and Dask.

    .venv/bin/python benchmarks/map.py                  # everything, 3 interleaved rounds
    .venv/bin/python benchmarks/map.py --rounds 5 --grep-mb 1000 --big 10000000
    .venv/bin/python benchmarks/map.py --only mapreduce collector

Jobs (2 workers each), each system in turn within a round, so a slow spell of a shared
machine hits all alike; medians over the rounds, and ratios to ipyworkers:

* mapreduce: 10,000 x sleep(0.0001), reducer ``+`` (pyrallel's MapReduce example).
* collector: 10,000 tiny tasks, each result handed to a collector in the main process
  (pyrallel's ParallelProcessor example; Pool's apply_async + callback).
* start: start 2 workers and get 8 results.
* per-item: a no-op function over 1,000,000 ints, batched; the cost per item.
* grep: count matching lines of a ~1 GB file by the same 64 MiB ranges, each worker
  reading its own ranges; speed-up over one process reading it all.
* big: ``imap`` over 10,000,000 items; how much the kernel's memory grows (ipyworkers only).
* pipeline: 3 stages (read 10-line chunks -> parse -> compute) on 3 workers through
  streams, against the same work in one process (ipyworkers only).

pyrallel's objects are single-use, so its times include starting its processes. Dask
takes ~2 ms a task on this machine, so by default it runs in the first round only
(``--dask-rounds``).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import operator
import os
import statistics
import tempfile
import threading
import time
import warnings
from pathlib import Path

from common import count_matching, fmt_seconds, have

from ipyworkers import Cluster, chunks
from ipyworkers.kernel.sinks import RecordingSink

N_TASKS = 10_000
SYSTEMS = ["ipyworkers", "Pool", "pyrallel", "dask", "serial"]


def tiny_sleep(x):
    time.sleep(0.0001)
    return x


def square(x):
    return x * x


def noop(x):
    return x


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# -- the systems ------------------------------------------------------------------------------------------


class Systems:
    def __init__(self, want: set[str]):
        self.cluster = Cluster(2, default_sink=RecordingSink()).start()
        self.pool = multiprocessing.get_context("fork").Pool(2)
        self.dask = None
        if "dask" in want and have("distributed"):
            from dask.distributed import Client, LocalCluster

            logging.getLogger("distributed").setLevel(logging.ERROR)
            self.dask_cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                             dashboard_address=None)
            self.dask = Client(self.dask_cluster)
        self.pyrallel = have("pyrallel")

    def close(self) -> None:
        self.cluster.stop()
        self.pool.terminate()
        if self.dask is not None:
            self.dask.close()
            self.dask_cluster.close()


def job_mapreduce(s: Systems) -> dict[str, float | None]:
    expected = sum(range(N_TASKS))
    out: dict[str, float | None] = {}

    def ipw():
        assert s.cluster.mapreduce(tiny_sleep, operator.add, range(N_TASKS), progress=False) == expected
    out["ipyworkers"] = timed(ipw)
    out["Pool"] = timed(lambda: sum(s.pool.map(tiny_sleep, range(N_TASKS))))
    if s.pyrallel:
        from pyrallel import MapReduce

        def pyr():
            mr = MapReduce(2, tiny_sleep, operator.add)
            mr.start()
            for i in range(N_TASKS):
                mr.add_task(i)
            mr.task_done()
            assert mr.join() == expected
        out["pyrallel"] = timed(pyr)
    if s.dask is not None:
        out["dask"] = timed(lambda: s.dask.submit(sum, s.dask.map(tiny_sleep, range(N_TASKS), pure=False)).result())
    out["serial"] = timed(lambda: sum(map(tiny_sleep, range(N_TASKS))))
    return out


def job_collector(s: Systems) -> dict[str, float | None]:
    out: dict[str, float | None] = {}

    def ipw():
        got = []
        with s.cluster.processor(square, collector=got.append, progress=False) as p:
            for i in range(N_TASKS):
                p.add_task(i)
        assert len(got) == N_TASKS
    out["ipyworkers"] = timed(ipw)

    def pool():
        got = []
        done = threading.Event()

        def collect(value):
            got.append(value)
            if len(got) == N_TASKS:
                done.set()
        for i in range(N_TASKS):
            s.pool.apply_async(square, (i,), callback=collect)
        done.wait()
    out["Pool"] = timed(pool)
    if s.pyrallel:
        from pyrallel import ParallelProcessor

        def pyr():
            got = []
            pp = ParallelProcessor(2, square, collector=got.append)
            pp.start()
            for i in range(N_TASKS):
                pp.add_task(i)
            pp.task_done()
            pp.join()
            assert len(got) == N_TASKS
        out["pyrallel"] = timed(pyr)
    if s.dask is not None:
        from dask.distributed import as_completed

        def dsk():
            got = [f.result() for f in as_completed(s.dask.map(square, range(N_TASKS), pure=False))]
            assert len(got) == N_TASKS
        out["dask"] = timed(dsk)
    return out


def job_start(s: Systems) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    started = time.perf_counter()
    cluster = Cluster(2, default_sink=RecordingSink()).start()
    assert cluster.map(square, range(8), progress=False) == [v * v for v in range(8)]
    out["ipyworkers"] = time.perf_counter() - started
    cluster.stop()
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(square, range(8))
        out["Pool"] = time.perf_counter() - started
    if s.pyrallel:
        from pyrallel import ParallelProcessor

        got = []
        started = time.perf_counter()
        pp = ParallelProcessor(2, square, collector=got.append)
        pp.start()
        for i in range(8):
            pp.add_task(i)
        pp.task_done()
        pp.join()
        out["pyrallel"] = time.perf_counter() - started
    if s.dask is not None:
        from dask.distributed import Client, LocalCluster

        started = time.perf_counter()
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
                Client(lc) as client:
            client.gather(client.map(square, range(8)))
            out["dask"] = time.perf_counter() - started
    return out


PER_ITEM = 1_000_000


def job_per_item(s: Systems) -> dict[str, float | None]:
    """Seconds per item of a no-op map over ``PER_ITEM`` ints (wall time / items)."""
    out: dict[str, float | None] = {}
    out["ipyworkers"] = timed(lambda: s.cluster.map(noop, range(PER_ITEM), progress=False)) / PER_ITEM
    out["Pool"] = timed(lambda: s.pool.map(noop, range(PER_ITEM))) / PER_ITEM
    out["serial"] = timed(lambda: list(map(noop, range(PER_ITEM)))) / PER_ITEM
    return out


def job_grep(s: Systems, path: Path) -> dict[str, float | None]:
    """Speed-up over one process (higher is better)."""
    size = path.stat().st_size
    ranges = list(chunks(path, 64 << 20))
    one = timed(lambda: count_matching(str(path), 0, size))
    ipw = timed(lambda: s.cluster.starmap(count_matching, [(str(path), a, b) for a, b in ranges], chunksize=1,
                                          progress=False))
    pool = timed(lambda: s.pool.starmap(count_matching, [(str(path), a, b) for a, b in ranges], chunksize=1))
    return {"ipyworkers": one / ipw, "Pool": one / pool}


def rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def job_big(s: Systems, n: int) -> dict[str, float]:
    """Kernel memory growth (peak RSS - RSS before) over an imap of ``n`` items, and its time."""
    before = rss()
    peak = [before]
    stop = threading.Event()

    def watch():
        while not stop.wait(0.02):
            peak[0] = max(peak[0], rss())
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    total = 0
    for value in s.cluster.imap(square, range(n), progress=False):
        total += value
    seconds = time.perf_counter() - started
    stop.set()
    watcher.join()
    assert total == sum(v * v for v in range(n))
    return {"growth": peak[0] - before, "seconds": seconds}


PIPE_COMMON = '''
import itertools, math
from array import array

def work(values):
    return sum(math.sqrt(v) * math.log1p(v) + math.sin(v) * math.cos(v) for v in values)

def parse(chunk):
    return array("d", map(float, " ".join(chunk).split()))
'''
PIPE_SERIAL = PIPE_COMMON + '''
total = 0.0
with open({path!r}) as f:
    while True:
        chunk = list(itertools.islice(f, {n}))
        if not chunk:
            break
        total += work(parse(chunk))
total
'''
PIPE_READ = PIPE_COMMON + '''
with open({path!r}) as f:
    while True:
        chunk = list(itertools.islice(f, {n}))
        if not chunk:
            break
        send(chunk, to=2)
close(to=2)
'''
PIPE_PARSE = PIPE_COMMON + '''
for chunk in stream(frm=1):
    send(parse(chunk), to=3)
close(to=3)
'''
PIPE_COMPUTE = PIPE_COMMON + '''
total = 0.0
for values in stream(frm=2):
    total += work(values)
total
'''


def job_pipeline(path: Path, rounds: int, n: int = 10) -> dict[str, float]:
    """3 stages on 3 workers vs. one process, ``n``-line chunks; medians."""
    serial, piped = [], []
    with Cluster(3, default_sink=RecordingSink()) as cluster:
        for _ in range(rounds):
            serial.append(timed(lambda: cluster.run(PIPE_SERIAL.format(path=str(path), n=n), on=1, block=True)))

            def pipe():
                tasks = [cluster.run(PIPE_READ.format(path=str(path), n=n), on=1),
                         cluster.run(PIPE_PARSE, on=2), cluster.run(PIPE_COMPUTE, on=3)]
                for task in tasks:
                    task.wait()
                    if task.error is not None:
                        raise task.error
            piped.append(timed(pipe))
    return {"serial": statistics.median(serial), "pipeline": statistics.median(piped)}


# -- report ------------------------------------------------------------------------------------------------


def ratio_table(title: str, results: dict[str, float | None], unit=fmt_seconds, higher_is_better=False) -> str:
    base = results.get("ipyworkers")
    cells, ratios = [], []
    for system in SYSTEMS:
        if system not in results:
            continue
        value = results[system]
        cells.append(f"{system} {unit(value)}")
        if system != "ipyworkers" and value and base:
            ratios.append(f"{system}/ipyworkers {value / base:.2f}x")
    return f"| {title} | " + " | ".join(cells) + " | " + ", ".join(ratios) + " |"


def medians(samples: list[dict[str, float | None]]) -> dict[str, float | None]:
    keys = {k for s in samples for k in s}
    return {k: statistics.median([s[k] for s in samples if s.get(k) is not None])
            if any(s.get(k) is not None for s in samples) else None for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--grep-mb", type=int, default=1000)
    parser.add_argument("--big", type=int, default=10_000_000)
    parser.add_argument("--pipeline-lines", type=int, default=100_000)
    parser.add_argument("--only", nargs="*", default=None,
                        help="mapreduce collector start per-item grep big pipeline")
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--dask-rounds", type=int, default=1,
                        help="rounds that include Dask (slow here: ~2 ms a task), the first ones")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    want = set(args.only or ["mapreduce", "collector", "start", "per-item", "grep", "big", "pipeline"])
    systems = Systems(set() if args.no_dask else {"dask"})
    samples: dict[str, list] = {name: [] for name in want}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log.txt"
        if "grep" in want:
            from pipeline import make_log

            make_log(log, args.grep_mb)
        try:
            for r in range(args.rounds):
                if r == args.dask_rounds and systems.dask is not None:
                    systems.dask.close()
                    systems.dask_cluster.close()
                    systems.dask = None
                for name, job in (("mapreduce", job_mapreduce), ("collector", job_collector), ("start", job_start),
                                  ("per-item", job_per_item), ("grep", lambda s: job_grep(s, log))):
                    if name in want:
                        samples[name].append(job(systems))
                        print(f"round {r + 1} {name}: " + ", ".join(
                            f"{k} {v:.4g}" for k, v in samples[name][-1].items() if v is not None), flush=True)
            big = job_big(systems, args.big) if "big" in want else None
        finally:
            systems.close()
        pipe = None
        if "pipeline" in want:
            from pipeline import make_numbers

            numbers = Path(tmp) / "numbers.txt"
            make_numbers(numbers, args.pipeline_lines)
            pipe = job_pipeline(numbers, args.rounds)
    print(f"\nmedians of {args.rounds} rounds, 2 workers\n")
    titles = {"mapreduce": "MapReduce 10,000 x sleep(0.0001)", "collector": "10,000 tasks with a collector",
              "start": "start + 8 tasks"}
    for name, title in titles.items():
        if name in want:
            print(ratio_table(title, medians(samples[name])))
    if "per-item" in want:
        print(ratio_table("per item, no-op map of 1,000,000", medians(samples["per-item"]),
                          unit=lambda v: "-" if v is None else f"{v * 1e6:.2f} µs"))
    if "grep" in want:
        print(ratio_table(f"grep {args.grep_mb} MB by 64 MiB ranges: speed-up", medians(samples["grep"]),
                          unit=lambda v: f"{v:.2f}x"))
    if big is not None:
        print(f"| imap over {args.big:,} items | kernel memory growth {big['growth'] / 2**20:.0f} MB, "
              f"{big['seconds']:.1f} s |")
    if pipe is not None:
        print(f"| 3-stage pipeline, 10-line chunks, {args.pipeline_lines:,} lines | serial "
              f"{pipe['serial']:.2f} s, pipeline {pipe['pipeline']:.2f} s, speed-up "
              f"{pipe['serial'] / pipe['pipeline']:.2f}x |")


if __name__ == "__main__":
    main()
