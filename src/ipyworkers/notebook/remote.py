"""The remote part of ``%workers``: where workers start, and growing or shrinking a cluster.

    %workers start 4 --ssh gpu1,gpu2          # 2 workers on each host, through your ssh
    %workers start 16 --slurm -- -p short     # srun in an allocation, else sbatch
    %workers start 8 --mpi                    # mpiexec -n 8
    %workers start 2 --join                   # prints the command to run on any host
    %workers add 2 --ssh gpu3                 # grow a running cluster (local if no launcher)
    %workers remove 3 4                       # stop workers 3 and 4 for good

Options for the remote launchers: ``--insecure`` (plain TCP with the HMAC challenge
only, for trusted fabrics), ``--listen HOST:PORT`` (what the kernel binds; default every
interface), ``--advertise HOST[:PORT]`` (the address workers connect to) and ``--python
PATH`` (the interpreter on the workers' hosts). Anything
after ``--`` goes to ``srun``/``sbatch``, ``mpiexec`` or ``ssh``.

Kept apart from ``magics.py``: it only builds launchers from words and parses ids.
"""

from __future__ import annotations

import argparse
from typing import Any

REMOTE_FLAGS = ("--ssh", "--slurm", "--mpi", "--join")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise ValueError(message)


def _parser(prog: str) -> _Parser:
    parser = _Parser(prog=prog, add_help=False)
    parser.add_argument("n", nargs="?", type=int)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--ssh", metavar="HOST[,HOST...]")
    where.add_argument("--slurm", action="store_true")
    where.add_argument("--mpi", action="store_true")
    where.add_argument("--join", action="store_true")
    parser.add_argument("--insecure", action="store_true")
    parser.add_argument("--listen")
    parser.add_argument("--advertise")
    parser.add_argument("--python")
    parser.add_argument("--force", action="store_true")
    return parser


def wants_remote(words: list[str]) -> bool:
    return any(w.split("=", 1)[0] in REMOTE_FLAGS + ("--insecure", "--listen", "--advertise", "--python")
               for w in words)


def parse(words: list[str], prog: str) -> tuple[int | None, Any, bool]:
    """``(n, launcher or None, force)`` from the words after ``start`` or ``add``."""
    extra: list[str] = []
    if "--" in words:
        at = words.index("--")
        words, extra = words[:at], words[at + 1:]
    args = _parser(prog).parse_args(words)
    if args.n is not None and args.n < 1:
        raise ValueError(f"the number of workers must be a whole number >= 1, not {args.n}")
    return args.n, launcher_from(args, extra), args.force


def launcher_from(args: argparse.Namespace, extra: list[str]) -> Any:
    from ..kernel import launchers

    options = {"insecure": args.insecure, "listen": args.listen, "advertise": args.advertise}
    if args.python:
        options["python"] = args.python
    if args.ssh:
        return launchers.SSH(args.ssh, ssh_args=extra, **options)
    if args.slurm:
        return launchers.Slurm(args=extra, **options)
    if args.mpi:
        return launchers.MPI(args=extra, **options)
    if args.join:
        return launchers.Join(**options)
    if extra or args.insecure or args.listen or args.advertise or args.python:
        raise ValueError("--insecure, --listen, --advertise, --python and '-- ARGS' go with --ssh, --slurm, --mpi "
                         "or --join")
    return None


def parse_ids(words: list[str]) -> list[int]:
    if not words:
        raise ValueError("name the workers to remove: %workers remove ID [ID ...]")
    try:
        return [int(w) for w in words]
    except ValueError:
        raise ValueError(f"worker ids are whole numbers, not {' '.join(words)!r}") from None
