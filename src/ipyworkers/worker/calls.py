"""Function calls on a worker (``Cluster.submit``, map batches, map-reduce folds).

No IPython cell and no namespace: the function and its arguments come in the task's
payload. A function travels once per worker per job, keyed by a digest of its pickle,
and stays in a small registry (the most recently used ``FUNCTIONS_KEPT``); a call whose
function is not there fails with ``FunctionNotShipped``, and the kernel sends it again.

Call forms (the ``call`` dict of a ``Run``):

* ``{"fn", "args"}``: ``fn(*args, **kwargs)``, from payload "args" = (args, kwargs).
* ``{"fn", "star", "base"}``: a batch: payload "items" is a list; each item is called as
  ``fn(x)`` (star 0), ``fn(*x)`` (star 1) or ``fn(*args, **kwargs)`` for ``x = (args,
  kwargs or None)`` (star 2). Returns the list of results.
* with ``"acc"`` and ``"reduce"`` besides: fold each result into the accumulator ``acc``
  with ``reduce``; returns None.
* ``{"collect": acc}``: return (and forget) the accumulator, ``NOTHING`` if none.
* ``{"fold": acc, "reduce"}``: fold payload "value" into the accumulator (tree reduction).
"""

from __future__ import annotations

import os
import traceback
from collections import OrderedDict
from typing import Any

from ..protocol import NOTHING
from ..serialize import loads_value

_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep
FUNCTIONS_KEPT = 64
MISSING = "FunctionNotShipped"


class FunctionNotShipped(Exception):
    """The function of a call is not (or no longer) on this worker."""


class Calls:
    def __init__(self) -> None:
        self.functions: OrderedDict[str, Any] = OrderedDict()
        self.accumulators: dict[str, Any] = {}
        self.failed_item: int | None = None

    def run(self, call: dict, payload: dict[str, list], where: str) -> Any:
        self.failed_item = None
        if "collect" in call:
            return self.accumulators.pop(call["collect"], NOTHING)
        if "fold" in call:
            reducer = self._function(call["reduce"], payload, where, "reducer")
            value = loads_value("partial result", payload["value"], where)
            key = call["fold"]
            self.accumulators[key] = reducer(self.accumulators[key], value) if key in self.accumulators else value
            return None
        fn = self._function(call["fn"], payload, where, call.get("name", "function"))
        if "args" in call:
            args, kwargs = loads_value("arguments", payload["args"], where)
            return fn(*args, **(kwargs or {}))
        items = loads_value("items", payload["items"], where)
        star = call.get("star", 0)
        if call.get("reduce") is None:
            return self._map(fn, items, star, call.get("base", 0))
        reducer = self._function(call["reduce"], payload, where, "reducer")
        self._fold(fn, reducer, items, star, call["acc"], call.get("base", 0))
        return None

    def _map(self, fn: Any, items: list, star: int, base: int) -> list:
        out: list = []
        append = out.append
        try:
            if star == 0:
                for x in items:
                    append(fn(x))
            elif star == 1:
                for x in items:
                    append(fn(*x))
            else:
                for args, kwargs in items:
                    append(fn(*args, **(kwargs or {})))
        except BaseException:
            self.failed_item = base + len(out)
            raise
        return out

    def _fold(self, fn: Any, reducer: Any, items: list, star: int, key: str, base: int) -> None:
        have = key in self.accumulators
        acc = self.accumulators.get(key)
        done = 0
        try:
            for x in items:
                value = fn(x) if star == 0 else fn(*x) if star == 1 else fn(*x[0], **(x[1] or {}))
                acc = reducer(acc, value) if have else value
                have = True
                done += 1
        except BaseException:
            self.failed_item = base + done
            raise
        if have:
            self.accumulators[key] = acc

    def _function(self, key: str, payload: dict[str, list], where: str, name: str) -> Any:
        functions = self.functions
        if key not in functions:
            parts = payload.get(key)
            if parts is None:
                raise FunctionNotShipped(f"{name} {key} is not on {where}")
            functions[key] = loads_value(name, parts, where)
            while len(functions) > FUNCTIONS_KEPT:
                functions.popitem(last=False)
        else:
            functions.move_to_end(key)
        return functions[key]

    def format_error(self, exc: BaseException) -> list[str]:
        """The user's frames only (the worker's own are left out), plus the item that failed."""
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_HERE):
            tb = tb.tb_next
        lines = [line.rstrip("\n") for line in traceback.format_exception(type(exc), exc, tb)]
        if self.failed_item is not None:
            lines.append(f"(while mapping item {self.failed_item})")
        return lines
