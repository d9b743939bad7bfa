"""A %%parallel cell written out as one Python script per worker, plus ``run.py``. Pure
(``export_program`` writes files; everything else only builds text).

Each ``worker_<k>.py`` holds worker k's statements in submission order, with the
transfers the dataflow would make written as explicit channel calls, which every
worker defines: ``send(obj, to=ID)`` and ``x = recv(frm=ID)``.

Channels are FIFO per pair of workers, so a receiver must take values in the order
its sender sent them, and a send blocks once the receiver has ``WINDOW`` messages
(or about 32 MB: with large values, one message) not yet taken. The scripts are
built from the plan's submission order so that neither can bite. Give every send and
receive the index of the task that receives (its *time*):

* receives are written where the receiving task was submitted, so a script's
  receives come in time order;
* each send goes into the sender's script after the task that made the value and
  after the script's last send or receive so far (all earlier in time), but ahead of
  any later runs: so every script's sends and receives are in time order too, sends
  per pair in the order of the receives, and a value is sent before its sender
  rebinds it (else the receiver would have read the newer value).

Then nothing can deadlock, whatever the window (>= 1 message): take the stuck send
or receive with the smallest time t. Only one worker receives at time t. If the
stuck one receives from S, S is stuck before its send at time t, so at a send or
receive of time <= t, hence exactly t: a send to the same receiver, whose queue is
then not empty, so the receive was not stuck. If the stuck one is a send at time t
to D, D has not taken a queued message of time <= t, so D is stuck at time t too, at a
receive from some S whose queue is full: not stuck either. ``check_channels`` replays
the scripts to show it for a given program, with any window.
"""

from __future__ import annotations

import ast
import string
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import IpyworkersError
from .analysis import analyze
from .dataflow import KERNEL, Dataflow
from .parallel import Group, PlanStep, plan
from .schedule import AutoPlan

WINDOW = 256
"""Messages a sender may have unread at one receiver before ``send`` blocks (as ``worker.channels.WINDOW``)."""
WORKER_NAMES = frozenset({"worker_id", "n_workers", "send", "recv", "close", "stream"})
"""Names every worker defines itself (as ``kernel.cluster.WORKER_NAMES``)."""
RUN, SEND, RECV = "run", "send", "recv"


class ExportError(IpyworkersError, ValueError):
    """The plan cannot be written out as scripts; the message says why."""


class DeadlockError(IpyworkersError):
    """The scripts' sends and receives would wait for each other forever."""


class ChannelOrderError(IpyworkersError):
    """A receive would get another value than the one it expects (FIFO order broken)."""


@dataclass(frozen=True, eq=False)
class Op:
    """One step of a worker's script: run cell lines, send a value, or receive one."""

    kind: str
    text: str
    peer: int | None = None
    name: str | None = None
    version: int | None = None
    lines: tuple[int, int] | None = None
    setup: bool = False


@dataclass
class Program:
    """The per-worker scripts of a cell, before they are written out."""

    workers: tuple[int, ...]
    ops: dict[int, list[Op]]
    finals: dict[int, list[str]]
    """For each worker, the names whose final value it holds (modules left out)."""
    outside: list[str] = field(default_factory=list)
    """Names the cell reads but never binds: outside Jupyter nothing defines them."""
    summary: str = ""


def build_program(groups_or_plan: Sequence[Group] | AutoPlan, workers: Sequence[int]) -> Program:
    """The scripts of a split (``parallel.split``) or placed (``auto_plan``) cell."""
    auto = groups_or_plan if isinstance(groups_or_plan, AutoPlan) else None
    groups = list(auto.groups if auto is not None else groups_or_plan)
    ids = tuple(sorted(workers))
    if ids != tuple(range(1, len(ids) + 1)):
        raise ExportError(f"workers must be 1..n, as ipyworkers.Cluster(n) numbers them, not {list(ids)}")
    steps = plan(groups, Dataflow())
    if any(step.on not in ids for step in steps):
        raise ExportError("a group runs on a worker outside " + f"1..{len(ids)}")
    ops = _scripts(steps, ids)
    return Program(ids, ops, _finals(steps), _outside(groups), auto.summary() if auto else "")


