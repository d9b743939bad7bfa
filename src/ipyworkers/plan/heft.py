"""Costs and placement: HEFT list scheduling (Topcuoglu et al., 2002) and the predicted
timeline of a placement. Pure (see ``schedule`` for what it is for).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .graph import ORDER, RAW, WAR, Edge, StatementGraph, statement_key

DEFAULT_LATENCY = 0.001
"""Seconds one transfer costs when its size is unknown (a small message between local workers)."""
DEFAULT_BANDWIDTH = 1e9
"""Bytes per second between two workers, for transfers whose size is known."""


@dataclass(frozen=True)
class Slot:
    """Predicted run of one statement on one worker, in seconds (or units) from the start."""

    statement: int
    worker: int
    start: float
    finish: float
    setup: bool = False


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


def heft(graph: StatementGraph, model: CostModel, workers: Sequence[int],
         place_on: Sequence[int] | None = None) -> tuple[list[int], dict[int, int]]:
    """Placement by HEFT: in rank order, each statement to the worker where it ends first
    (ties: the lower worker id), within its pin and its co-location set (which goes
    where its first pinned member is pinned, else where its first placed member went).
    Unpinned statements go to ``place_on`` (default: all ``workers``); pins may name any."""
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
            candidates = sorted(workers if place_on is None else place_on)
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
