"""Cost of the live dashboard: 10,000 trivial tasks with it shown and not shown,
in a real kernel (its widget messages really go out), runs interleaved.

    .venv/bin/python benchmarks/timeline.py
"""

from __future__ import annotations

import argparse
import json

from jupyter_client.manager import start_new_kernel

from ipyworkers.notebook.dashboard import REFRESH_SECONDS

KERNEL_CODE = """
import json, statistics, time
from IPython.display import display
from ipyworkers import Cluster
from ipyworkers.notebook.dashboard import Dashboard
from ipyworkers.kernel.sinks import RecordingSink

def _run(show, n):
    with Cluster(2, default_sink=RecordingSink()) as cluster:
        dashboard = Dashboard(cluster) if show else None
        if dashboard is not None:
            display(dashboard.widget)
        started = time.perf_counter()
        tasks = [cluster.run("pass", on=1 + i % 2, want_result=False) for i in range(n)]
        for task in tasks:
            task.wait()
        elapsed = time.perf_counter() - started
        if dashboard is not None:
            redraw = time.perf_counter()
            dashboard._render()
            _redraws.append(time.perf_counter() - redraw)
            dashboard.close()
    return elapsed

_redraws = []

_times = {{"hidden": [], "shown": []}}
for _ in range({rounds}):
    for _mode in ("hidden", "shown"):
        _times[_mode].append(_run(_mode == "shown", {tasks}))
_times["redraw"] = _redraws
print(json.dumps(_times))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    km, kc = start_new_kernel(kernel_name="python3")
    printed: list[str] = []
    try:
        kc.execute_interactive(KERNEL_CODE.format(tasks=args.tasks, rounds=args.rounds), timeout=1800,
                               output_hook=lambda m: printed.append(m["content"].get("text", "")))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    times = json.loads("".join(printed).strip().splitlines()[-1])
    hidden, shown = sorted(times["hidden"]), sorted(times["shown"])
    median = lambda xs: xs[len(xs) // 2]
    print(f"{args.tasks:,} trivial tasks on 2 workers, {args.rounds} interleaved rounds")
    print(f"  dashboard hidden: median {median(hidden):.2f} s  ({' '.join(f'{t:.2f}' for t in hidden)})")
    print(f"  dashboard shown:  median {median(shown):.2f} s  ({' '.join(f'{t:.2f}' for t in shown)})")
    print(f"  overhead: {(median(shown) / median(hidden) - 1) * 100:+.1f}%")
    redraw = median(sorted(times["redraw"]))
    print(f"  one redraw of the {args.tasks:,}-task timeline: {redraw * 1e3:.0f} ms, so an event is on screen "
          f"within {REFRESH_SECONDS * 1e3:.0f} ms (the throttle) + {redraw * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