def _scripts(steps: list[PlanStep], workers: tuple[int, ...]) -> dict[int, list[Op]]:
    ops: dict[int, list[Op]] = {w: [] for w in workers}
    made: dict[tuple[int, int], Op] = {}  # (version, worker) -> the run that made it there
    holds: dict[int, dict[str, int]] = {w: {} for w in workers}  # worker -> name -> version
    first_copy: dict[int, int] = {}
    for step in steps:
        version = first_copy.setdefault(id(step.group), step.task_id)
        worker = step.on
        for dep in step.deps:
            if dep.source == KERNEL:
                raise ExportError(f"{dep.name!r} would come from the kernel, which a script cannot reach")
            if holds[worker].get(dep.name) == dep.version:
                continue  # received before: the value is already there
            producer = made.get((dep.version, dep.source))
            if producer is None:
                raise ExportError(f"worker {dep.source} does not make {dep.name!r} itself, so it cannot send it")
            send = Op(SEND, f"send({dep.name}, to={worker})", worker, dep.name, dep.version)
            _insert_after(ops[dep.source], send, [producer, _last_blocking(ops[dep.source])])
            ops[worker].append(Op(RECV, f"{dep.name} = recv(frm={dep.source})", dep.source, dep.name, dep.version))
            holds[worker][dep.name] = dep.version
        group = step.group
        run = Op(RUN, group.source, lines=(group.first_line, group.last_line), setup=group.replicated)
        ops[worker].append(run)
        made[(version, worker)] = run
        names = analyze(group.source)
        for name in names.writes | names.deletes:
            holds[worker][name] = version
    return ops


def _last_blocking(ops: list[Op]) -> Op | None:
    """The script's last send or receive so far: a new send must not pass it."""
    return next((op for op in reversed(ops) if op.kind != RUN), None)


def _insert_after(ops: list[Op], op: Op, after: list[Op | None]) -> None:
    """Put ``op`` right after the last of ``after`` (by identity) in ``ops``."""
    index = max(next(i for i, o in enumerate(ops) if o is a) for a in after if a is not None)
    ops.insert(index + 1, op)


def _finals(steps: list[PlanStep]) -> dict[int, list[str]]:
    """Who holds each name's final value: the worker of the last step that bound it (for
    setup run on several workers, the first of them). Modules are left out."""
    final: dict[str, int] = {}
    for step in steps:
        names = analyze(step.group.source)
        imported = _imported(step.group.source)
        for name in names.writes:
            if name in imported:
                final.pop(name, None)
            else:
                final[name] = step.group.worker
        for name in names.deletes:
            final.pop(name, None)
    out: dict[int, list[str]] = {}
    for name, worker in sorted(final.items()):
        out.setdefault(worker, []).append(name)
    return out


