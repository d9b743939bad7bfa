"""Functions pickled for the workers, once for as long as nothing they depend on changes.

Pickling a notebook function (by value, with the globals it names) costs tens of
microseconds, more than the rest of a ``submit``. So the pickle of a plain function is
kept, keyed by the function, and used again while the function's code, defaults and
closure, and the objects its global names are bound to, are the same objects. Rebinding
any of them (``K = 2``, a new ``def``) pickles it afresh; changing a global in place (a
list appended to) does not: pass such a value as an argument. Other callables (builtins,
partials, bound methods) are pickled each time.
"""

from __future__ import annotations

import hashlib
import threading
import types
from collections import OrderedDict
from typing import Any

from ..serialize import dumps_value

CACHE_SIZE = 64
_MISSING = object()


def _global_names(code: types.CodeType) -> tuple[str, ...]:
    """The names a code object and the code nested in it look up (globals among them)."""
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(_global_names(const))
    return tuple(dict.fromkeys(names))


class FunctionCache:
    def __init__(self, size: int = CACHE_SIZE):
        self._size = size
        self._entries: OrderedDict[int, tuple[tuple, str, list]] = OrderedDict()
        self._names: dict[types.CodeType, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def ship(self, fn: Any, what: str) -> tuple[str, list]:
        """(registry key, pickled parts) of ``fn``: the key is a digest of its pickle."""
        if not isinstance(fn, types.FunctionType):
            return _pickled(fn, what)
        depends = self._depends_on(fn)
        with self._lock:
            entry = self._entries.get(id(fn))
            if entry is not None and _same(entry[0], depends):
                self._entries.move_to_end(id(fn))
                return entry[1], entry[2]
        key, parts = _pickled(fn, what)
        with self._lock:
            self._entries[id(fn)] = (depends, key, parts)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return key, parts

    def _depends_on(self, fn: types.FunctionType) -> tuple:
        """What the pickle of ``fn`` is made from, as objects (held, so no id is reused)."""
        code = fn.__code__
        names = self._names.get(code)
        if names is None:
            if len(self._names) >= 16 * self._size:
                self._names.clear()
            names = self._names[code] = _global_names(code)
        found = fn.__globals__.get
        cells = (_contents(cell) for cell in fn.__closure__ or ())
        return (fn, code, fn.__defaults__, fn.__kwdefaults__, *cells, *(found(name, _MISSING) for name in names))


def _contents(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:
        return _MISSING


def _same(old: tuple, new: tuple) -> bool:
    return len(old) == len(new) and all(a is b for a, b in zip(old, new, strict=True))


def _pickled(fn: Any, what: str) -> tuple[str, list]:
    parts = dumps_value(what, fn)
    digest = hashlib.blake2b(digest_size=10)
    for part in parts:
        digest.update(part)
    return "f" + digest.hexdigest(), parts


_cache = FunctionCache()
ship = _cache.ship
