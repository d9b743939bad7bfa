"""What the kernel and the workers say to each other (shared by both sides)."""

from __future__ import annotations


class _Nothing:
    """A worker that got no items has no partial result."""

    def __reduce__(self):
        return (_nothing, ())


def _nothing() -> _Nothing:
    return NOTHING


NOTHING = _Nothing()
