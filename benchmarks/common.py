"""Helpers shared by the benchmarks: timing, tables, optional competitors."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable


def median_time(fn: Callable[[], object], repeat: int, warmup: int = 3) -> float:
    """Median wall time of ``fn`` in seconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def have(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def table(rows: list[tuple[str, dict[str, float | None]]], unit: Callable[[float | None], str] = fmt_seconds,
          lower_is_better: bool = True) -> str:
    """A Markdown table: one row per measurement, one column per system, plus ratios to ipyworkers."""
    systems = []
    for _, values in rows:
        for name in values:
            if name not in systems:
                systems.append(name)
    head = "| measurement | " + " | ".join(systems) + " | " + " | ".join(
        f"{s} / ipyworkers" for s in systems[1:]) + " |"
    line = "|" + "---|" * (1 + 2 * len(systems) - 1)
    out = [head, line]
    for label, values in rows:
        base = values.get(systems[0])
        cells = [unit(values.get(s)) for s in systems]
        ratios = []
        for s in systems[1:]:
            v = values.get(s)
            if v is None or not base:
                ratios.append("-")
            else:
                ratios.append(f"{(v / base) if lower_is_better else (base / v):.1f}×")
        out.append(f"| {label} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(out)


def count_matching(path: str, start: int, end: int, pattern: bytes = rb"ERROR") -> int:
    """Lines of ``path[start:end]`` matching ``pattern``, read 16 MiB at a time."""
    regex = re.compile(pattern)
    count, left = 0, b""
    with open(path, "rb") as fh:
        fh.seek(start)
        remaining = end - start
        while remaining > 0:
            block = left + fh.read(min(16 << 20, remaining))
            remaining = end - fh.tell()
            cut = block.rfind(b"\n") + 1 if remaining > 0 else len(block)
            count += sum(1 for _ in regex.finditer(block, 0, cut))
            left = block[cut:]
    return count
