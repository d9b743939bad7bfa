"""The timeline: events in, shapes out. Pure: no widgets, no threads.

``TimelineModel`` is fed events one at a time (incrementally, as they happen) and
keeps bars (tasks), arrows (transfers) and the plans of ``%%parallel`` runs. ``svg``
draws it (the live widget and the standalone HTML export); ``chrome_trace`` writes
the Chrome trace event format that Perfetto loads; ``render_text`` is for plain IPython.

The model keeps only recent history (see ``MAX_BARS``): a session of 100,000 tasks must
not hold 100,000 bars, and a drawing is bounded by its pixels anyway. Totals that speak
for the whole session (tasks, bytes, busy time) are running sums, kept apart from the
shapes, so they stay right when old shapes go.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..kernel import events as ev
from . import runs

KERNEL = 0
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#86bcb6")
"""Bar colours, one per cell or function (in the order they first ran), cycling. No red:
red means failed, and state is drawn as fill and border, not as the colour."""
PLANNED = "#24292f"
"""Outline of the hollow bars that show a %%parallel run's plan."""
MAX_ARROWS = 400
"""Above this many visible transfers, arrows are merged per time bucket when drawn."""
MAX_BARS = 10_000
"""Ended bars kept. A full-width drawing has about 800 pixels per row, so beyond a few
thousand tasks older ones are only merged pixels; 10,000 still lets one zoom into the
recent past (a tenth of that is the slack pruned at once, see ``TimelineModel``)."""
MAX_KEPT_ARROWS = 5_000
"""Transfers kept: drawn, more than ``MAX_ARROWS`` are merged anyway, so a few thousand
exact ones are enough to zoom into the recent past."""
MAX_PLANS = 50
"""Plans of ``%%parallel`` runs kept (each with a slot per statement), the most recent."""
PLAN_TRACK = 1000
"""Chrome trace: the plan of worker N goes on track ``PLAN_TRACK + N``."""
MAX_MARKS = 200
"""Worker deaths and restarts kept, the most recent."""


@dataclass(slots=True)
class Bar:
    task: int
    worker: int
    label: str = ""
    code: str = ""
    queued: float = 0.0
    start: float | None = None
    end: float | None = None
    state: str = "waiting"
    error: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    group: str = ""
    items: int = 0


@dataclass(slots=True)
class Mark:
    """A worker died or came back (restarted) at ``time``: drawn on its row."""

    worker: int
    time: float
    kind: str
    detail: str = ""


def group_of(data: dict[str, Any]) -> str:
    """What a task's bar is coloured and named by: its notebook cell (``In[7]``), else the
    function a ``submit`` or ``map`` calls, else the kind of move (push, pull, send)."""
    if data.get("cell") is not None:
        return f"In[{data['cell']}]"
    if data.get("function"):
        return f"{data['function']}()"
    verb = str(data.get("label", "")).split(" ", 1)[0]
    return verb if verb in ("push", "pull", "send", "fetch", "checkpoint") else "code"


@dataclass(slots=True)
class Arrow:
    name: str
    source: int
    dest: int
    bytes: int
    start: float
    end: float
    count: int = 1


@dataclass(slots=True)
class PlanRun:
    """The plan of one ``%%parallel`` run against what happened. ``slots`` are predicted
    (line, worker, start, finish, setup, code), in seconds after ``at``, the submission."""

    at: float
    cell: int | None
    auto: bool
    tasks: list[int]
    slots: list[dict]
    makespan: float
    serial: float
    unit: str
    ended: int = 0
    end: float | None = None
    busy: float = 0.0

    @property
    def done(self) -> bool:
        return self.ended >= len(self.tasks)

    @property
    def measured(self) -> bool:
        """Predicted in seconds (from earlier runs), not in units: drawable on the time axis."""
        return self.unit == "s"

    def actual(self, now: float) -> tuple[float, float]:
        """(wall time from submission to the last task's end, or to ``now`` while it runs;
        speed-up: task time over wall time)."""
        end = self.end if self.done and self.end is not None else max(now, self.end or self.at)
        wall = max(end - self.at, 1e-9)
        return wall, self.busy / wall

    def note_end(self, bar: Bar) -> None:
        self.ended += 1
        if bar.end is not None:
            self.end = bar.end if self.end is None else max(self.end, bar.end)
            if bar.start is not None:
                self.busy += bar.end - bar.start


