"""Cells whose statements carry worker tags (``# @2`` or ``# worker 2``). Pure.

Each top-level statement runs on the worker its tag names; an untagged statement
stays on the previous statement's worker. Consecutive statements on one worker
form one task. The transfers between them are not written here: they come out of
the same dataflow rules as for any other task, so ``plan`` can show exactly the
sends and receives a run would make.
"""

from __future__ import annotations

import ast
import copy
import io
import re
import tokenize
from dataclasses import dataclass, field

from ..errors import TagError
from .analysis import analyze
from .dataflow import KERNEL, Dataflow

TAG = re.compile(r"^#\s*(?:@\s*|worker\s+)(\S+)")




@dataclass
class Group:
    worker: int
    first_line: int
    last_line: int
    source: str

    @property
    def code(self) -> str:
        """The group's source, padded so tracebacks give the cell's own line numbers."""
        return "\n" * (self.first_line - 1) + self.source


@dataclass
class PlanStep:
    group: Group
    receives: list[tuple[str, int]] = field(default_factory=list)


def _comment_tags(cell: str) -> dict[int, str]:
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


def split(cell: str, workers: range | list[int], default: int | None = None) -> list[Group]:
    """The cell's statements grouped by worker, in order. Raises ``SyntaxError`` or ``TagError``."""
    tree = ast.parse(cell)
    tags = _comment_tags(cell)
    lines = cell.splitlines()
    groups: list[Group] = []
    current = default
    for stmt in tree.body:
        first = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))])
        last = stmt.end_lineno or stmt.lineno
        tag = tags.get(first, tags.get(last))
        if tag is not None:
            current = _worker_of(tag, first, workers)
        if current is None:
            raise TagError(f"line {first}: the first statement has no worker tag (add '# @ID' or use --default ID)")
        source = "\n".join(lines[first - 1 : last])
        if groups and groups[-1].worker == current:
            previous = groups[-1]
            gap = "\n" * (first - previous.last_line)
            groups[-1] = Group(current, previous.first_line, last, previous.source + gap + source)
        else:
            groups.append(Group(current, first, last, source))
    return groups


def _worker_of(tag: str, line: int, workers: range | list[int]) -> int:
    if not tag.isdigit():
        raise TagError(f"line {line}: worker tag {tag!r} is not a worker id")
    worker = int(tag)
    if worker not in workers:
        raise TagError(f"line {line}: there is no worker {worker} (workers are {_span(workers)})")
    return worker


def _span(workers: range | list[int]) -> str:
    ids = sorted(workers)
    return f"{ids[0]}..{ids[-1]}" if ids else "none"


def plan(groups: list[Group], flow: Dataflow, kernel_names: set[str] | frozenset[str] = frozenset()) -> list[PlanStep]:
    """What each group would receive, and from where, if submitted now (``flow`` is not changed)."""
    trial = copy.deepcopy(flow)
    steps = []
    for group in groups:
        names = analyze(group.source)
        record = trial.submit(group.worker, names.reads, names.writes | names.deletes,
                              kernel_has=kernel_names.__contains__)
        receives = [(d.name, d.source) for d in record.deps if d.source != group.worker]
        steps.append(PlanStep(group, receives))
    return steps


def render(steps: list[PlanStep], workers: list[int], width: int = 36) -> str:
    """The per-worker programs side by side, with the sends and receives made explicit."""
    columns = sorted(set(workers) | {s.group.worker for s in steps} | {src for s in steps for _, src in s.receives})
    rows: list[dict[int, str]] = []
    for step in steps:
        for name, source in step.receives:
            row = {step.group.worker: f"{name} = recv(frm={_who(source)})"}
            if source != KERNEL:
                row[source] = f"send({name}, to={step.group.worker})"
            rows.append(row)
        for line in step.group.source.splitlines():
            rows.append({step.group.worker: line})
    headers = [("kernel" if c == KERNEL else f"worker {c}") for c in columns]
    out = [" | ".join(h.ljust(width) for h in headers).rstrip(), "-+-".join("-" * width for _ in columns)]
    for row in rows:
        cells = [_fit(row.get(c, ""), width) for c in columns]
        out.append(" | ".join(cells).rstrip())
    return "\n".join(out)


def _who(source: int) -> str:
    return "kernel" if source == KERNEL else str(source)


def _fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"
