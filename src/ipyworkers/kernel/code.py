"""What a piece of code reads and writes, as the kernel tracks it."""

from __future__ import annotations

import functools

from ..plan.analysis import CodeNames, analyze

WORKER_NAMES = frozenset({"worker_id", "n_workers", "send", "recv", "close", "stream"})
"""Names every worker defines for itself: never tracked, never shipped, even if rebound."""


@functools.lru_cache(maxsize=1024)
def names_of(code: str) -> CodeNames:
    """What ``code`` reads and writes once IPython syntax is turned into Python (cached:
    the same code is often submitted many times)."""
    return analyze(transform(code))


def transform(code: str) -> str:
    """IPython's own cell transforms (magics, ``!cmd``), so analysis sees Python."""
    try:
        from ..transforms import PlainCellTransformer
    except ImportError:
        return code
    try:
        return PlainCellTransformer().transform_cell(code)
    except Exception:
        return code


def label(code: str) -> str:
    for line in code.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line[:60]
    return "(empty)"
