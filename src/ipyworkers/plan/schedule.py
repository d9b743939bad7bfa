"""Automatic placement of a cell's statements on workers (``%%parallel --auto``). Pure.

``auto_plan`` reads the cell, builds the *statement graph* (which top-level statement
must come after which, and which values cross between them), and places the
statements with a HEFT list scheduler (Topcuoglu et al., 2002): statements are taken
by decreasing *upward rank* (own cost + the most expensive path to the end, counting
a transfer on every edge), and each goes to the worker where it would finish first,
counting the transfer of every input that lives on another worker. So independent
work spreads out, and a chain of dependent statements stays on one worker as soon as
a transfer costs anything.

What keeps the result equal to running the cell top to bottom:

* the groups are emitted in an order that respects every edge: read after write
  (RAW), write after read (WAR) and write after write (WAW), so the dataflow rules
  give each read the same value as a sequential run;
* statements with outside effects (a bare call such as ``f(x)``, anything that
  calls ``print``, ``open`` or ``display``, or a ``.write(...)``) are chained in
  source order and all run on one worker, whose queue keeps that order (the
  dataflow orders tasks on different workers only through the values they share);
* a statement that may change an object in place (``xs.append(1)``, ``d[k] = v``,
  ``obj.attr = v``) is not seen as a write by the dataflow, so every statement that
  touches that name runs on one worker: a copy on another worker would not see the
  change.

Leading untagged imports, ``def``/``class`` statements and assignments of literals
are *setup*: each worker that needs them runs them itself (see ``parallel``).
Tags (``# @2``) pin their statements. Costs are seconds measured on earlier runs,
keyed by statement text (``statement_key``); without any, every statement costs one
unit. A transfer costs a small latency plus its bytes over ``bandwidth``.
"""

from __future__ import annotations

import ast
import heapq
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import TagError
from .dataflow import Dataflow
from .parallel import (
    Group,
    Unit,
    comment_tags,
    merge_units,
    plan,
    render,
    setup_groups,
    setup_workers,
    unit_tag,
    worker_of,
)
from .parallel import units as cell_units

DEFAULT_LATENCY = 0.001
"""Seconds one transfer costs when its size is unknown (a small message between local workers)."""
DEFAULT_BANDWIDTH = 1e9
"""Bytes per second between two workers, for transfers whose size is known."""
EFFECT_CALLS = frozenset({"print", "open", "display"})
WRITE_METHODS = frozenset({"write", "writelines"})

RAW, WAR, WAW, ORDER = "raw", "war", "waw", "order"


@dataclass(frozen=True)
class Statement:
    """One top-level statement (statements sharing a line count as one)."""

    index: int
    unit: Unit
    reads: frozenset[str]
    writes: frozenset[str]
    mutates: frozenset[str] = frozenset()
    effect: bool = False
    pinned: int | None = None
    setup: bool = False

    @property
    def first_line(self) -> int:
        return self.unit.first_line

    @property
    def last_line(self) -> int:
        return self.unit.last_line

    @property
    def source(self) -> str:
        return self.unit.source


@dataclass(frozen=True)
class Edge:
    """``dst`` must come after ``src``. Only ``raw`` edges carry values (``names``)."""

    src: int
    dst: int
    kind: str
    names: frozenset[str] = frozenset()


