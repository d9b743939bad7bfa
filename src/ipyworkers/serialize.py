"""Values on the wire: pickle protocol 5 with out-of-band buffers, cloudpickle when needed."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

from .errors import SerializationError  # noqa: F401 (callers catch it from here)


def dumps_value(name: str, value: Any) -> list[Any]:
    """Pickle ``value`` with protocol 5; large buffers stay out of band, uncopied.

    Plain pickle first (twice as fast on small values); cloudpickle when that fails
    or refers to ``__main__``, whose functions and classes must travel by value.
    """
    buffers: list[pickle.PickleBuffer] = []
    try:
        main = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        if b"__main__" not in main:
            return [main, *(b.raw() for b in buffers)] if buffers else [main]
    except Exception:
        pass
    import cloudpickle

    buffers = []
    try:
        main = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:
        kind = type(value)
        raise SerializationError(
            f"cannot send variable {name!r} of type {kind.__module__}.{kind.__qualname__}: {exc}"
        ) from exc
    return [main, *(b.raw() for b in buffers)]


def loads_value(name: str, parts: Sequence[Any], where: str) -> Any:
    try:
        return pickle.loads(parts[0], buffers=parts[1:])
    except Exception as exc:
        raise SerializationError(
            f"variable {name!r} cannot be unpickled on {where}: {type(exc).__name__}: {exc}"
        ) from exc


def pack_values(values: dict[str, list[Any]]) -> tuple[list[tuple[str, int]], list[Any]]:
    """Flatten {name: parts} into (index, parts) for one frame."""
    if not values:
        return [], []
    index, parts = [], []
    for name, value_parts in values.items():
        index.append((name, len(value_parts)))
        parts.extend(value_parts)
    return index, parts


def unpack_values(index: Sequence[tuple[str, int]], parts: Sequence[Any]) -> dict[str, list[Any]]:
    out, pos = {}, 0
    for name, count in index:
        out[name] = list(parts[pos : pos + count])
        pos += count
    return out
