"""Cells whose statements carry worker tags (``# @2`` or ``# worker 2``). Pure.

Each top-level statement runs on the worker its tag names; an untagged statement
stays on the previous statement's worker. Consecutive statements on one worker
form one task. The transfers between them are not written here: they come out of
the same dataflow rules as for any other task, so ``plan`` can show exactly the
sends and receives a run would make.

Untagged statements before the first tag (imports, constants, defs) are *setup*:
each worker that reads a name they bind runs them itself, before its first tagged
statement, so a module or a small function is never shipped between workers. The
copies are one replicated task (``Dataflow.submit_replicated``), so the value they
bind counts as one version that every copy's worker holds.
"""

from __future__ import annotations

import ast
import copy
import io
import re
import tokenize
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from ..errors import TagError
from .analysis import CodeNames, analyze, analyze_statements
from .dataflow import KERNEL, Dataflow, Dep

TAG = re.compile(r"^#\s*(?:@\s*|worker\s+)(\S+)")




@dataclass
class Group:
    """Consecutive statements run as one task. ``replicas``: for setup lines, the other
    workers that run the same code too (one replicated task; see ``Dataflow.submit_replicated``)."""

    worker: int
    first_line: int
    last_line: int
    source: str
    replicas: tuple[int, ...] = ()

    @property
    def code(self) -> str:
        """The group's source, padded so tracebacks give the cell's own line numbers."""
        return "\n" * (self.first_line - 1) + self.source

    @property
    def workers(self) -> tuple[int, ...]:
        """Every worker that runs this group: ``worker`` first, then the replicas."""
        return (self.worker, *self.replicas)

    @property
    def replicated(self) -> bool:
        return bool(self.replicas)


@dataclass
class PlanStep:
    """One task of the plan: ``group`` run on ``worker`` (``group.worker`` unless a replica),
    with the names it receives and where from. ``deps`` are the same receives with versions."""

    group: Group
    receives: list[tuple[str, int]] = field(default_factory=list)
    worker: int | None = None
    task_id: int = 0
    deps: list[Dep] = field(default_factory=list)

    @property
    def on(self) -> int:
        return self.group.worker if self.worker is None else self.worker


@dataclass(frozen=True)
class Unit:
    """Top-level statements that share their lines (``a = 1; b = 2``): they move together."""

    first_line: int
    last_line: int
    source: str
    nodes: tuple[ast.stmt, ...]

    @cached_property
    def names(self) -> CodeNames:
        """What the unit reads and writes, analysed once."""
        return analyze_statements(list(self.nodes))


def units(cell: str, tree: ast.Module | None = None) -> list[Unit]:
    """The cell's top-level statements as whole lines, joined where they share a line."""
    tree = ast.parse(cell) if tree is None else tree
    lines = cell.splitlines()
    out: list[Unit] = []
    for stmt in tree.body:
        first = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))])
        last = stmt.end_lineno or stmt.lineno
        if out and first <= out[-1].last_line:
            prev = out[-1]
            last = max(last, prev.last_line)
            out[-1] = Unit(prev.first_line, last, "\n".join(lines[prev.first_line - 1 : last]), (*prev.nodes, stmt))
        else:
            out.append(Unit(first, last, "\n".join(lines[first - 1 : last]), (stmt,)))
    return out


def comment_tags(cell: str) -> dict[int, str]:
    """Line -> the worker tag written in a comment on that line (as written, unchecked)."""
    tags: dict[int, str] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(cell).readline):
            if token.type == tokenize.COMMENT:
                match = TAG.match(token.string)
                if match:
                    tags.setdefault(token.start[0], match.group(1))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return tags


def unit_tag(unit: Unit, tags: dict[int, str], workers: Sequence[int]) -> int | None:
    """The worker a unit's tag names (on its first or last line), checked; None if untagged."""
    tag = tags.get(unit.first_line, tags.get(unit.last_line))
    return None if tag is None else worker_of(tag, unit.first_line, workers)


def split(cell: str, workers: Sequence[int], default: int | None = None) -> list[Group]:
    """The cell's statements grouped by worker, in order. Raises ``SyntaxError`` or ``TagError``.

    Untagged statements before the first tag are setup (see the module docstring),
    unless ``default`` names a worker: then they run there, as any untagged statement.
    """
    if default is not None and default not in workers:
        raise TagError(f"--default {default}: there is no worker {default} (workers are {_span(workers)})")
    tags = comment_tags(cell)
    setup: list[Unit] = []
    placed: list[tuple[int, Unit]] = []
    current = default
    for unit in units(cell):
        tag = unit_tag(unit, tags, workers)
        current = tag if tag is not None else current
        if current is None:
            setup.append(unit)
        else:
            placed.append((current, unit))
    return setup_groups(setup, placed, workers) + merge_units(placed)


def merge_units(placed: Iterable[tuple[int, Unit]]) -> list[Group]:
    """Consecutive units on one worker as one group (blank lines keep the line numbers)."""
    groups: list[Group] = []
    for worker, unit in placed:
        previous = groups[-1] if groups else None
        if previous is not None and previous.worker == worker and not previous.replicas \
                and unit.first_line > previous.last_line:
            gap = "\n" * (unit.first_line - previous.last_line)
            groups[-1] = Group(worker, previous.first_line, unit.last_line, previous.source + gap + unit.source)
        else:
            groups.append(Group(worker, unit.first_line, unit.last_line, unit.source))
    return groups