@dataclass
class StatementGraph:
    """Statements and the edges between them; setup statements have no edges."""

    statements: list[Statement]
    edges: list[Edge]
    colocated: list[set[int]] = field(default_factory=list)
    """Sets of statements that must share a worker (effects; in-place changes of a name)."""

    def preds(self, index: int) -> list[Edge]:
        return [e for e in self.edges if e.dst == index]

    def succs(self, index: int) -> list[Edge]:
        return [e for e in self.edges if e.src == index]

    @property
    def tasks(self) -> list[Statement]:
        """The statements the scheduler places (all but setup)."""
        return [s for s in self.statements if not s.setup]

    def describe(self) -> str:
        """The graph as text: one line per statement, then one per edge."""
        out = []
        for s in self.statements:
            marks = [m for m, on in (("setup", s.setup), ("effect", s.effect)) if on]
            marks += [f"pinned @{s.pinned}"] if s.pinned is not None else []
            marks += [f"changes {', '.join(sorted(s.mutates))}"] if s.mutates else []
            text = s.source.splitlines()[0]
            out.append(f"s{s.index}  line {s.first_line}: {text}" + (f"   [{'; '.join(marks)}]" if marks else ""))
        for e in self.edges:
            names = f" {', '.join(sorted(e.names))}" if e.names else ""
            out.append(f"s{e.src} -> s{e.dst}  {e.kind}{names}")
        return "\n".join(out)

    def to_dot(self) -> str:
        """The graph in Graphviz ``dot`` syntax, for drawing."""
        lines = ["digraph statements {", "  node [shape=box, fontname=monospace];"]
        for s in self.statements:
            label = s.source.splitlines()[0].replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'  s{s.index} [label="{s.first_line}: {label}"{", style=dashed" if s.setup else ""}];')
        for e in self.edges:
            label = ", ".join(sorted(e.names)) if e.names else e.kind
            lines.append(f'  s{e.src} -> s{e.dst} [label="{label}"{"" if e.kind == RAW else ", style=dotted"}];')
        return "\n".join([*lines, "}"])


@dataclass(frozen=True)
class Slot:
    """Predicted run of one statement on one worker, in seconds (or units) from the start."""

    statement: int
    worker: int
    start: float
    finish: float
    setup: bool = False


@dataclass
class AutoPlan:
    """The placement ``auto_plan`` chose and what it predicts."""

    groups: list[Group]
    """Tasks in submission order, as ``parallel.split`` gives them (setup groups first)."""
    placement: dict[int, int]
    """Statement index -> worker, for placed statements."""
    setup_on: dict[int, tuple[int, ...]]
    """Setup statement index -> the workers that run it."""
    slots: list[Slot]
    makespan: float
    serial: float
    graph: StatementGraph
    workers: tuple[int, ...]
    order: list[int]
    """Placed statements in submission order."""
    unit: str = "s"

    @property
    def speedup(self) -> float:
        return self.serial / self.makespan if self.makespan > 0 else 1.0

    @property
    def by_line(self) -> dict[int, int]:
        """First line of each placed statement -> its worker."""
        return {self.graph.statements[i].first_line: w for i, w in self.placement.items()}

    def summary(self) -> str:
        u = self.unit
        return (f"predicted makespan {self.makespan:.2f} {u} on {len(self.workers)} workers "
                f"(serial {self.serial:.2f} {u}, speed-up {self.speedup:.2f}\N{MULTIPLICATION SIGN})")


# -- reading the cell ------------------------------------------------------------------------


def statement_key(source: str) -> str:
    """The key under which a statement's measured cost is looked up: its code with
    comments and layout normalised, so moving a tag or a space keeps the measurement."""
    try:
        return ast.unparse(ast.parse(textwrap.dedent(source)))
    except SyntaxError:
        return source.strip()


def build_graph(cell: str, workers: Sequence[int], pinned: Mapping[int, int] | None = None) -> StatementGraph:
    """The statement graph of ``cell``. Raises ``SyntaxError`` (naming the line) or ``TagError``."""
    tree = _parse(cell)
    tags = comment_tags(cell)
    all_units = cell_units(cell, tree)
    modules = _imported_names(tree)
    mutated = {n for u in all_units for n in _mutated_names(u.nodes)} - modules
    bound = {n for u in all_units for n in u.names.writes}
    statements: list[Statement] = []
    leading = True
    for index, unit in enumerate(all_units):
        pin = _pin(unit, tags, workers, pinned or {})
        names = unit.names
        setup = leading and pin is None and _replicable(unit, mutated)
        leading = setup
        statements.append(Statement(
            index, unit,
            reads=frozenset(names.reads | (names.builtin_reads & bound)),
            writes=frozenset(names.writes | names.deletes),
            mutates=frozenset(set(_mutated_names(unit.nodes)) - modules),
            effect=_is_effect(unit.nodes), pinned=pin, setup=setup,
        ))
    return StatementGraph(statements, _edges(statements), _colocated(statements))


