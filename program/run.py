"""Runs the program of a %%parallel cell on ipyworkers, outside Jupyter: python run.py

Worker k runs worker_<k>.py; the scripts move values between them with send/recv.
Prints the final value of each name the cell defines; exits with 1 on an error.

Plan: predicted makespan 2.00 units on 3 workers (serial 2.00 units, speed-up 1.00×).
"""

import sys
from pathlib import Path

import ipyworkers

HERE = Path(__file__).resolve().parent
WORKERS = [1, 2, 3]
FINAL = {1: ['a', 'both']}
"""For each worker, the names whose final value it holds."""


def program(k: int) -> str:
    """worker_<k>.py, run through exec() so the cluster does not see its names and move
    values by itself (the scripts do that with send/recv), then its final values in one
    dict to pull."""
    path = HERE / f"worker_{k}.py"
    return (f"exec(compile({path.read_text()!r}, {str(path)!r}, 'exec'))\n"
            f"_final_{k} = {{name: globals()[name] for name in {FINAL.get(k, [])!r} if name in globals()}}\n")


def main() -> int:
    with ipyworkers.Cluster(len(WORKERS)) as cluster:
        try:
            for k in WORKERS:
                cluster.run(program(k), on=k)  # does not block: every worker starts at once
            cluster.wait()  # until all are done; raises the first error
            finals = cluster.pull([f"_final_{k}" for k in WORKERS])
        except Exception as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    for k in WORKERS:
        for name, value in finals[f"_final_{k}"].items():
            print(f"{name} = {value!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