def setup_workers(setup: Sequence[Unit], placed: Sequence[tuple[int, Unit]], workers: Sequence[int]) -> list[set[int]]:
    """For each setup unit, the workers that must run it.

    A worker runs a setup unit when one of its statements reads a value that unit
    bound (the value, not the name: a setup name rebound by a tagged statement first
    is not needed), or when a setup unit it runs reads such a value. A setup unit that
    nobody needs runs on the first worker, so its effects still happen once.
    """
    writer: dict[str, int] = {}
    setup_reads: list[set[int]] = []
    for index, unit in enumerate(setup):
        names = unit.names
        setup_reads.append({writer[n] for n in names.reads | names.builtin_reads if n in writer})
        for name in names.writes | names.deletes:
            writer[name] = index
    runs_on: list[set[int]] = [set() for _ in setup]
    for worker, unit in placed:
        names = unit.names
        for name in names.reads | names.builtin_reads:
            if name in writer:
                runs_on[writer[name]].add(worker)
        for name in names.writes | names.deletes:
            writer.pop(name, None)
    first = min(workers) if len(workers) else 1
    for index in reversed(range(len(setup))):
        if not runs_on[index]:
            runs_on[index].add(first)
        for needed in setup_reads[index]:
            runs_on[needed] |= runs_on[index]
    return runs_on


def setup_groups(setup: Sequence[Unit], placed: Sequence[tuple[int, Unit]], workers: Sequence[int]) -> list[Group]:
    """Setup units as replicated groups, consecutive units with the same workers merged."""
    groups: list[Group] = []
    for unit, on in zip(setup, setup_workers(setup, placed, workers), strict=True):
        ordered = sorted(on)
        previous = groups[-1] if groups else None
        if previous is not None and list(previous.workers) == ordered:
            gap = "\n" * (unit.first_line - previous.last_line)
            groups[-1] = Group(ordered[0], previous.first_line, unit.last_line, previous.source + gap + unit.source,
                               tuple(ordered[1:]))
        else:
            groups.append(Group(ordered[0], unit.first_line, unit.last_line, unit.source, tuple(ordered[1:])))
    return groups


def worker_of(tag: str, line: int, workers: Sequence[int]) -> int:
    if not tag.isdigit():
        raise TagError(f"line {line}: worker tag {tag!r} is not a worker id")
    worker = int(tag)
    if worker not in workers:
        raise TagError(f"line {line}: there is no worker {worker} (workers are {_span(workers)})")
    return worker


def _span(workers: Sequence[int]) -> str:
    ids = sorted(workers)
    return f"{ids[0]}..{ids[-1]}" if ids else "none"


def plan(groups: list[Group], flow: Dataflow, kernel_names: set[str] | frozenset[str] = frozenset()) -> list[PlanStep]:
    """What each group would receive, and from where, if submitted now (``flow`` is not changed).

    A setup group gives one step per worker that runs it, all submitted as one
    replicated task, so no later step receives what setup bound on its own worker."""
    trial = copy.deepcopy(flow)
    steps = []
    for group in groups:
        names = analyze(group.source)
        writes = names.writes | names.deletes
        kernel_has = kernel_names.__contains__
        if group.replicas:
            records = trial.submit_replicated(group.workers, names.reads, writes, kernel_has=kernel_has)
        else:
            records = [trial.submit(group.worker, names.reads, writes, kernel_has=kernel_has)]
        for record in records:
            moved = [d for d in record.deps if d.source != record.worker]
            steps.append(PlanStep(group, [(d.name, d.source) for d in moved], record.worker, record.id, moved))
    return steps


def render(steps: list[PlanStep], workers: Sequence[int], width: int = 36) -> str:
    """The per-worker programs side by side, with the sends and receives made explicit.

    Setup lines appear in the column of each worker that runs them, on the same rows."""
    columns = sorted(set(workers) | {s.on for s in steps} | {src for s in steps for _, src in s.receives})
    rows: list[dict[int, str]] = []
    for batch in _batches(steps):
        for step in batch:
            for name, source in step.receives:
                row = {step.on: f"{name} = recv(frm={_who(source)})"}
                if source != KERNEL:
                    row[source] = f"send({name}, to={step.on})"
                rows.append(row)
        for line in batch[0].group.source.splitlines():
            rows.append({step.on: line for step in batch})
    headers = [("kernel" if c == KERNEL else f"worker {c}") for c in columns]
    out = [" | ".join(h.ljust(width) for h in headers).rstrip(), "-+-".join("-" * width for _ in columns)]
    for row in rows:
        cells = [_fit(row.get(c, ""), width) for c in columns]
        out.append(" | ".join(cells).rstrip())
    return "\n".join(out)


def _batches(steps: list[PlanStep]) -> list[list[PlanStep]]:
    """Steps grouped by the group they run: a setup group's copies form one batch."""
    batches: list[list[PlanStep]] = []
    for step in steps:
        if batches and batches[-1][0].group is step.group:
            batches[-1].append(step)
        else:
            batches.append([step])
    return batches


def _who(source: int) -> str:
    return "kernel" if source == KERNEL else str(source)


def _fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"