def _parse(cell: str) -> ast.Module:
    try:
        return ast.parse(cell)
    except SyntaxError as exc:
        line = exc.lineno or 1
        raise SyntaxError(f"line {line}: {exc.msg}", ("<cell>", line, exc.offset, exc.text)) from None


def _pin(unit: Unit, tags: dict[int, str], workers: Sequence[int], pinned: Mapping[int, int]) -> int | None:
    """A statement's worker from ``pinned`` (by first line), else from its tag; checked."""
    if unit.first_line in pinned:
        return worker_of(str(pinned[unit.first_line]), unit.first_line, workers)
    return unit_tag(unit, tags, workers)


def _replicable(unit: Unit, mutated: set[str]) -> bool:
    """Cheap to run on every worker and the same everywhere: imports, defs, classes,
    literal constants; not if some statement changes the bound object in place."""
    kinds = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    for node in unit.nodes:
        literal = isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets) \
            and _is_literal(node.value)
        if not (isinstance(node, kinds) or literal):
            return False
    return not (unit.names.writes & mutated)


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """``ast.walk`` that does not enter function, lambda or class bodies: what runs now."""
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        yield from _walk(child)


def _is_effect(nodes: Sequence[ast.stmt]) -> bool:
    """Does the statement act outside the namespace (output, files), as far as we can tell?"""
    for stmt in nodes:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, (ast.Call, ast.Await)):
            return True
        for sub in _walk(stmt):
            if isinstance(sub, ast.Call):
                func = sub.func
                if isinstance(func, ast.Name) and func.id in EFFECT_CALLS:
                    return True
                if isinstance(func, ast.Attribute) and func.attr in WRITE_METHODS:
                    return True
    return False


def _mutated_names(nodes: Sequence[ast.stmt]) -> Iterator[str]:
    """Names whose object the statement may change in place: ``x[i] = v``, ``x.a = v``,
    ``del x[i]``, and bare method calls ``x.append(v)``."""
    for stmt in nodes:
        for sub in _walk(stmt):
            targets: list[ast.expr] = []
            if isinstance(sub, ast.Assign):
                targets = sub.targets
            elif isinstance(sub, (ast.AugAssign, ast.AnnAssign)):
                targets = [sub.target]
            elif isinstance(sub, ast.Delete):
                targets = sub.targets
            elif isinstance(sub, ast.Expr) and isinstance(sub.value, ast.Call) \
                    and isinstance(sub.value.func, ast.Attribute):
                targets = [sub.value.func.value]
                root = _root(targets[0])
                if root is not None:
                    yield root
                continue
            for target in targets:
                for part in ast.walk(target):
                    if isinstance(part, (ast.Attribute, ast.Subscript)) and isinstance(part.ctx, (ast.Store, ast.Del)):
                        root = _root(part)
                        if root is not None:
                            yield root