def _imported(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= {a.asname or a.name.split(".")[0] for a in node.names if a.name != "*"}
    return found


def _outside(groups: list[Group]) -> list[str]:
    bound: set[str] = set()
    outside: set[str] = set()
    for group in groups:
        names = analyze(group.source)
        outside |= names.reads - bound - WORKER_NAMES
        bound |= names.writes
    return sorted(outside)


# -- text -------------------------------------------------------------------------------------


def script(program: Program, worker: int) -> str:
    """The text of ``worker_<worker>.py``."""
    n = len(program.workers)
    out = [
        f"# Worker {worker} of {n}: generated by ipyworkers from a %%parallel cell; run.py runs it.",
        "# send(obj, to=ID) and recv(frm=ID) are the channel functions every worker has. Values",
        "# between two workers arrive in the order they are sent, so the sends below come in the",
        "# order the other worker receives them.",
    ]
    if program.outside:
        out.append(f"# The cell reads names it does not define: {', '.join(program.outside)}.")
    if not program.ops[worker]:
        out += ["", "# Nothing runs on this worker."]
    previous: Op | None = None
    for op in program.ops[worker]:
        if op.kind in (RUN, RECV) and (previous is None or previous.kind != RECV):
            out.append("")  # a block: the receives a run needs, the run, the sends after it
        if op.kind == RUN:
            first, last = op.lines or (0, 0)
            where = f"line {first}" if first == last else f"lines {first}-{last}"
            out.append(f"# cell {where}" + (" (setup: each worker that needs it runs it)" if op.setup else ""))
        out.append(op.text)
        previous = op
    return "\n".join(out) + "\n"


RUN_PY = string.Template('''\
"""Runs the program of a %%parallel cell on ipyworkers, outside Jupyter: python run.py

Worker k runs worker_<k>.py; the scripts move values between them with send/recv.
Prints the final value of each name the cell defines; exits with 1 on an error.$summary
"""

import sys
from pathlib import Path

import ipyworkers

HERE = Path(__file__).resolve().parent
WORKERS = $workers
FINAL = $finals
"""For each worker, the names whose final value it holds."""


def program(k: int) -> str:
    """worker_<k>.py, run through exec() so the cluster does not see its names and move
    values by itself (the scripts do that with send/recv), then its final values in one
    dict to pull."""
    path = HERE / f"worker_{k}.py"
    return (f"exec(compile({path.read_text()!r}, {str(path)!r}, 'exec'))\\n"
            f"_final_{k} = {{name: globals()[name] for name in {FINAL.get(k, [])!r} if name in globals()}}\\n")


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
''')


def run_script(program: Program) -> str:
    """The text of ``run.py``."""
    summary = f"\n\nPlan: {program.summary}." if program.summary else ""
    if program.outside:
        summary += f"\nThe cell reads names it does not define ({', '.join(program.outside)}): define them first."
    return RUN_PY.substitute(workers=repr(list(program.workers)), finals=repr(program.finals), summary=summary)


def export_program(groups_or_plan: Sequence[Group] | AutoPlan, workers: Sequence[int],
                   directory: str | Path) -> list[Path]:
    """Write ``worker_<k>.py`` for each worker and ``run.py`` into ``directory`` (made if
    needed); returns the paths written. Raises ``ExportError`` if the plan cannot be
    written out, ``DeadlockError``/``ChannelOrderError`` if its channels would not work."""
    program = build_program(groups_or_plan, workers)
    check_channels(program)
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for worker in program.workers:
        path = folder / f"worker_{worker}.py"
        path.write_text(script(program, worker))
        written.append(path)
    run = folder / "run.py"
    run.write_text(run_script(program))
    return [*written, run]


# -- checking the channels --------------------------------------------------------------------


def check_channels(program: Program | dict[int, list[Op]], capacity: int | None = WINDOW) -> list[tuple[int, Op]]:
    """Replay every script's sends and receives as the channels behave (FIFO per pair of
    workers; a send waits while ``capacity`` messages to that worker are unread; a
    receive waits for a message). Returns the order the operations completed in.

    Raises ``ChannelOrderError`` if a receive would get another value than the one it
    expects, or a value is sent and never received; ``DeadlockError`` naming the waits
    if the scripts get stuck.
    """
    ops = program.ops if isinstance(program, Program) else program
    position = {w: 0 for w in ops}
    queues: dict[tuple[int, int], deque[Op]] = {}
    done: list[tuple[int, Op]] = []
    moved = True
    while moved:
        moved = False
        for worker in sorted(ops):
            script_ops = ops[worker]
            while position[worker] < len(script_ops) and _step(worker, script_ops[position[worker]], queues, capacity):
                done.append((worker, script_ops[position[worker]]))
                position[worker] += 1
                moved = True
    stuck = {w: ops[w][p] for w, p in position.items() if p < len(ops[w])}
    if stuck:
        raise DeadlockError("the scripts wait for each other: " + "; ".join(
            f"worker {w} is stuck at `{op.text}`" for w, op in sorted(stuck.items())))
    left = [(pair, q[0]) for pair, q in queues.items() if q]
    if left:
        (src, dst), op = left[0]
        raise ChannelOrderError(f"worker {src} sends {op.name!r} to worker {dst}, which never receives it")
    return done


def _step(worker: int, op: Op, queues: dict[tuple[int, int], deque[Op]], capacity: int | None) -> bool:
    """Try one operation; False if it has to wait."""
    if op.kind == SEND:
        queue = queues.setdefault((worker, op.peer), deque())
        if capacity is not None and len(queue) >= capacity:
            return False
        queue.append(op)
    elif op.kind == RECV:
        queue = queues.setdefault((op.peer, worker), deque())
        if not queue:
            return False
        sent = queue.popleft()
        if (sent.name, sent.version) != (op.name, op.version):
            raise ChannelOrderError(
                f"worker {worker} expects {op.name!r} from worker {op.peer} but gets {sent.name!r} first")
    return True
