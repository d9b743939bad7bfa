"""The R notes' pipeline experiment, reproduced; and grep by offsets.

    .venv/bin/python benchmarks/pipeline.py                 # 2,000,000 lines, ~1 GB grep file
    .venv/bin/python benchmarks/pipeline.py --lines 200000 --grep-mb 100   # quick

1. A numeric text file: worker 1 reads and parses it chunk by chunk and streams the
   chunks to worker 2, which computes on each while worker 1 parses the next. Timed
   against the same work in one process, for chunks of 10, 100, 1,000 and 10,000 lines.
   The graphic goes to benchmarks/results/pipeline.png.
2. Count the lines matching a pattern in a ~1 GB file: each worker reads its own
   newline-aligned byte range (ship offsets, not data) vs. one process reading it all.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import count_matching

from ipyworkers import Cluster, chunks
from ipyworkers.kernel.sinks import RecordingSink

VALUES_PER_LINE = 8
RESULTS = Path(__file__).resolve().parent / "results"

COMMON = '''
import itertools, math
from array import array

def read_lines(f, n):
    while True:
        block = list(itertools.islice(f, n))
        if not block:
            return
        yield block

def parse(chunk):
    return array("d", map(float, " ".join(chunk).split()))

def work(values):
    return sum(math.sqrt(v) * math.log1p(v) + math.sin(v) * math.cos(v) for v in values)
'''

SERIAL = COMMON + '''
total = 0.0
with open({path!r}) as f:
    for chunk in read_lines(f, {chunk}):
        total += work(parse(chunk))
total
'''

PRODUCER = COMMON + '''
with open({path!r}) as f:
    for chunk in read_lines(f, {chunk}):
        send(parse(chunk), to=2)
close(to=2)
'''

CONSUMER = COMMON + '''
total = 0.0
for values in stream(frm=1):
    total += work(values)
total
'''


def make_numbers(path: Path, lines: int) -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    with open(path, "w") as fh:
        for start in range(0, lines, 100_000):
            block = rng.random((min(100_000, lines - start), VALUES_PER_LINE)) * 100
            np.savetxt(fh, block, fmt="%.4f")


def timed(cluster: Cluster, runs: list[tuple[str, int]]) -> tuple[float, list]:
    started = time.perf_counter()
    tasks = [cluster.run(code, on=worker) for code, worker in runs]
    results = [t.wait().result for t in tasks]
    return time.perf_counter() - started, results


def pipeline_experiment(cluster: Cluster, path: Path, lines: int, sizes: list[int], repeat: int) -> dict:
    """Best of ``repeat`` runs each; serial and pipeline runs interleave, so slow spells of a
    shared machine hit both alike."""
    serial_times: dict[int, float] = {}
    pipe_times: dict[int, float] = {}
    for _ in range(repeat):
        for size in sizes:
            seconds, _ = timed(cluster, [(SERIAL.format(path=str(path), chunk=size), 1)])
            serial_times[size] = min(seconds, serial_times.get(size, seconds))
            seconds, _ = timed(cluster, [(PRODUCER.format(path=str(path), chunk=size), 1), (CONSUMER, 2)])
            pipe_times[size] = min(seconds, pipe_times.get(size, seconds))
    return {"serial": serial_times, "pipeline": pipe_times, "lines": lines}


def draw(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(result["pipeline"])
    lines = result["lines"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    serial = [lines / result["serial"][s] / 1e3 for s in sizes]
    pipe = [lines / result["pipeline"][s] / 1e3 for s in sizes]
    xs = range(len(sizes))
    left.bar([x - 0.2 for x in xs], serial, width=0.4, label="one process", color="#8c959f")
    left.bar([x + 0.2 for x in xs], pipe, width=0.4, label="2-worker pipeline", color="#2da44e")
    left.set_xticks(list(xs), [f"{s:,}" for s in sizes])
    left.set_xlabel("lines per chunk")
    left.set_ylabel("thousand lines / s")
    left.set_title(f"parse + compute {lines:,} lines")
    left.legend()
    base = result["pipeline"][1000] if 1000 in result["pipeline"] else result["pipeline"][sizes[-1]]
    right.plot(sizes, [base / result["pipeline"][s] * 100 for s in sizes], "o-", color="#6e40c9",
               label="ipyworkers")
    right.plot([10, 1000], [7, 100], "x--", color="#cf222e", label="the R version (10 vs 1,000)")
    right.set_xscale("log")
    right.set_xlabel("lines per chunk")
    right.set_ylabel("% of the 1,000-line throughput")
    right.set_title("per-message overhead")
    right.axhline(50, color="#d0d7de", linestyle=":")
    right.legend()
    fig.tight_layout()
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out, dpi=110)


def make_log(path: Path, megabytes: int) -> None:
    """Log-like lines; one in 50 has ERROR in it."""
    block = "".join(
        f"2026-11-22 05:{i % 60:02d}:{i % 47:02d} {'ERROR' if i % 50 == 7 else 'INFO '} "
        f"request {i} served in {i % 97} ms\n"
        for i in range(20_000)
    ).encode()
    with open(path, "wb") as fh:
        for _ in range(max(1, megabytes * 2**20 // len(block))):
            fh.write(block)


def grep_experiment(cluster: Cluster, path: Path) -> dict:
    size = path.stat().st_size
    started = time.perf_counter()
    one = count_matching(str(path), 0, size)
    single = time.perf_counter() - started
    ranges = list(chunks(path, size // 16 + 1))
    started = time.perf_counter()
    parts = cluster.map(lambda r: count_matching(str(path), *r), ranges, progress=False)
    spread = time.perf_counter() - started
    assert sum(parts) == one, (sum(parts), one)
    return {"bytes": size, "matches": one, "single": single, "workers": spread, "ranges": len(ranges)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--grep-mb", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10_000])
    args = parser.parse_args()
    sizes = args.sizes
    with tempfile.TemporaryDirectory() as tmp, Cluster(2, default_sink=RecordingSink()) as cluster:
        numbers = Path(tmp) / "numbers.txt"
        make_numbers(numbers, args.lines)
        result = pipeline_experiment(cluster, numbers, args.lines, sizes, args.repeat)
        draw(result, RESULTS / "pipeline.png")
        print(f"pipeline: {args.lines:,} lines of {VALUES_PER_LINE} numbers; worker 1 parses, worker 2 computes\n")
        print("| lines per chunk | one process | 2-worker pipeline | speed-up | throughput vs 1,000-line chunks |")
        print("|---|---|---|---|---|")
        for size in sizes:
            s, p = result["serial"][size], result["pipeline"][size]
            print(f"| {size:,} | {s:.2f} s | {p:.2f} s | {s / p:.2f}× | "
                  f"{result['pipeline'][1000] / p * 100:.0f}% |")
        print(f"\ngraphic: {RESULTS / 'pipeline.png'}")
        log = Path(tmp) / "log.txt"
        make_log(log, args.grep_mb)
        os.sync()
        g = grep_experiment(cluster, log)
        print(f"\ngrep by offsets: {g['bytes'] / 1e9:.2f} GB, {g['matches']:,} matching lines, {g['ranges']} ranges")
        print(f"| one process | 2 workers, each reading its own ranges | speed-up |\n|---|---|---|\n"
              f"| {g['single']:.2f} s | {g['workers']:.2f} s | {g['single'] / g['workers']:.2f}× |")


if __name__ == "__main__":
    main()
