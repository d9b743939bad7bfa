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

Kept apart from the magic (``workers_magic.py``): it only builds launchers from words and parses ids.
"""

from __future__ import annotations

import argparse
from typing import Any

REMOTE_FLAGS = ("--ssh", "--slurm", "--mpi", "--join")


def arguments(magic: Any) -> Any:
    """The remote options of ``%workers``, as ``magic_arguments`` decorators."""
    from IPython.core.magic_arguments import argument

    for flags, options in reversed([
        (("--ssh",), {"metavar": "HOST[,HOST...]", "help": "start (or add) the workers on these hosts, over ssh"}),
        (("--slurm",), {"action": "store_true", "help": "place the workers with Slurm (srun, else sbatch)"}),
        (("--mpi",), {"action": "store_true", "help": "place the workers with mpiexec"}),
        (("--join",), {"action": "store_true", "help": "print the command that joins a worker from any host"}),
        (("--insecure",), {"action": "store_true",
                           "help": "plain TCP with the session-key challenge only: no encryption"}),
        (("--listen",), {"metavar": "HOST:PORT", "help": "what the kernel binds (default: every interface)"}),
        (("--advertise",), {"metavar": "HOST[:PORT]", "help": "the address workers connect to"}),
        (("--python",), {"metavar": "PATH", "help": "the interpreter on the workers' hosts"}),
    ]):
        magic = argument(*flags, **options)(magic)
    return magic


def split_passthrough(line: str) -> tuple[str, list[str]]:
    """``line`` up to a lone ``--``, and the words after it (for ssh, srun/sbatch, mpiexec)."""
    import shlex

    words = line.split()
    if "--" not in words:
        return line, []
    at = words.index("--")
    return " ".join(words[:at]), shlex.split(" ".join(words[at + 1:]), comments=True)


def launcher_from(args: argparse.Namespace, extra: list[str]) -> Any:
    from ..kernel import launchers

    chosen = [flag for flag in REMOTE_FLAGS if getattr(args, flag[2:])]
    if len(chosen) > 1:
        raise ValueError(f"{chosen[1]} is not allowed with {chosen[0]}: choose one place for the workers")
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
