"""The statement graph of a cell: which top-level statement must come after which, and
which values cross between them. Pure (see ``schedule`` for what it is for).

Edges are read after write (RAW, carrying the names), write after read (WAR), write
after write (WAW), and the chain of statements with outside effects (ORDER).
Statements that act outside the namespace, or change an object in place, are marked
(``effect``, ``mutates``) and grouped in ``colocated`` sets that must share a worker.
Leading imports, defs and literal constants are *setup* (replicated, no edges).
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from .parallel import Unit, comment_tags, unit_tag, worker_of
from .parallel import units as cell_units

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
    tree = parse_cell(cell)
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
    return StatementGraph(statements, edges_of(statements), colocated_sets(statements))


def parse_cell(cell: str) -> ast.Module:
    """The cell's syntax tree; a ``SyntaxError`` says "line N: ..." as a usage error should."""
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


def edges_of(statements: Sequence[Statement]) -> list[Edge]:
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


def colocated_sets(statements: Sequence[Statement]) -> list[set[int]]:
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