def _root(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _imported_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {a.asname or a.name.split(".")[0] for a in node.names if a.name != "*"}
    return names


def _edges(statements: Sequence[Statement]) -> list[Edge]:
    """RAW, WAR and WAW edges between placed statements, and the chain of effects.

    An in-place change counts as a read and a write of the name, so what comes after
    it sees it. Setup statements bind values every worker has: no edges from them."""
    found: dict[tuple[int, int, str], set[str]] = {}
    writer: dict[str, int] = {}
    readers: dict[str, set[int]] = {}
    last_effect: int | None = None
    for s in (s for s in statements if not s.setup):
        reads, writes = s.reads | s.mutates, s.writes | s.mutates
        for name in reads:
            if name in writer:
                found.setdefault((writer[name], s.index, RAW), set()).add(name)
        for name in writes:
            for reader in readers.get(name, set()) - {s.index}:
                found.setdefault((reader, s.index, WAR), set()).add(name)
            if name in writer and name not in reads:
                found.setdefault((writer[name], s.index, WAW), set()).add(name)
        for name in reads:
            readers.setdefault(name, set()).add(s.index)
        for name in writes:
            writer[name] = s.index
            readers[name] = set()
        if s.effect:
            if last_effect is not None:
                found.setdefault((last_effect, s.index, ORDER), set())
            last_effect = s.index
    return [Edge(src, dst, kind, frozenset(names) if kind == RAW else frozenset())
            for (src, dst, kind), names in sorted(found.items())]


def _colocated(statements: Sequence[Statement]) -> list[set[int]]:
    """Statements that must share a worker: all effects; all users of a name changed in place."""
    parent = {s.index: s.index for s in statements if not s.setup}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(members: list[int]) -> None:
        for other in members[1:]:
            parent[find(other)] = find(members[0])

    placed = [s for s in statements if not s.setup]
    join([s.index for s in placed if s.effect])
    for name in {n for s in placed for n in s.mutates}:
        join([s.index for s in placed if name in s.reads | s.writes | s.mutates])
    sets: dict[int, set[int]] = {}
    for i in parent:
        sets.setdefault(find(i), set()).add(i)
    return [members for members in sets.values() if len(members) > 1]


# -- costs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostModel:
    """Seconds (or units) per statement and per transfer of a name."""

    costs: dict[int, float]
    transfer_bytes: Mapping[str, float]
    bandwidth: float = DEFAULT_BANDWIDTH
    latency: float = DEFAULT_LATENCY

    def transfer(self, name: str) -> float:
        size = self.transfer_bytes.get(name)
        return self.latency if size is None else self.latency + size / self.bandwidth

    def edge(self, edge: Edge) -> float:
        """What an edge costs when its ends are on different workers: its slowest name
        (the names of one edge are fetched side by side)."""
        return max((self.transfer(n) for n in edge.names), default=0.0) if edge.kind == RAW else 0.0


def cost_model(graph: StatementGraph, costs: Mapping[str, float] | None, transfer_costs: Mapping[str, float] | None,
               bandwidth: float, latency: float, default_cost: float | None) -> tuple[CostModel, bool]:
    """Per-statement costs from measurements; also whether any statement was measured.

    Unmeasured statements cost ``default_cost``: by default the mean of the measured
    ones, or 1 unit when none is; unmeasured setup costs 0 (imports and defs are quick)."""
    measured = _measured(graph, costs or {})
    default = default_cost if default_cost is not None else (
        sum(measured.values()) / len(measured) if measured else 1.0)
    per = {s.index: measured.get(s.index, 0.0 if s.setup else default) for s in graph.statements}
    return CostModel(per, dict(transfer_costs or {}), bandwidth, latency), bool(measured)


def _measured(graph: StatementGraph, costs: Mapping[str, float]) -> dict[int, float]:
    normalised = {statement_key(k): v for k, v in costs.items()}
    found = {}
    for s in graph.statements:
        for key in (s.source, s.source.strip()):
            if key in costs:
                found[s.index] = float(costs[key])
                break
        else:
            key = statement_key(s.source)
            if key in normalised:
                found[s.index] = float(normalised[key])
    return found


# -- HEFT -------------------------------------------------------------------------------------


def upward_ranks(graph: StatementGraph, model: CostModel) -> dict[int, float]:
    """Cost of each statement plus the costliest path from it to the end, transfers included."""
    rank: dict[int, float] = {}
    for s in reversed(graph.tasks):
        tail = max((model.edge(e) + rank[e.dst] for e in graph.succs(s.index)), default=0.0)
        rank[s.index] = model.costs[s.index] + tail
    return rank


def priority_order(graph: StatementGraph, rank: Mapping[int, float]) -> list[int]:
    """Statements by decreasing rank, ties by source order; never before a predecessor
    (a topological order, so submitting in it keeps the cell's meaning)."""
    waiting = {s.index: len({e.src for e in graph.preds(s.index)}) for s in graph.tasks}
    heap = [(-rank[i], i) for i, n in waiting.items() if n == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        _, i = heapq.heappop(heap)
        order.append(i)
        for succ in {e.dst for e in graph.succs(i)}:
            waiting[succ] -= 1
            if waiting[succ] == 0:
                heapq.heappush(heap, (-rank[succ], succ))
    return order


@dataclass
class _Clock:
    """Predicted times as statements are put on workers, one after the other."""

    graph: StatementGraph
    model: CostModel
    avail: dict[int, float]
    placement: dict[int, int] = field(default_factory=dict)
    start: dict[int, float] = field(default_factory=dict)
    finish: dict[int, float] = field(default_factory=dict)
    arrival: dict[tuple[int, str, int], float] = field(default_factory=dict)

    def ready(self, index: int, worker: int) -> float:
        """When ``index`` could start on ``worker`` as far as its predecessors go."""
        at = 0.0
        for edge in self.graph.preds(index):
            there = self.placement[edge.src]
            if edge.kind == RAW:
                at = max([at, *(self._arrives(edge.src, n, worker) for n in edge.names)])
            elif edge.kind == WAR and there != worker and self._fetches_from(edge.src, edge.names, worker):
                at = max(at, self.start[edge.src])  # do not overwrite what it still has to fetch
            elif edge.kind == ORDER and there != worker:
                at = max(at, self.finish[edge.src])
        return at

    def _arrives(self, producer: int, name: str, worker: int) -> float:
        if self.placement[producer] == worker:
            return self.finish[producer]
        return self.arrival.get((producer, name, worker), self.finish[producer] + self.model.transfer(name))

    def _fetches_from(self, reader: int, names: frozenset[str], worker: int) -> bool:
        return any(e.kind == RAW and e.names & names and self.placement[e.src] == worker
                   for e in self.graph.preds(reader))

    def finish_if(self, index: int, worker: int) -> float:
        return max(self.avail[worker], self.ready(index, worker)) + self.model.costs[index]

    def put(self, index: int, worker: int) -> Slot:
        start = max(self.avail[worker], self.ready(index, worker))
        self.placement[index] = worker
        self.start[index], self.finish[index] = start, start + self.model.costs[index]
        self.avail[worker] = self.finish[index]
        for edge in self.graph.preds(index):
            if edge.kind == RAW:
                for name in edge.names:
                    self.arrival.setdefault((edge.src, name, worker), self._arrives(edge.src, name, worker))
        return Slot(index, worker, start, self.finish[index])


def heft(graph: StatementGraph, model: CostModel, workers: Sequence[int]) -> tuple[list[int], dict[int, int]]:
    """Placement by HEFT: in rank order, each statement to the worker where it ends first
    (ties: the lower worker id), within its pin and its co-location set (which goes
    where its first pinned member is pinned, else where its first placed member went)."""
    order = priority_order(graph, upward_ranks(graph, model))
    clock = _Clock(graph, model, {w: 0.0 for w in workers})
    together = {i: k for k, members in enumerate(graph.colocated) for i in members}
    chosen: dict[int, int] = {}
    for team, members in enumerate(graph.colocated):
        pins = [graph.statements[i].pinned for i in sorted(members) if graph.statements[i].pinned is not None]
        if pins:
            chosen[team] = pins[0]  # a pinned member takes the others along
    for index in order:
        statement = graph.statements[index]
        team = together.get(index)
        if statement.pinned is not None:
            candidates = [statement.pinned]
        elif team in chosen:
            candidates = [chosen[team]]
        else:
            candidates = sorted(workers)
        best = min(candidates, key=lambda w: (clock.finish_if(index, w), w))
        clock.put(index, best)
        if team is not None:
            chosen.setdefault(team, best)
    return order, clock.placement


def predict(graph: StatementGraph, model: CostModel, order: Sequence[int], placement: Mapping[int, int],
            setup_on: Mapping[int, Sequence[int]], workers: Sequence[int]) -> list[Slot]:
    """The timeline the placement gives: each worker first runs its setup statements,
    then its statements in submission order, each when its inputs have arrived."""
    slots: list[Slot] = []
    avail = {w: 0.0 for w in workers}
    for index, on in sorted(setup_on.items()):
        for w in on:
            cost = model.costs[index]
            slots.append(Slot(index, w, avail[w], avail[w] + cost, setup=True))
            avail[w] += cost
    clock = _Clock(graph, model, avail)
    slots += [clock.put(index, placement[index]) for index in order]
    return slots


# -- the plan ---------------------------------------------------------------------------------


def auto_plan(
    cell: str,
    workers: Sequence[int],
    costs: Mapping[str, float] | None = None,
    transfer_costs: Mapping[str, float] | None = None,
    pinned: Mapping[int, int] | None = None,
    *,
    bandwidth: float = DEFAULT_BANDWIDTH,
    latency: float = DEFAULT_LATENCY,
    default_cost: float | None = None,
) -> AutoPlan:
    """Place the statements of ``cell`` (Python; IPython syntax already transformed) on ``workers``.

    ``costs``: measured seconds per statement, keyed by its code (see ``statement_key``).
    ``transfer_costs``: bytes per name from earlier transfers. ``pinned``: first line ->
    worker, on top of the cell's own tags. Raises ``SyntaxError`` naming the line, and
    ``TagError`` for a tag or pin that names no worker.
    """
    if not workers:
        raise TagError("no workers to place the statements on")
    graph = build_graph(cell, workers, pinned)
    model, measured = cost_model(graph, costs, transfer_costs, bandwidth, latency, default_cost)
    order, placement = heft(graph, model, workers)
    setup = [s for s in graph.statements if s.setup]
    placed = [(placement[i], graph.statements[i].unit) for i in order]
    on = setup_workers([s.unit for s in setup], placed, workers)
    setup_on = {s.index: tuple(sorted(w)) for s, w in zip(setup, on, strict=True)}
    slots = predict(graph, model, order, placement, setup_on, workers)
    groups = setup_groups([s.unit for s in setup], placed, workers) + _groups(graph, order, placement)
    return AutoPlan(
        groups=groups, placement=dict(placement), setup_on=setup_on, slots=slots,
        makespan=max((s.finish for s in slots), default=0.0), serial=sum(model.costs.values()),
        graph=graph, workers=tuple(sorted(workers)), order=order, unit="s" if measured else "units",
    )


def _groups(graph: StatementGraph, order: Sequence[int], placement: Mapping[int, int]) -> list[Group]:
    """Statements in submission order, consecutive ones on one worker joined into one task
    unless that would delay a transfer: a statement whose value another worker needs
    ends its task, and one that needs a value from another worker starts a new one."""
    chunks: list[list[tuple[int, Unit]]] = []
    for index in order:
        worker, statement = placement[index], graph.statements[index]
        last = chunks[-1][-1] if chunks else None
        joins = (
            last is not None and last[0] == worker and statement.first_line > last[1].last_line
            and not _crosses(graph, placement, index, into=True)
            and not _crosses(graph, placement, chunks[-1][-1][2], into=False)
        )
        entry = (worker, statement.unit, index)
        if joins:
            chunks[-1].append(entry)
        else:
            chunks.append([entry])
    return [g for chunk in chunks for g in merge_units([(w, u) for w, u, _ in chunk])]


def _crosses(graph: StatementGraph, placement: Mapping[int, int], index: int, into: bool) -> bool:
    """Does a value reach ``index`` from (``into``), or leave it for, another worker?"""
    edges = graph.preds(index) if into else graph.succs(index)
    other = (lambda e: e.src) if into else (lambda e: e.dst)
    return any(e.kind == RAW and placement[other(e)] != placement[index] for e in edges)


def render_plan(auto: AutoPlan, flow: Dataflow | None = None, kernel_names: frozenset[str] | set[str] = frozenset(),
                width: int = 36) -> str:
    """The per-worker programs with their sends and receives, and the predicted makespan."""
    steps = plan(auto.groups, flow if flow is not None else Dataflow(), kernel_names)
    return render(steps, list(auto.workers), width) + "\n\n" + auto.summary()


def timeline(auto: AutoPlan) -> list[dict[str, object]]:
    """The predicted slots as plain records (line, worker, start, finish, setup), for a
    plan-versus-actual overlay on the timeline."""
    return [
        {"line": auto.graph.statements[s.statement].first_line, "worker": s.worker,
         "start": s.start, "finish": s.finish, "setup": s.setup}
        for s in auto.slots
    ]

