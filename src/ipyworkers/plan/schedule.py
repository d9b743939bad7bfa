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

The parts: ``graph`` builds the statement graph, ``heft`` places it and predicts the
timeline, and this module turns a placement into tasks and text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ..errors import TagError
from .dataflow import Dataflow
from .graph import (
    ORDER,
    RAW,
    WAR,
    WAW,
    Edge,
    Statement,
    StatementGraph,
    build_graph,
    colocated_sets,
    edges_of,
    parse_cell,
    statement_key,
)
from .heft import (
    DEFAULT_BANDWIDTH,
    DEFAULT_LATENCY,
    CostModel,
    Slot,
    cost_model,
    heft,
    predict,
    priority_order,
    upward_ranks,
)
from .parallel import Group, Unit, merge_units, plan, render, setup_groups, setup_workers

__all__ = [
    "ORDER", "RAW", "WAR", "WAW", "DEFAULT_BANDWIDTH", "DEFAULT_LATENCY", "AutoPlan", "CostModel", "Edge", "Slot",
    "Statement", "StatementGraph", "auto_plan", "build_graph", "cost_model", "heft", "predict", "priority_order",
    "parse_cell", "render_plan", "statement_key", "tagged_plan", "timeline", "upward_ranks",
]


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

    def statement_groups(self) -> list[Group]:
        """The same placement with one task per placed statement (setup groups as they
        are), so each statement's time can be measured and drawn against its slot. The
        dataflow gives them the same transfers as ``groups``."""
        setup_lines = {self.graph.statements[i].first_line for i in self.setup_on}
        setup = [g for g in self.groups if g.first_line in setup_lines]
        placed = [self.graph.statements[i] for i in self.order]
        return setup + [Group(self.placement[s.index], s.first_line, s.last_line, s.source) for s in placed]

    def statements_of(self, group: Group) -> list[Statement]:
        """The statements a group of this plan runs."""
        return [s for s in self.graph.statements if group.first_line <= s.first_line <= group.last_line]

    def summary(self) -> str:
        u = self.unit
        return (f"predicted makespan {self.makespan:.2f} {u} on {len(self.workers)} workers "
                f"(serial {self.serial:.2f} {u}, speed-up {self.speedup:.2f}\N{MULTIPLICATION SIGN})")


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
    place_on: Sequence[int] | None = None,
) -> AutoPlan:
    """Place the statements of ``cell`` (Python; IPython syntax already transformed) on ``workers``.

    ``costs``: measured seconds per statement, keyed by its code (see ``statement_key``).
    ``transfer_costs``: bytes per name from earlier transfers. ``pinned``: first line ->
    worker, on top of the cell's own tags. ``place_on``: the workers for statements
    without a pin (default: all of ``workers``, which tags and pins may name). Raises
    ``SyntaxError`` naming the line, and ``TagError`` for a tag or pin that names no worker.
    """
    candidates = list(workers if place_on is None else place_on)
    if not candidates:
        raise TagError("no workers to place the statements on")
    outside = sorted(set(candidates) - set(workers))
    if outside:
        raise TagError(f"there is no worker {outside[0]} to place statements on")
    graph = build_graph(cell, workers, pinned)
    model, measured = cost_model(graph, costs, transfer_costs, bandwidth, latency, default_cost)
    order, placement = heft(graph, model, workers, candidates)
    setup = [s for s in graph.statements if s.setup]
    placed = [(placement[i], graph.statements[i].unit) for i in order]
    on = setup_workers([s.unit for s in setup], placed, candidates)
    setup_on = {s.index: tuple(sorted(w)) for s, w in zip(setup, on, strict=True)}
    slots = predict(graph, model, order, placement, setup_on, workers)
    groups = setup_groups([s.unit for s in setup], placed, candidates) + _groups(graph, order, placement)
    return AutoPlan(
        groups=groups, placement=dict(placement), setup_on=setup_on, slots=slots,
        makespan=max((s.finish for s in slots), default=0.0), serial=sum(model.costs.values()),
        graph=graph, workers=tuple(sorted(set(candidates) | set(placement.values()))), order=order,
        unit="s" if measured else "units",
    )


def tagged_plan(
    cell: str,
    groups: Sequence[Group],
    workers: Sequence[int],
    costs: Mapping[str, float] | None = None,
    transfer_costs: Mapping[str, float] | None = None,
    *,
    bandwidth: float = DEFAULT_BANDWIDTH,
    latency: float = DEFAULT_LATENCY,
) -> AutoPlan:
    """The prediction for a tagged cell split by ``parallel.split``: each statement where
    its group runs, setup on every worker of a replicated group, in source order. Same
    costs and timeline model as ``auto_plan``, so a tagged run can be drawn against its
    plan too."""
    graph = build_graph(cell, workers)
    where = {s.index: g for g in groups for s in graph.statements if g.first_line <= s.first_line <= g.last_line}
    statements = [replace(s, setup=s.setup or where[s.index].replicated, pinned=where[s.index].worker)
                  for s in graph.statements]
    graph = StatementGraph(statements, edges_of(statements), colocated_sets(statements))
    model, measured = cost_model(graph, costs, transfer_costs, bandwidth, latency, None)
    order = [s.index for s in graph.tasks]
    placement = {i: statements[i].pinned for i in order}
    setup_on = {s.index: where[s.index].workers for s in statements if s.setup}
    slots = predict(graph, model, order, placement, setup_on, workers)
    return AutoPlan(
        groups=list(groups), placement=placement, setup_on=setup_on, slots=slots,
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
    """The predicted slots as plain records (line, worker, start, finish, setup, and the
    statement's first line of code), for a plan-versus-actual overlay on the timeline."""
    return [
        {"line": auto.graph.statements[s.statement].first_line, "worker": s.worker,
         "start": s.start, "finish": s.finish, "setup": s.setup,
         "code": auto.graph.statements[s.statement].source.strip().splitlines()[0][:80]}
        for s in auto.slots
    ]

