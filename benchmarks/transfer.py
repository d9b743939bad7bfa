"""Moving values between workers, against Dask and ipyparallel when installed.

    .venv/bin/python benchmarks/transfer.py        # or: make bench

* a 100 MB NumPy array from worker 1 to worker 2;
* a ~100 MB list of small Python objects;
* the time from the end of a producer task on worker 1 to the start of its
  dependent on worker 2, for a small value.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

from common import fmt_seconds, have, table

from ipyworkers import Cluster
from ipyworkers.kernel import events as ev
from ipyworkers.kernel.sinks import RecordingSink

ARRAY_ITEMS = 100 * 2**20 // 8
LIST_ITEMS = 9_000_000
COMPARE_LIST_ITEMS = 1_000_000
MAKE_ARRAY = f"import numpy as np\nbig = np.random.default_rng(0).random({ARRAY_ITEMS})"
MAKE_LIST = f"big = [str(i) for i in range({LIST_ITEMS})]"
MAKE_COMPARE_LIST = f"big = [str(i) for i in range({COMPARE_LIST_ITEMS})]"


def ipyworkers_move(make: str, repeat: int) -> tuple[list[float], float, int]:
    """(transfer seconds as the destination saw them, sorted; median end-to-end seconds of a
    dependent task that reads the value; bytes moved)."""
    transfers, dependents, size = [], [], 0
    with Cluster(2, default_sink=RecordingSink()) as cluster:
        for _ in range(repeat):
            cluster.run("big = None", on=2, block=True)
            cluster.run(make, on=1, block=True)
            before = len(cluster.events.events(ev.TRANSFER))
            started = time.perf_counter()
            cluster.run("len(big)", on=2, block=True)
            dependents.append(time.perf_counter() - started)
            (transfer,) = cluster.events.events(ev.TRANSFER)[before:]
            transfers.append(transfer.data["end"] - transfer.data["start"])
            size = transfer.data["bytes"]
            cluster.run("del big", on=1, block=True)
    return sorted(transfers), statistics.median(dependents), size


def ipyworkers_handoff(repeat: int) -> float:
    gaps = []
    with Cluster(2, default_sink=RecordingSink()) as cluster:
        for i in range(repeat):
            producer = cluster.run(f"small = {i}", on=1)
            dependent = cluster.run("got = small", on=2)
            dependent.wait(30), producer.wait(30)
            gaps.append(dependent.started_at - producer.finished_at)
    return statistics.median(gaps[10:])


def dask_move(make_kind: str, repeat: int) -> tuple[float, float]:
    import numpy as np
    from dask.distributed import Client, LocalCluster, wait

    logging.getLogger("distributed").setLevel(logging.ERROR)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        w1, w2 = sorted(client.scheduler_info()["workers"])
        moves, gaps = [], []
        for i in range(repeat):
            if make_kind == "array":
                made = client.submit(lambda s: np.random.default_rng(0).random(ARRAY_ITEMS), i, workers=[w1])
            else:
                made = client.submit(lambda s: [str(j) for j in range(COMPARE_LIST_ITEMS)], i, workers=[w1])
            wait(made)
            started = time.perf_counter()
            client.submit(len, made, workers=[w2], pure=False).result()
            moves.append(time.perf_counter() - started)
            del made
        for i in range(max(50, repeat * 20)):
            small = client.submit(lambda v: v, i, workers=[w1], pure=False)
            wait(small)
            started = time.perf_counter()
            client.submit(lambda v: v, small, workers=[w2], pure=False).result()
            gaps.append(time.perf_counter() - started)
    return statistics.median(moves), statistics.median(gaps)


def ipyparallel_move(make: str, repeat: int) -> float:
    import ipyparallel as ipp

    cluster = ipp.Cluster(n=2, log_level=logging.ERROR)
    rc = cluster.start_and_connect_sync()
    rc.wait_for_engines(2)
    try:
        times = []
        for _ in range(repeat):
            rc[0].execute(make, block=True)
            started = time.perf_counter()
            value = rc[0].pull("big", block=True)
            rc[1].push({"big": value}, block=True)
            times.append(time.perf_counter() - started)
            del value
        return statistics.median(times)
    finally:
        rc.close()
        cluster.stop_cluster_sync()


def rate(size: int):
    return lambda seconds: "-" if seconds is None else f"{size / seconds / 1e9:.2f} GB/s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    array_move, array_dep, array_size = ipyworkers_move(MAKE_ARRAY, args.repeat)
    list_move, list_dep, list_size = ipyworkers_move(MAKE_LIST, args.repeat)
    _, compare_dep, _ = ipyworkers_move(MAKE_COMPARE_LIST, args.repeat)
    handoff = ipyworkers_handoff(300)
    rows_array = {"ipyworkers": array_dep}
    rows_list = {"ipyworkers": compare_dep}
    rows_small = {"ipyworkers": handoff}
    if have("distributed"):
        rows_array["dask"], _ = dask_move("array", args.repeat)
        rows_list["dask"], rows_small["dask"] = dask_move("list", 1)
    if have("ipyparallel"):
        rows_array["ipyparallel (pull, push)"] = ipyparallel_move(MAKE_ARRAY, args.repeat)
        rows_list["ipyparallel (pull, push)"] = ipyparallel_move(MAKE_COMPARE_LIST, args.repeat)

    for label, moves, size in ((f"100 MB array ({array_size / 1e6:.0f} MB)", array_move, array_size),
                               (f"list of {LIST_ITEMS:,} strings ({list_size / 1e6:.0f} MB pickled)", list_move,
                                list_size)):
        best, median = moves[0], statistics.median(moves)
        print(f"{label}, worker 1 -> worker 2, as the destination saw it: best {fmt_seconds(best)} = "
              f"{size / best / 1e9:.2f} GB/s, median {fmt_seconds(median)} = {size / median / 1e9:.2f} GB/s")
    print(f"small value: dependent on worker 2 starts {fmt_seconds(handoff)} after its producer on worker 1 ends\n")
    print("End to end: a task on worker 2 that reads the value made on worker 1 (including the move)\n", flush=True)
    print(table([
        ("100 MB NumPy array", rows_array),
        (f"list of {COMPARE_LIST_ITEMS:,} strings", rows_list),
        ("small value: producer end to dependent start (Dask: whole dependent task)", rows_small),
    ]))
    print(f"\n100 MB array end to end: ipyworkers {rate(array_size)(array_dep)}"
          + "".join(f", {k} {rate(array_size)(v)}" for k, v in rows_array.items() if k != "ipyworkers"))

if __name__ == "__main__":
    main()