@dataclass
class TimelineModel:
    """Bars and arrows for recent work, plus running totals for the whole session.

    At most ``max_bars`` bars of ended tasks are kept, the most recent by end time, and
    at most ``max_arrows`` arrows; bars of waiting and running tasks are never dropped,
    however old, since they are what one is watching. When a cap is passed, the oldest
    tenth goes at once: a prune sorts what is kept (nearly sorted already, as tasks end
    roughly in order) and rescans it for ``first_time``, so doing it once per ``cap / 10``
    endings costs a constant amount per event, where keeping exactly ``cap`` would mean a
    rescan per event. Recomputing ``first_time`` makes the drawn extent that of what is
    kept, not of the whole session.

    ``task_count``, ``bytes_moved`` and the busy times in ``summary`` count every event
    the model saw (and, via ``from_log``, those the log had already dropped);
    ``dropped_bars`` and ``dropped_arrows`` say how many shapes are no longer drawn.
    """

    origin: float
    bars: dict[int, Bar] = field(default_factory=dict)
    arrows: list[Arrow] = field(default_factory=list)
    workers: set[int] = field(default_factory=set)
    dead: dict[int, float] = field(default_factory=dict)
    last_time: float = 0.0
    version: int = 0
    first_time: float | None = None
    running: set[int] = field(default_factory=set)
    task_count: int = 0
    bytes_moved: int = 0
    max_bars: int = MAX_BARS
    max_arrows: int = MAX_KEPT_ARROWS
    dropped_bars: int = 0
    dropped_arrows: int = 0
    dropped_events: int = 0
    _busy_done: dict[int, float] = field(default_factory=dict)
    _ran_first: float | None = None
    _ran_last: float | None = None
    _ended: list[int] = field(default_factory=list)
    plans: list[PlanRun] = field(default_factory=list)
    max_plans: int = MAX_PLANS
    _plan_of: dict[int, PlanRun] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)
    """Each cell or function seen, in order: its colour is ``PALETTE[index % len]``."""
    marks: list[Mark] = field(default_factory=list)
    _started: set[int] = field(default_factory=set)

    @classmethod
    def from_events(cls, events: Iterable[ev.Event], origin: float, **caps: int) -> TimelineModel:
        model = cls(origin, **caps)
        for event in events:
            model.add(event)
        return model

    @classmethod
    def from_log(cls, log: ev.EventLog, **caps: int) -> TimelineModel:
        """The model of what ``log`` retains, with its session totals (tasks, bytes) also
        counting what the log has dropped; busy time and wall cover only what it retains."""
        dropped = log.dropped_totals()
        model = cls(log.origin, **caps)
        model.task_count = sum(n for worker, n in dropped["tasks"].items() if worker != KERNEL)
        model.bytes_moved = dropped["bytes"]
        model.dropped_events = dropped["events"]
        for event in log.events():
            model.add(event)
        return model

    def add(self, event: ev.Event) -> None:
        self.version += 1
        t = event.time - self.origin
        self.last_time = max(self.last_time, t)
        handler = _HANDLERS.get(event.kind)
        if handler is not None:
            handler(self, event, t)

    def _on_worker(self, event: ev.Event, t: float) -> None:
        self.workers.add(event.worker)
        if event.kind == ev.WORKER_DIED:
            self.dead[event.worker] = t
            self._mark(Mark(event.worker, t, "died", event.data.get("reason", "")))
        elif event.kind == ev.WORKER_STARTED:
            self.dead.pop(event.worker, None)
            if event.worker in self._started:
                self._mark(Mark(event.worker, t, "restarted"))
            self._started.add(event.worker)

    def _mark(self, mark: Mark) -> None:
        self.marks.append(mark)
        del self.marks[:-MAX_MARKS]

    def colour_of(self, group: str) -> str:
        return PALETTE[self.groups.get(group, 0) % len(PALETTE)]

    def _seen(self, t: float) -> None:
        self.first_time = t if self.first_time is None else min(self.first_time, t)

    def _on_queued(self, event: ev.Event, t: float) -> None:
        self.workers.add(event.worker)
        self._seen(t)
        group = group_of(event.data)
        self.groups.setdefault(group, len(self.groups))
        self.bars[event.task] = Bar(event.task, event.worker, event.data.get("label", ""),
                                    event.data.get("code", ""), queued=t, group=group,
                                    items=event.data.get("items", 0))
        if event.worker != KERNEL:
            self.task_count += 1

    def _on_started(self, event: ev.Event, t: float) -> None:
        bar = self.bars.get(event.task)
        if bar is not None:
            bar.start, bar.state = t, "running"
            if bar.worker != KERNEL:
                self.running.add(bar.task)
                self._ran_first = t if self._ran_first is None else min(self._ran_first, t)

    def _on_ended(self, event: ev.Event, t: float) -> None:
        bar = self.bars.get(event.task)
        if bar is None:
            return
        if bar.end is None:
            self._ended.append(bar.task)
        bar.end = t
        bar.state = _END_STATES.get(event.kind, "cancelled")
        bar.error = event.data.get("error")
        if bar.task in self.running:
            self.running.discard(bar.task)
            self._busy_done[bar.worker] = self._busy_done.get(bar.worker, 0.0) + t - bar.start
            self._ran_last = t if self._ran_last is None else max(self._ran_last, t)
        plan = self._plan_of.pop(bar.task, None)
        if plan is not None:
            plan.note_end(bar)
        if len(self._ended) > self.max_bars:
            self._prune_bars()

    def _on_plan(self, event: ev.Event, t: float) -> None:
        """A ``%%parallel`` run's plan; its tasks may have ended already (tiny ones)."""
        data = event.data
        plan = PlanRun(t, data.get("cell"), bool(data.get("auto")), list(data.get("tasks", [])),
                       list(data.get("slots", [])), float(data.get("makespan", 0.0)), float(data.get("serial", 0.0)),
                       data.get("unit", "s"))
        for task in plan.tasks:
            bar = self.bars.get(task)
            if bar is not None and bar.end is not None:
                plan.note_end(bar)
            else:
                self._plan_of[task] = plan
        self.plans.append(plan)
        if len(self.plans) > self.max_plans:
            for gone in self.plans[:-self.max_plans]:
                for task in gone.tasks:
                    self._plan_of.pop(task, None)
            del self.plans[:-self.max_plans]

    def plan_summary(self, now: float | None = None) -> dict[str, Any] | None:
        """The latest plan against its run: predicted and actual wall time and speed-up."""
        if not self.plans:
            return None
        plan = self.plans[-1]
        wall, speedup = plan.actual(self.last_time if now is None else now)
        return {"cell": plan.cell, "auto": plan.auto, "unit": plan.unit, "done": plan.done,
                "predicted": plan.makespan, "actual": wall,
                "predicted_speedup": plan.serial / plan.makespan if plan.makespan > 0 else 1.0,
                "actual_speedup": speedup}

    def _prune_bars(self) -> None:
        """Keep the ``max_bars - max_bars // 10`` most recently ended bars."""
        ended: dict[int, Bar] = {}
        for task in self._ended:  # a task id queued again may be listed twice, or not ended now
            bar = self.bars.get(task)
            if bar is not None and bar.end is not None:
                ended[task] = bar
        order = sorted(ended, key=lambda task: ended[task].end)  # nearly sorted already: linear
        cut = len(order) - (self.max_bars - self.max_bars // 10)
        for task in order[:max(cut, 0)]:
            del self.bars[task]
        self.dropped_bars += max(cut, 0)
        self._ended = order[max(cut, 0):]
        self._recompute_first_time()

    def _on_transfer(self, event: ev.Event, t: float) -> None:
        data = event.data
        arrow = Arrow(data["name"], data["source"], data["dest"], data["bytes"],
                      data["start"] - self.origin, data["end"] - self.origin, data.get("count", 1))
        self.arrows.append(arrow)
        self.bytes_moved += arrow.bytes
        self._seen(arrow.start)
        self.workers.update(h for h in (arrow.source, arrow.dest) if h != KERNEL)
        reader = self.bars.get(event.task) if event.task is not None else None
        if reader is not None:
            reader.bytes_in += arrow.bytes
        producer = self.bars.get(data.get("version"))
        if producer is not None:
            producer.bytes_out += arrow.bytes
        if len(self.arrows) > self.max_arrows:
            self._prune_arrows()

    def _prune_arrows(self) -> None:
        """Keep the ``max_arrows - max_arrows // 10`` most recently ended arrows."""
        self.arrows.sort(key=lambda arrow: arrow.end)  # appended as they end: nearly sorted
        cut = len(self.arrows) - (self.max_arrows - self.max_arrows // 10)
        del self.arrows[:cut]
        self.dropped_arrows += cut
        self._recompute_first_time()

    def _recompute_first_time(self) -> None:
        """What is no longer drawn no longer stretches the drawing (runs at prunes only)."""
        starts = [bar.queued for bar in self.bars.values()] + [arrow.start for arrow in self.arrows]
        self.first_time = min(starts) if starts else None

    def rows(self) -> list[int]:
        return [KERNEL, *sorted(w for w in self.workers if w != KERNEL)]

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """Tasks, busy fraction per worker, bytes moved, wall time and speed-up (kept up to
        date as events come, so this costs nothing per task)."""
        now = self.last_time if now is None else now
        if self._ran_first is None:
            return {"tasks": self.task_count, "busy": {}, "bytes": self.bytes_moved, "wall": 0.0, "speedup": 0.0}
        busy = dict(self._busy_done)
        last = self._ran_last if self._ran_last is not None else self._ran_first
        for task in self.running:
            bar = self.bars[task]
            busy[bar.worker] = busy.get(bar.worker, 0.0) + now - bar.start
            last = max(last, now)
        wall = max(last - self._ran_first, 1e-9)
        return {
            "tasks": self.task_count,
            "busy": {w: busy[w] / wall for w in sorted(busy)},
            "bytes": self.bytes_moved,
            "wall": wall,
            "speedup": sum(busy.values()) / wall,
            "plan": self.plan_summary(now),
        }


_END_STATES = {ev.TASK_FINISHED: "done", ev.TASK_FAILED: "failed"}
_HANDLERS = {
    ev.WORKER_STARTED: TimelineModel._on_worker,
    ev.WORKER_DIED: TimelineModel._on_worker,
    ev.WORKER_STOPPED: TimelineModel._on_worker,
    ev.TASK_QUEUED: TimelineModel._on_queued,
    ev.TASK_STARTED: TimelineModel._on_started,
    ev.TASK_FINISHED: TimelineModel._on_ended,
    ev.TASK_FAILED: TimelineModel._on_ended,
    ev.TASK_CANCELLED: TimelineModel._on_ended,
    ev.TRANSFER: TimelineModel._on_transfer,
    ev.PLAN: TimelineModel._on_plan,
}


# -- text -----------------------------------------------------------------------------------


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def human_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def summary_line(model: TimelineModel, now: float | None = None, window: tuple[float, float] | None = None) -> str:
    """Tasks, busy % per worker, bytes moved, wall time and speed-up of the window shown
    (by default the latest burst of work), then the session's totals if they differ."""
    window = runs.default_window(model, now) if window is None else window
    s = runs.window_summary(model, window, now)
    busy = ", ".join(f"w{w} {fraction:.0%}" for w, fraction in s.busy_fractions().items()) or "-"
    line = (f"{s.tasks} tasks · busy {busy} · moved {human_bytes(s.bytes)} · "
            f"wall {human_seconds(s.wall)} · speed-up {s.speedup:.2f}×")
    if (s.tasks, s.bytes) != (model.task_count, model.bytes_moved):
        line += f" · session {model.task_count} tasks, {human_bytes(model.bytes_moved)} moved"
    if model.dropped_bars or model.dropped_arrows or model.dropped_events:
        line += f" · drawing the latest {len(model.bars)} tasks"
    plan = plan_line(model, now)
    return line + " · " + plan if plan else line


def plan_line(model: TimelineModel, now: float | None = None) -> str:
    """The latest %%parallel run, predicted against actual: wall time and speed-up."""
    s = model.plan_summary(now)
    if s is None:
        return ""
    cell = f"cell [{s['cell']}]" if s["cell"] is not None else "last %%parallel run"
    actual = human_seconds(s["actual"]) if s["done"] else f"{human_seconds(s['actual'])} so far"
    if s["unit"] != "s":
        return (f"plan of {cell}: {s['predicted']:.2f} units (nothing measured yet: equal weights), "
                f"actual {actual}, speed-up {s['actual_speedup']:.2f}×")
    return (f"plan vs actual, {cell}: {human_seconds(s['predicted'])} vs {actual}, "
            f"speed-up {s['predicted_speedup']:.2f}× vs {s['actual_speedup']:.2f}×")


def render_text(model: TimelineModel, now: float | None = None, width: int = 60) -> str:
    """For plain IPython: a character per time slot, per worker."""
    now = model.last_time if now is None else now
    t0, t1 = runs.default_window(model, now)
    scale = width / max(t1 - t0, 1e-9)
    marks = {"done": "#", "running": ">", "failed": "x", "cancelled": "-", "waiting": "."}
    lines = [summary_line(model, now, (t0, t1))]
    for row in model.rows()[1:]:
        cells = [" "] * width
        for bar in model.bars.values():
            if bar.worker != row or bar.start is None:
                continue
            a = int((bar.start - t0) * scale)
            b = max(a + 1, int(((bar.end if bar.end is not None else now) - t0) * scale))
            for i in range(max(0, a), min(width, b)):
                cells[i] = marks[bar.state]
        lines.append(f"worker {row:<3}|{''.join(cells)}|")
    lines.append(f"{'':10} {human_seconds(t0)}{human_seconds(t1):>{width - 4}}")
    return "\n".join(lines)


# -- shared with the drawing ---------------------------------------------------------------------


def who(holder: int) -> str:
    return "kernel" if holder == KERNEL else f"worker {holder}"



def __getattr__(name: str) -> Any:
    """The drawing lives in ``svg`` and the exports in ``exports`` now; old imports keep working."""
    if name in ("render_svg", "html_page", "chrome_trace", "save"):
        from . import svg

        return getattr(svg, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
