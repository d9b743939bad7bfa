"""The state line at the top of a non-blocking cell's output: what its tasks do now.

``queued on worker 2 (after In[5])``, ``running 3.2 s on worker 2``, ``done in 4.1 s on
worker 2``, ``failed on worker 2: ValueError: bad input``, ``cancelled on worker 2: …``.
A cell on several workers gets a line per worker, or, past ``MAX_LINES`` workers, one
summary line. Pure: tasks in, text out (``waits`` says what a queued task waits for).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from html import escape

from ..errors import RemoteError, TaskError
from ..kernel.scheduler import CANCELLED_BY_USER
from ..plan.dataflow import CANCELLED, FAILED

MAX_LINES = 4
ERROR_CHARS = 120
COLOURS = {"queued": "#9a6700", "running": "#0969da", "done": "#1a7f37", "failed": "#cf222e",
           "cancelled": "#6e7781"}


def worker_state(tasks: list, waits: Callable | None = None, now: float | None = None) -> tuple[str, str]:
    """(kind, text without the worker) of one worker's tasks of a cell."""
    now = time.monotonic() if now is None else now
    ended = [t for t in tasks if t.done()]
    failed = next((t for t in ended if t.state == FAILED), None)
    if failed is not None and getattr(failed.error, "ename", None) == "KeyboardInterrupt":
        return "cancelled", "interrupted"
    if failed is not None:
        return "failed", f"failed: {_error_text(failed.error)}"
    cancelled = next((t for t in ended if t.state == CANCELLED), None)
    if cancelled is not None and len(ended) == len(tasks):
        reason = _error_text(cancelled.error)
        return "cancelled", "cancelled" if reason.startswith(CANCELLED_BY_USER) else f"cancelled: {reason}"
    started = [t.started_at for t in tasks if t.started_at is not None]
    if len(ended) == len(tasks):
        finished = max((t.finished_at or now) for t in tasks)
        begin = min(started) if started else min(t.submitted_at for t in tasks)
        return "done", f"done in {_seconds(finished - begin)}"
    if started:
        return "running", f"running {_seconds(now - min(started))}"
    pending = next(t for t in tasks if not t.done())
    if getattr(pending, "cancel_requested", False):
        return "queued", f"cancelled; skipped when worker {pending.worker} gets to it"
    after = waits(pending) if waits is not None else []
    cell = pending.cell
    labels = list(dict.fromkeys(
        f"In[{t.cell}]" if t.cell is not None and t.cell != cell else f"task #{t.id}" for t in after))
    return "queued", "queued" + (f" (after {', '.join(labels)})" if labels else "")


def state_lines(tasks: list, waits: Callable | None = None, now: float | None = None) -> list[tuple[str, str]]:
    """[(kind, line)]: one per worker, or one summary past ``MAX_LINES`` workers."""
    by_worker: dict[int, list] = {}
    for task in tasks:
        by_worker.setdefault(task.worker, []).append(task)
    states = {w: worker_state(ts, waits, now) for w, ts in sorted(by_worker.items())}
    if len(states) <= MAX_LINES:
        return [(kind, _with_worker(kind, text, w)) for w, (kind, text) in states.items()]
    counts: dict[str, list[int]] = {}
    for w, (kind, _) in states.items():
        counts.setdefault(kind, []).append(w)
    order = ("failed", "running", "queued", "cancelled", "done")
    worst = next(k for k in order if k in counts)
    parts = [f"{kind} on {_ids(counts[kind])}" for kind in order if kind in counts]
    return [(worst, f"{len(states)} workers: " + "; ".join(parts))]


def bundle(lines: list[tuple[str, str]]) -> tuple[dict, dict]:
    """The display data of the state line(s): plain text, and small coloured HTML."""
    text = "\n".join(line for _, line in lines) or "submitted"
    html = "".join(
        f"<div style='font-size:90%;color:{COLOURS.get(kind, '#6e7781')}'>{escape(line)}</div>" for kind, line in lines)
    return {"text/plain": text, "text/html": f"<div class='ipyworkers-cell-state'>{html}</div>"}, {}


def _with_worker(kind: str, text: str, worker: int) -> str:
    if kind == "queued" and text.startswith("cancelled"):
        return text
    if kind == "queued":
        return text.replace("queued", f"queued on worker {worker}", 1)
    if kind in ("failed", "cancelled"):
        head, colon, rest = text.partition(": ")
        return f"{head} on worker {worker}{colon}{rest}"
    return f"{text} on worker {worker}"


def _error_text(error: BaseException | None) -> str:
    if error is None:
        return "?"
    if isinstance(error, RemoteError):
        text = f"{error.ename}: {error.evalue}"
    elif isinstance(error, TaskError):
        text = str(error.args[0])
    else:
        text = f"{type(error).__name__}: {error}"
    text = " ".join(text.split())
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS - 1] + "…"


def _seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _ids(ids: list[int]) -> str:
    return ("worker " if len(ids) == 1 else "workers ") + ", ".join(map(str, ids))



