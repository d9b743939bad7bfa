"""The magics' arguments: the groups several magics share, as ``magic_arguments``
decorators, and the parsing of a magic's line (its trailing ``# comment`` dropped)."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument

WORKERS_ACTIONS = ("start", "add", "remove", "stop", "restart", "interrupt", "cancel", "status")
WORKERS_USAGE = ("%workers start [N] [--force] [--ssh HOSTS | --slurm | --mpi | --join] [--insecure] [-- ARGS] | "
                 "add N [--ssh HOSTS | ...] | remove ID ... | stop | restart [ID ...] | interrupt [ID ...] | "
                 "cancel In[N]|#TASK ... | status")


def worker_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"worker ids are whole numbers from 1, not {text!r}")
    return int(text)


def workers_action(text: str) -> str:
    if text not in WORKERS_ACTIONS:
        raise argparse.ArgumentTypeError(f"unknown action {text!r}; usage: {WORKERS_USAGE}")
    return text


def worker_ids(nargs: str, help: str):
    """Positional worker ids (``%%worker 1 2``, ``%wait 2``)."""
    return argument("ids", nargs=nargs, type=worker_id, default=[], help=help)


def block(func):
    return argument("--block", action="store_true",
                    help="wait here until the work ends: its output lands in this cell, its error "
                         "becomes the cell's error, and the stop button interrupts the workers")(func)


def names(nargs: str, help: str):
    return argument("names", nargs=nargs, metavar="NAME", default=[], help=help)


def to(func):
    return argument("--to", nargs="+", type=worker_id, required=True, metavar="ID",
                    help="the workers that receive the values")(func)


def from_(required: bool, help: str):
    return argument("--from", dest="frm", type=worker_id, required=required, metavar="ID", help=help)


def parse(magic: Any, line: str) -> argparse.Namespace:
    """``line`` parsed by ``magic``'s own parser (``magic_arguments``), its trailing
    comment dropped; a bad line is a ``UsageError`` that names the magic."""
    name = f"%{magic.parser.prog}"
    try:
        words = shlex.split(uncommented(line))
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"{name}: {exc}") from None
    try:
        return magic.parser.parse_args(words)
    except UsageError as exc:
        raise UsageError(f"{name}: {exc} (see {name}?)") from None


def uncommented(line: str) -> str:
    """``line`` without a trailing comment: from a ``#`` that starts a word outside
    quotes, as in a shell (so ``--save 'run#2.html'`` keeps its ``#``), unless a digit
    follows it (``%workers cancel #12`` names task 12)."""
    quote, escaped = None, False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()) and not line[i + 1:i + 2].isdigit():
            return line[:i]
    return line


def ids_of(words: list[str], action: str) -> list[int]:
    """``%workers ACTION``'s words as worker ids; a bad one is a ``UsageError``."""
    try:
        return [worker_id(w) for w in words]
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"%workers {action}: {exc}") from None
