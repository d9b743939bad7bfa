"""IPython magics: parse the line, call ``Cluster``, show the result. Nothing more."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from ..errors import ClusterError, TagError
from ..kernel.cluster import Cluster
from ..kernel.sinks import PrintSink, Sink
from ..kernel.tasks import Task, TaskGroup
from . import remote
from .outputs import QueueSink, WidgetSink

INTERRUPT_GRACE = 5.0
_IPYTHON_CACHE_NAME = re.compile(r"^_(i{0,3}|_{0,2})\d*$|^_(ih|oh|dh|ii+)$")


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"%{self.prog}: {message}")


def _worker_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"worker ids are whole numbers from 1, not {text!r}")
    return int(text)


def _parser(prog: str) -> _ArgumentParser:
    return _ArgumentParser(prog=prog, add_help=False)


def _parse(parser: argparse.ArgumentParser, line: str) -> argparse.Namespace:
    try:
        return parser.parse_args(shlex.split(line))
    except ValueError as exc:
        raise UsageError(f"%{parser.prog}: {exc}") from None


_WORKER = _parser("%worker")
_WORKER.add_argument("ids", nargs="+", type=_worker_id)
_WORKER.add_argument("--block", action="store_true")

_PARALLEL = _parser("%parallel")
_PARALLEL.add_argument("--show", action="store_true")
_PARALLEL.add_argument("--block", action="store_true")
_PARALLEL.add_argument("--default", type=_worker_id)

_WAIT = _parser("wait")
_WAIT.add_argument("ids", nargs="*", type=_worker_id)

_PUSH = _parser("push")
_PUSH.add_argument("names", nargs="+")
_PUSH.add_argument("--to", nargs="+", type=_worker_id, required=True)

_PULL = _parser("pull")
_PULL.add_argument("names", nargs="+")
_PULL.add_argument("--from", dest="frm", type=_worker_id)

_SEND = _parser("send")
_SEND.add_argument("names", nargs="+")
_SEND.add_argument("--from", dest="frm", type=_worker_id, required=True)
_SEND.add_argument("--to", nargs="+", type=_worker_id, required=True)

_TIMELINE = _parser("timeline")
_TIMELINE.add_argument("--save", metavar="FILE")

_WHO_HAS = _parser("who_has")
_WHO_HAS.add_argument("names", nargs="*")

WORKERS_USAGE = ("usage: %workers start [N] [--ssh HOSTS | --slurm | --mpi | --join] [--insecure] [-- ARGS] | "
                 "add N [--ssh HOSTS | ...] | remove ID ... | stop | restart [ID ...] | interrupt [ID ...] | status")


def _has_widget_frontend(shell: Any) -> bool:
    if getattr(shell, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


class StatusTable:
    """``%workers status``: an HTML table in a notebook, text elsewhere."""

    COLUMNS = ("id", "pid", "host", "state", "task", "names")

    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows

    @staticmethod
    def _cell(row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        if column == "names":
            names = value or []
            return f"{len(names)}: {', '.join(names[:8])}{' …' if len(names) > 8 else ''}" if names else "0"
        if column == "host" and row.get("relayed_from"):
            return f"{value} (via kernel from {', '.join(map(str, row['relayed_from']))})"
        if column == "task" and row.get("queued"):
            return f"{value or '-'} (+{row['queued']} queued)"
        return "-" if value is None else str(value)

    def __repr__(self) -> str:
        table = [self.COLUMNS] + [tuple(self._cell(r, c) for c in self.COLUMNS) for r in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(self.COLUMNS))]
        return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in table)

    def _repr_html_(self) -> str:
        from html import escape

        head = "".join(f"<th>{c}</th>" for c in self.COLUMNS)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(self._cell(r, c))}</td>" for c in self.COLUMNS) + "</tr>"
            for r in self.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@magics_class
class WorkerMagics(Magics):
    def __init__(self, shell):
        super().__init__(shell)
        self.cluster: Cluster | None = None
        self.dashboard = None
        self._unwaited: list[Task | TaskGroup] = []

    # -- lifecycle ---------------------------------------------------------------------------

    @line_magic
    def workers(self, line: str) -> Any:
        """%workers start [N] | stop | restart [ID ...] | interrupt [ID ...] | status"""
        words = line.split()
        if not words:
            raise UsageError(WORKERS_USAGE)
        action, rest = words[0], words[1:]
        handler = getattr(self, f"_workers_{action}", None)
        if handler is None:
            raise UsageError(f"%workers: unknown action {action!r}; {WORKERS_USAGE}")
        return handler(rest)

    def _workers_start(self, rest: list[str]) -> Any:
        launcher = None
        if remote.wants_remote(rest):
            try:
                n, launcher, _ = remote.parse(rest, "%workers start")
            except ValueError as exc:
                raise UsageError(f"%workers start: {exc}") from None
            rest = [] if n is None else [str(n)]
        if len(rest) > 1:
            raise UsageError("%workers start takes one number: how many workers (default: one per CPU)")
        n = None
        if rest:
            if not re.fullmatch(r"[+-]?\d+", rest[0]) or int(rest[0]) < 1:
                raise UsageError(f"%workers start: the number of workers must be a whole number >= 1, not {rest[0]!r}")
            n = int(rest[0])
        if self.cluster is not None and self.cluster.running:
            raise UsageError("workers are already running: %workers stop first, or %workers restart")
        cluster = Cluster(n, namespace=self.shell.user_ns, colors=_colors(self.shell), launcher=launcher)
        cluster.hidden_names = _HiddenNames(self.shell)
        started = time.perf_counter()
        try:
            cluster.start()
        except ClusterError as exc:
            raise UsageError(f"%workers start: {exc}") from None
        self.cluster = cluster
        print(f"{cluster.n_workers} workers ready in {time.perf_counter() - started:.2f} s")
        if not _has_widget_frontend(self.shell):
            return StatusTable(cluster.status())
        from .dashboard import Dashboard

        self.dashboard = Dashboard(cluster)
        self.dashboard.show()
        return None

    def _workers_stop(self, rest: list[str]) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        if self.dashboard is not None:
            self.dashboard.close()

    def _workers_restart(self, rest: list[str]) -> Any:
        cluster = self._cluster()
        try:
            cluster.restart(_ids(rest, "restart") or None)
        except ClusterError as exc:
            raise UsageError(f"%workers restart: {exc}") from None
        return StatusTable(cluster.status())

    def _workers_interrupt(self, rest: list[str]) -> None:
        cluster = self._cluster()
        try:
            report = cluster.interrupt(_ids(rest, "interrupt") or None)
        except ClusterError as exc:
            raise UsageError(f"%workers interrupt: {exc}") from None
        if not report:
            print("no worker was busy")
        for wid, outcome in sorted(report.items()):
            print(f"worker {wid}: {outcome}")

    # -- remote: growing and shrinking (see remote.py) --

    def _workers_add(self, rest: list[str]) -> Any:
        cluster = self._cluster()
        try:
            n, launcher, _ = remote.parse(rest, "%workers add")
            if n is None:
                raise ValueError("say how many: %workers add N [--ssh HOSTS | --slurm | --mpi | --join]")
            ids = cluster.add(n, launcher)
        except (ValueError, ClusterError) as exc:
            raise UsageError(f"%workers add: {exc}") from None
        print(f"added worker(s) {', '.join(map(str, ids))}")
        return StatusTable(cluster.status())

    def _workers_remove(self, rest: list[str]) -> Any:
        cluster = self._cluster()
        try:
            lost = cluster.remove(remote.parse_ids(rest))
        except (ValueError, ClusterError) as exc:
            raise UsageError(f"%workers remove: {exc}") from None
        if lost:
            print(f"lost with them (held nowhere else): {', '.join(lost)}")
        return StatusTable(cluster.status())

    def _workers_status(self, rest: list[str]) -> Any:
        return StatusTable(self._cluster().status())

    def _cluster(self) -> Cluster:
        if self.cluster is None or not self.cluster.running:
            raise UsageError("no workers are running: start them with %workers start N")
        return self.cluster

    # -- running code ---------------------------------------------------------------------------

    @cell_magic
    def worker(self, line: str, cell: str) -> None:
        """%%worker ID [ID ...] [--block]: run the cell on those workers."""
        args = _parse(_WORKER, line)
        cluster = self._cluster()
        ids = list(dict.fromkeys(args.ids))
        sink = self._sink(args.block, prefix_lines=len(ids) > 1)
        try:
            handle = cluster.run(cell, on=ids, sink=sink, cell=self._cell_number(), want_result=False)
        except ClusterError as exc:
            raise UsageError(f"%%worker: {exc}") from None
        self._finish_cell(handle, sink, args.block, prefix_lines=len(ids) > 1)

    @cell_magic
    def parallel(self, line: str, cell: str) -> None:
        """%%parallel [--show] [--block] [--default ID]: statements run where their '# @ID' tag says."""
        args = _parse(_PARALLEL, line)
        cluster = self._cluster()
        try:
            if args.show:
                print(cluster.plan_parallel(cell, default=args.default))
                return
            sink = self._sink(args.block, prefix_lines=True)
            handle = cluster.run_parallel(cell, default=args.default, sink=sink, cell_number=self._cell_number())
        except (ClusterError, TagError) as exc:
            raise UsageError(f"%%parallel: {exc}") from None
        self._finish_cell(handle, sink, args.block, prefix_lines=True)

    def _cell_number(self) -> int:
        return self.shell.execution_count

    def _sink(self, block: bool, prefix_lines: bool) -> Sink:
        if block:
            return QueueSink()
        if _has_widget_frontend(self.shell):
            from IPython.display import display
            from ipywidgets import Output

            output = Output()
            display(output)
            return WidgetSink(output, prefix_lines=prefix_lines)
        return PrintSink()

    def _finish_cell(self, handle: Task | TaskGroup, sink: Sink, block: bool, prefix_lines: bool) -> None:
        if not block:
            self._unwaited.append(handle)
            return
        self._wait_showing(handle, sink, prefix_lines)
        if handle.error is not None:
            raise handle.error

    def _wait_showing(self, handle: Task | TaskGroup, sink: QueueSink | None = None,
                      prefix_lines: bool = False) -> None:
        """Wait in the kernel's main thread, showing output as it comes; the stop button
        interrupts the code on the workers, which keep their variables."""
        interrupted_at = None
        while True:
            try:
                while not handle.done():
                    if sink is not None:
                        sink.drain(prefix_lines)
                    _wait_briefly(handle)
                break
            except KeyboardInterrupt:
                if interrupted_at is not None and time.monotonic() - interrupted_at > INTERRUPT_GRACE:
                    raise
                interrupted_at = time.monotonic()
                self.cluster.interrupt(sorted({t.worker for t in _tasks(handle) if not t.done()}))
        if sink is not None:
            sink.drain(prefix_lines)

    @line_magic
    def wait(self, line: str) -> None:
        """%wait [ID ...]: block until the work in flight ends; raise if any of it failed."""
        args = _parse(_WAIT, line)
        cluster = self._cluster()
        try:
            ids = cluster.check_ids(args.ids or None)
        except ClusterError as exc:
            raise UsageError(f"%wait: {exc}") from None
        tasks = {t.id: t for t in cluster.unfinished(ids)}
        tasks.update({t.id: t for h in self._unwaited for t in _tasks(h) if t.worker in ids})
        self._unwaited = [h for h in self._unwaited if any(t.id not in tasks for t in _tasks(h))]
        group = TaskGroup(sorted(tasks.values(), key=lambda t: t.id))
        self._wait_showing(group)
        failed = [t for t in group if t.error is not None]
        if len(failed) > 1:
            print(f"{len(failed)} tasks failed; the first:", file=sys.stderr)
        if failed:
            raise failed[0].error

    # -- moving variables --------------------------------------------------------------------------

    @line_magic
    def push(self, line: str) -> None:
        """%push NAMES --to IDS: copy kernel variables to workers."""
        args = _parse(_PUSH, line)
        missing = [n for n in args.names if n not in self.shell.user_ns]
        if missing:
            raise UsageError(f"%push: name {missing[0]!r} is not defined in the kernel")
        self._call("push", lambda c: c.push({n: self.shell.user_ns[n] for n in args.names}, to=args.to))

    @line_magic
    def pull(self, line: str) -> None:
        """%pull NAMES [--from ID]: bring variables into the kernel (after the tasks that make them)."""
        args = _parse(_PULL, line)
        self._call("pull", lambda c: c.pull(args.names, frm=args.frm))

    @line_magic
    def send(self, line: str) -> None:
        """%send NAMES --from ID --to IDS: copy variables from one worker to others, directly."""
        args = _parse(_SEND, line)
        self._call("send", lambda c: c.send(args.names, frm=args.frm, to=args.to, block=True))

    @line_magic
    def who_has(self, line: str) -> Any:
        """%who_has [NAMES]: which workers (0 = the kernel) hold each name, and its size."""
        args = _parse(_WHO_HAS, line)
        table = self._cluster().who_has(args.names or None)
        rows = [
            f"{name:<20} {', '.join(_holder(h) for h in info['holders']) or '-':<24} "
            f"{_size(info['size']):>10}  task #{info['task']} {info['state']}"
            if info["task"] else f"{name:<20} not defined on any worker"
            for name, info in table.items()
        ]
        print("\n".join(rows) if rows else "no variables on the workers yet")

    @line_magic
    def timeline(self, line: str) -> Any:
        """%timeline [--save FILE]: show the timeline again, or save it (.html page, .json trace)."""
        args = _parse(_TIMELINE, line)
        cluster = self.cluster if self.cluster is not None else None
        if cluster is None:
            raise UsageError("%timeline: nothing to show yet: start workers with %workers start N")
        from . import timeline

        model = timeline.TimelineModel.from_events(cluster.events.events(), cluster.events.origin)
        if args.save:
            try:
                kind = timeline.save(model, args.save)
            except (ValueError, OSError) as exc:
                raise UsageError(f"%timeline: {exc}") from None
            print(f"saved the timeline to {args.save} ({'Chrome/Perfetto trace' if kind == 'json' else 'HTML page'})")
            return None
        if self.dashboard is not None and _has_widget_frontend(self.shell):
            from IPython.display import display

            display(self.dashboard.widget)
            return None
        print(timeline.render_text(model))
        return None

    def _call(self, verb: str, action) -> Any:
        cluster = self._cluster()
        try:
            return action(cluster)
        except ClusterError as exc:
            raise UsageError(f"%{verb}: {exc}") from None


class _HiddenNames:
    """Kernel names that are IPython's own, never user variables to ship."""

    def __init__(self, shell: Any):
        self.shell = shell

    def __contains__(self, name: str) -> bool:
        return name in self.shell.user_ns_hidden or bool(_IPYTHON_CACHE_NAME.match(name))


