"""Startup and round-trip latency, against Dask and ipyparallel when installed.

    .venv/bin/python benchmarks/core.py            # or: make bench

Medians; on a shared machine, compare the ratios of one run, not absolute times.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import statistics
import time
import warnings

from common import fmt_seconds, have, median_time, table

from ipyworkers import Cluster
from ipyworkers.kernel.sinks import RecordingSink


def ipyworkers_startup(n: int, repeat: int) -> tuple[float, float]:
    """(median time until all workers are ready, median time until a first result)."""
    ready, first = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        cluster = Cluster(n, default_sink=RecordingSink()).start()
        ready.append(time.perf_counter() - started)
        for wid in range(1, n + 1):
            cluster.run("1", on=wid, block=True)
        first.append(time.perf_counter() - started)
        cluster.stop()
    return statistics.median(ready), statistics.median(first)


def ipyworkers_round_trip(repeat: int) -> float:
    with Cluster(1, default_sink=RecordingSink()) as cluster:
        return median_time(lambda: cluster.run("1", on=1, block=True), repeat)


def ipyworkers_new_cell_round_trip(repeat: int) -> float:
    """A three-line cell never run before, each time: no cache on either side helps."""
    count = itertools.count()
    with Cluster(1, default_sink=RecordingSink()) as cluster:
        return median_time(lambda: cluster.run(f"x = {next(count)}\ny = x + 1\ny", on=1, block=True), repeat)


def ipyworkers_submit_round_trip(repeat: int) -> float:
    """``cluster.submit(fn).result``: a plain function call, no IPython cell."""
    with Cluster(1, default_sink=RecordingSink()) as cluster:
        return median_time(lambda: cluster.submit(_one).result, repeat)


MAGIC_TIMING = """
import statistics, time
_ip = get_ipython()
_samples = []
for _ in range({repeat}):
    _t = time.perf_counter()
    _ip.run_cell_magic('worker', '1 --block', 'pass')
    _samples.append(time.perf_counter() - _t)
print(statistics.median(_samples))
"""


def ipyworkers_magic_round_trip(repeat: int) -> tuple[float, float, float]:
    """(magic inside the kernel, magic cell from a frontend, plain 'pass' cell from a frontend)."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        kc.execute_interactive("%load_ext ipyworkers\n%workers start 1", timeout=60)
        printed = []
        kc.execute_interactive(MAGIC_TIMING.format(repeat=repeat), timeout=300,
                               output_hook=lambda m: printed.append(m["content"].get("text", "")))
        in_kernel = float("".join(printed).strip().splitlines()[-1])

        def frontend(code: str) -> float:
            return median_time(lambda: kc.execute_interactive(code, timeout=60, output_hook=lambda m: None),
                               max(20, repeat // 10))

        magic_cell = frontend("%%worker 1 --block\npass")
        plain_cell = frontend("pass")
        kc.execute_interactive("%workers stop", timeout=60)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return in_kernel, magic_cell, plain_cell


def dask_numbers(repeat: int) -> tuple[float, float]:
    from dask.distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    starts = []
    for _ in range(3):
        started = time.perf_counter()
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        client.wait_for_workers(2)
        starts.append(time.perf_counter() - started)
        if len(starts) < 3:
            client.close()
            cluster.close()
    rt = median_time(lambda: client.submit(_one, pure=False).result(), repeat)
    client.close()
    cluster.close()
    return statistics.median(starts), rt


def ipyparallel_numbers(repeat: int) -> tuple[float, float]:
    import ipyparallel as ipp

    started = time.perf_counter()
    cluster = ipp.Cluster(n=2, log_level=logging.ERROR)
    rc = cluster.start_and_connect_sync()
    rc.wait_for_engines(2)
    start = time.perf_counter() - started
    view = rc[0]
    rt = median_time(lambda: view.apply_sync(_one), max(50, repeat // 4))
    rc.close()
    cluster.stop_cluster_sync()
    return start, rt


def _one() -> int:
    return 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=500)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    ready2, first2 = ipyworkers_startup(2, 7)
    ready4, first4 = ipyworkers_startup(4, 7)
    api_rt = ipyworkers_round_trip(args.repeat)
    new_cell_rt = ipyworkers_new_cell_round_trip(args.repeat)
    submit_rt = ipyworkers_submit_round_trip(args.repeat)
    magic_rt, magic_cell, plain_cell = ipyworkers_magic_round_trip(args.repeat)
    numbers = {
        "ipyworkers": {"ready2": ready2, "first2": first2, "ready4": ready4, "first4": first4,
                       "api_rt": api_rt, "new_cell_rt": new_cell_rt, "submit_rt": submit_rt,
                       "magic_rt": magic_rt, "magic_cell": magic_cell, "plain_cell": plain_cell},
    }
    if have("distributed"):
        start, rt = dask_numbers(args.repeat)
        numbers["dask"] = {"ready2": start, "api_rt": rt, "submit_rt": rt}
    if have("ipyparallel"):
        start, rt = ipyparallel_numbers(args.repeat)
        numbers["ipyparallel"] = {"ready2": start, "api_rt": rt}

    def row(label: str, key: str) -> tuple[str, dict]:
        return label, {system: values.get(key) for system, values in numbers.items()}

    print(table([
        row("2 workers ready", "ready2"),
        row("2 workers ready + first result from each", "first2"),
        row("4 workers ready", "ready4"),
        row("4 workers ready + first result from each", "first4"),
        row("trivial task round trip, Python API", "api_rt"),
        row("new three-line cell each time, Python API", "new_cell_rt"),
        row("function call round trip, submit(fn).result (Dask: client.submit)", "submit_rt"),
        row("trivial task round trip, %%worker --block in the kernel", "magic_rt"),
    ]))
    print(f"\nfrom a Jupyter frontend: '%%worker 1 --block' cell {fmt_seconds(magic_cell)}, "
          f"plain 'pass' cell {fmt_seconds(plain_cell)}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(numbers, fh, indent=2)


if __name__ == "__main__":
    main()
