"""Ship offsets, not data: split a text file into byte ranges that each worker reads itself.

Ranges split only just after a newline, so no line is cut, and together they cover
the file exactly once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

SCAN_BYTES = 1 << 16


def chunks(path: str | os.PathLike, size: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` byte ranges of about ``size`` bytes, each ending after a newline
    (or at the end of the file)."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"chunk size must be a whole number of bytes >= 1, not {size!r}")
    total = os.path.getsize(path)
    start = 0
    with open(path, "rb") as fh:
        while start < total:
            end = _line_end_after(fh, min(start + size, total) - 1, total)
            yield start, end
            start = end


def _line_end_after(fh, position: int, total: int) -> int:
    """The offset just past the first newline at or after ``position`` (``total`` if none)."""
    fh.seek(position)
    while True:
        block = fh.read(SCAN_BYTES)
        if not block:
            return total
        found = block.find(b"\n")
        if found >= 0:
            return position + found + 1
        position += len(block)


def read_range(path: str | os.PathLike, start: int, end: int) -> bytes:
    """The bytes of one range, read with one seek."""
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read(end - start)


def range_lines(path: str | os.PathLike, start: int, end: int, encoding: str = "utf-8") -> list[str]:
    """The lines of one range, without their newlines."""
    return read_range(path, start, end).decode(encoding).splitlines()