def _wait_briefly(handle: Task | TaskGroup) -> None:
    pending = next((t for t in _tasks(handle) if not t.done()), None)
    if pending is not None:
        try:
            pending.wait(0.02)
        except TimeoutError:
            pass


def _tasks(handle: Task | TaskGroup) -> list[Task]:
    return handle.tasks if isinstance(handle, TaskGroup) else [handle]


def _ids(words: list[str], action: str) -> list[int]:
    try:
        return [_worker_id(w) for w in words]
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"%workers {action}: {exc}") from None


def _holder(holder: int) -> str:
    return "kernel" if holder == 0 else f"worker {holder}"


def _size(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def _colors(shell: Any) -> str:
    colors = str(getattr(shell, "colors", "nocolor") or "nocolor").lower()
    return "linux" if getattr(shell, "kernel", None) is not None and colors == "nocolor" else colors


_magics: WorkerMagics | None = None


def load(ipython: Any) -> None:
    global _magics
    _magics = WorkerMagics(ipython)
    ipython.register_magics(_magics)
    ipython.events.register("post_run_cell", _note_kernel_cell)


def unload(ipython: Any) -> None:
    global _magics
    try:
        ipython.events.unregister("post_run_cell", _note_kernel_cell)
    except ValueError:
        pass
    if _magics is not None:
        _magics._workers_stop([])
    _magics = None


def current() -> Cluster | None:
    """The cluster the magics of this kernel use, if started."""
    return None if _magics is None else _magics.cluster


def _note_kernel_cell(result: Any) -> None:
    """A cell that ran in the kernel itself may rebind names the workers also use."""
    cluster = current()
    if cluster is None or not cluster.running:
        return
    raw = getattr(getattr(result, "info", None), "raw_cell", None)
    if raw:
        cluster.note_kernel_cell(raw)
