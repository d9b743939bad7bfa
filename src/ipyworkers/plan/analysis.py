"""Which names a piece of code reads and writes at the top level of a namespace.

Pure: no processes, no I/O. A name is *read* when it is loaded before any store
that surely happened in the same code; stores inside compound statements (``if``,
``for``, ``try`` ...) may not happen, so they do not hide a later load. Functions,
lambdas and classes the code defines read the globals their bodies use: those are
counted as reads of the defining code, because the value they will see lives in
this namespace. Names that are builtins are reported apart, since they are reads
only where some code has rebound them.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass, field

BUILTIN_NAMES = frozenset(dir(builtins))


@dataclass(frozen=True)
class CodeNames:
    reads: frozenset[str] = frozenset()
    writes: frozenset[str] = frozenset()
    builtin_reads: frozenset[str] = frozenset()
    deletes: frozenset[str] = frozenset()


def analyze(code: str) -> CodeNames:
    """Names ``code`` reads and writes; code that does not parse reads and writes nothing."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return CodeNames()
    return analyze_statements(tree.body)


def analyze_statements(body: list[ast.stmt]) -> CodeNames:
    scope = _ModuleScope()
    for stmt in body:
        scope.statement(stmt)
    reads = scope.reads - BUILTIN_NAMES
    return CodeNames(
        reads=frozenset(reads),
        writes=frozenset(scope.writes),
        builtin_reads=frozenset(scope.reads & BUILTIN_NAMES),
        deletes=frozenset(scope.deletes - scope.writes_after_delete),
    )


_COMPOUND = (
    ast.If, ast.For, ast.AsyncFor, ast.While, ast.Try, ast.With, ast.AsyncWith, ast.Match,
)
if hasattr(ast, "TryStar"):
    _COMPOUND = (*_COMPOUND, ast.TryStar)


@dataclass
class _ModuleScope:
    reads: set[str] = field(default_factory=set)
    writes: set[str] = field(default_factory=set)
    deletes: set[str] = field(default_factory=set)
    writes_after_delete: set[str] = field(default_factory=set)
    sure: set[str] = field(default_factory=set)

    def statement(self, stmt: ast.stmt) -> None:
        collector = _Collector()
        collector.visit(stmt)
        self.reads |= collector.loads - self.sure
        self.reads |= collector.free_in_functions - self.sure - collector.stores
        for name in collector.stores:
            self.writes.add(name)
            if name in self.deletes:
                self.writes_after_delete.add(name)
        for name in collector.dels:
            self.deletes.add(name)
            self.writes_after_delete.discard(name)
            self.sure.discard(name)
        if not isinstance(stmt, _COMPOUND):
            self.sure |= collector.stores


class _Collector(ast.NodeVisitor):
    """Loads and stores of one top-level statement, in evaluation order.

    ``loads`` are names loaded before this statement stores them;
    ``free_in_functions`` are globals read by function/lambda/class bodies.
    """

    def __init__(self) -> None:
        self.loads: set[str] = set()
        self.stores: set[str] = set()
        self.dels: set[str] = set()
        self.free_in_functions: set[str] = set()

    def _load(self, name: str) -> None:
        if name not in self.stores:
            self.loads.add(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._load(node.id)
        elif isinstance(node.ctx, ast.Store):
            self.stores.add(node.id)
        else:
            self._load(node.id)
            self.dels.add(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.annotation)
        if node.value is not None or not isinstance(node.target, ast.Name):
            self.visit(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._load(node.target.id)
            self.stores.add(node.target.id)
        else:
            self.visit(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.stores.add(node.target.id)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self.visit(node.target)
        for stmt in node.body + node.orelse:
            self.visit(stmt)

    visit_AsyncFor = visit_For

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name == "*":
                continue
            self.stores.add(alias.asname or alias.name.split(".")[0])

    visit_ImportFrom = visit_Import

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.stores.add(node.name)
        for stmt in node.body:
            self.visit(stmt)

    def visit_Global(self, node: ast.Global) -> None:
        return

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self._visit_arguments_outer(node.args)
        if node.returns is not None:
            self.visit(node.returns)
        self._function_body(node.args, node.body)
        self.stores.add(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_arguments_outer(node.args)
        self._function_body(node.args, [node.body])

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        for base in node.bases:
            self.visit(base)
        for keyword in node.keywords:
            self.visit(keyword.value)
        free, global_stores = _free_names(node.body, params=set(), is_class=True)
        self.free_in_functions |= free
        self.stores |= global_stores
        self.stores.add(node.name)

    def _visit_comprehension(self, node: ast.AST, elements: list[ast.AST]) -> None:
        generators = node.generators
        self.visit(generators[0].iter)
        free, global_stores = _comprehension_free(generators, elements)
        for name in free:
            self._load(name)
        self.stores |= global_stores

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._visit_comprehension(node, [node.elt])

    visit_SetComp = visit_ListComp
    visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._visit_comprehension(node, [node.key, node.value])

    def _visit_arguments_outer(self, args: ast.arguments) -> None:
        for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            self.visit(default)
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None and arg.annotation is not None:
                self.visit(arg.annotation)

    def _function_body(self, args: ast.arguments, body: list[ast.AST]) -> None:
        free, global_stores = _free_names(body, params=_param_names(args), is_class=False)
        self.free_in_functions |= free
        self.stores |= global_stores


def _param_names(args: ast.arguments) -> set[str]:
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    return {a.arg for a in every if a is not None}


def _free_names(body: list[ast.AST], params: set[str], is_class: bool) -> tuple[set[str], set[str]]:
    """Globals a function (or class) body reads, and globals it assigns via ``global``."""
    inner = _Collector()
    declared_global: set[str] = set()
    for node in body:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Global):
                declared_global.update(sub.names)
        inner.visit(node)
    local = (params | inner.stores) - declared_global
    if is_class:
        free = inner.loads | inner.free_in_functions
        return free - params, inner.stores & declared_global
    free = (inner.loads | inner.free_in_functions) - local
    return free, inner.stores & declared_global


def _comprehension_free(generators: list[ast.comprehension], elements: list[ast.AST]) -> tuple[set[str], set[str]]:
    """Names a comprehension loads from the enclosing scope, and names its walrus binds there."""
    inner = _Collector()
    targets: set[str] = set()
    for index, gen in enumerate(generators):
        if index > 0:
            inner.visit(gen.iter)
        target = _Collector()
        target.visit(gen.target)
        targets |= target.stores
        for cond in gen.ifs:
            inner.visit(cond)
    for element in elements:
        inner.visit(element)
    walrus = {n.target.id for e in elements for n in ast.walk(e) if isinstance(n, ast.NamedExpr)}
    walrus |= {
        n.target.id for g in generators for c in g.ifs for n in ast.walk(c) if isinstance(n, ast.NamedExpr)
    }
    free = (inner.loads | inner.free_in_functions) - targets
    return free, walrus
