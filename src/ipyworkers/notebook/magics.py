"""IPython magics: parse the line, call ``Cluster``, show the result. Nothing more.

Each magic declares its arguments with IPython's ``magic_arguments`` (as ``%%capture``
does), so ``%workers?``, ``%%worker?`` and the rest print their full help. Arguments that
several magics share are the small decorators just below. A ``# comment`` at the end of
a magic's line (or of a cell magic's first line) is ignored.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, kwds, magic_arguments

from ..errors import ClusterError, TagError, TaskCancelled
from ..kernel import celltasks
from ..kernel.cluster import Cluster, max_workers
from ..kernel.sinks import PrintSink, Sink
from ..kernel.tasks import Task, TaskGroup
from ..plan.export import ExportError
from . import remote
from .blocked import QueueSink
from .outputs import CellOutput, running_cell_number
from .tables import StatusTable, who_has_text

_IPYTHON_CACHE_NAME = re.compile(r"^_(i{0,3}|_{0,2})\d*$|^_(ih|oh|dh|ii+)$")
WORKERS_ACTIONS = ("start", "add", "remove", "stop", "restart", "interrupt", "cancel", "status")
WORKERS_USAGE = ("%workers start [N] [--force] [--ssh HOSTS | --slurm | --mpi | --join] [--insecure] [-- ARGS] | "
                 "add N [--ssh HOSTS | ...] | remove ID ... | stop | restart [ID ...] | interrupt [ID ...] | "
                 "cancel In[N]|#TASK ... | status")


# -- arguments ---------------------------------------------------------------------------------


def _worker_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"worker ids are whole numbers from 1, not {text!r}")
    return int(text)


def _workers_action(text: str) -> str:
    if text not in WORKERS_ACTIONS:
        raise argparse.ArgumentTypeError(f"unknown action {text!r}; usage: {WORKERS_USAGE}")
    return text


def _worker_ids(nargs: str, help: str):
    """Positional worker ids (``%%worker 1 2``, ``%wait 2``)."""
    return argument("ids", nargs=nargs, type=_worker_id, default=[], help=help)


def _block(func):
    return argument("--block", action="store_true",
                    help="wait here until the work ends: its output lands in this cell, its error "
                         "becomes the cell's error, and the stop button interrupts the workers")(func)


def _names(nargs: str, help: str):
    return argument("names", nargs=nargs, metavar="NAME", default=[], help=help)


def _to(func):
    return argument("--to", nargs="+", type=_worker_id, required=True, metavar="ID",
                    help="the workers that receive the values")(func)


def _from(required: bool, help: str):
    return argument("--from", dest="frm", type=_worker_id, required=required, metavar="ID", help=help)


def _parse(magic: Any, line: str) -> argparse.Namespace:
    """``line`` parsed by ``magic``'s own parser (``magic_arguments``), its trailing
    comment dropped; a bad line is a ``UsageError`` that names the magic."""
    name = f"%{magic.parser.prog}"
    try:
        words = shlex.split(_uncommented(line))
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"{name}: {exc}") from None
    try:
        return magic.parser.parse_args(words)
    except UsageError as exc:
        raise UsageError(f"{name}: {exc} (see {name}?)") from None


def _uncommented(line: str) -> str:
    """``line`` without a trailing comment: from a ``#`` that starts a word outside
    quotes, as in a shell (so ``--save 'run#2.html'`` keeps its ``#``), unless a digit
    follows it (``%workers cancel #12`` names task 12)."""
    quote, escaped = None, False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()) and not line[i + 1:i + 2].isdigit():
            return line[:i]
    return line


def _has_widget_frontend(shell: Any) -> bool:
    if getattr(shell, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _outcome_line(worker: int, outcome: str) -> str:
    """One line of ``Cluster.interrupt``'s report."""
    return outcome if outcome.startswith(f"worker {worker} ") else f"worker {worker}: {outcome}"


# -- the magics -------------------------------------------------------------------------------------


@magics_class
class WorkerMagics(Magics):
    def __init__(self, shell):
        super().__init__(shell)
        self.cluster: Cluster | None = None
        self.dashboard = None
        self._unwaited: list[Task | TaskGroup] = []

    # -- lifecycle ---------------------------------------------------------------------------

    @magic_arguments()
    @kwds(usage="%(prog)s start [N] [--force] [--ssh HOSTS | --slurm | --mpi | --join] [-- ARGS]\n"
                "  %%%(prog)s add N [--ssh HOSTS | --slurm | --mpi | --join] [-- ARGS]\n"
                "  %%%(prog)s remove ID [ID ...]\n  %%%(prog)s stop\n  %%%(prog)s restart [ID ...]\n"
                "  %%%(prog)s interrupt [ID ...]\n  %%%(prog)s cancel In[N]|#TASK ...\n  %%%(prog)s status")
    @argument("action", type=_workers_action, help=" | ".join(WORKERS_ACTIONS))
    @argument("numbers", nargs="*", metavar="N|ID", default=[],
              help="start: how many workers (default: one per CPU); restart, interrupt: which workers "
                   "(default: all); cancel: the cells (In[7]) or tasks (#12)")
    @argument("--force", action="store_true",
              help=f"start: start more than {max_workers()} workers (4 per CPU, at least 8), each a process "
                   "of its own")
    @remote.arguments
    @line_magic
    def workers(self, line: str) -> Any:
        """Start, stop, restart or interrupt the worker processes, or show what they do.

        start [N] [--force]   start N workers (default: one per CPU) and show the dashboard;
                              more than 4 per CPU (at least 8) takes --force
        stop                  stop every worker (their variables are lost)
        restart [ID ...]      replace these workers (default: all) with fresh processes;
                              the way out for a worker that is stuck or unresponsive
        interrupt [ID ...]    KeyboardInterrupt in what these workers (default: all) run or
                              wait for, waiting up to 2 s, then say for each what happened
        cancel In[N]|#T ...   cancel the tasks of cell In[N], or task #T: dropped if not
                              started (with what needed them), interrupted if running
        status                a row per worker: host, pid, state (idle, busy, waiting for a
                              variable, unresponsive, dead), task, variables held
        add N                 grow a running cluster by N workers (local, or placed by a launcher)
        remove ID ...         stop these workers for good; the names only they held are lost

        Workers on other hosts (start and add): --ssh HOST[,HOST...] (through your ssh
        config), --slurm (srun in an allocation, else sbatch), --mpi (mpiexec), --join
        (prints the command to run on any host). Their links are mutual TLS 1.3 with a
        certificate authority made for the session; --insecure uses plain TCP with the
        session-key challenge only. --listen HOST:PORT, --advertise HOST[:PORT], --python
        PATH; anything after -- goes to ssh, srun/sbatch or mpiexec.
        """
        line, extra = remote.split_passthrough(line)
        args = _parse(self.workers, line)
        if args.force and args.action != "start":
            raise UsageError(f"%workers {args.action}: --force goes only with start")
        try:
            args.launcher = remote.launcher_from(args, extra)
        except ValueError as exc:
            raise UsageError(f"%workers {args.action}: {exc}") from None
        if args.launcher is not None and args.action not in ("start", "add"):
            raise UsageError(f"%workers {args.action}: where workers start goes only with start and add")
        return getattr(self, f"_workers_{args.action}")(args.numbers, args)

    def _workers_start(self, numbers: list[str], args: argparse.Namespace) -> Any:
        if len(numbers) > 1:
            raise UsageError("%workers start takes one number: how many workers (default: one per CPU)")
        n = None
        if numbers:
            if not re.fullmatch(r"[+-]?\d+", numbers[0]) or int(numbers[0]) < 1:
                raise UsageError(
                    f"%workers start: the number of workers must be a whole number >= 1, not {numbers[0]!r}")
            n = int(numbers[0])
        if self.cluster is not None and self.cluster.running:
            raise UsageError("workers are already running: %workers stop first, or %workers restart")
        if n is not None and n > max_workers() and not args.force:
            raise UsageError(
                f"%workers start: {n} workers is more than this machine's limit of {max_workers()} (4 per CPU, "
                f"at least 8), and each is a process of its own; to start them anyway: %workers start {n} --force")
        try:
            cluster = Cluster(n, namespace=self.shell.user_ns, colors=_colors(self.shell), force=args.force,
                              launcher=args.launcher)
        except ClusterError as exc:
            raise UsageError(f"%workers start: {exc}") from None
        cluster.hidden_names = _HiddenNames(self.shell)
        self.cluster, self._unwaited = cluster, []  # before start: however it ends, %workers stop reaches it
        started = time.perf_counter()
        try:
            cluster.start()
        except ClusterError as exc:
            raise UsageError(f"%workers start: {exc}") from None
        except KeyboardInterrupt:
            raise KeyboardInterrupt("%workers start was interrupted; the workers it had started are stopped") \
                from None
        print(f"{cluster.n_workers} workers ready in {time.perf_counter() - started:.2f} s")
        if not _has_widget_frontend(self.shell):
            return StatusTable(cluster.status())
        from .dashboard import Dashboard

        self.dashboard = Dashboard(cluster)
        self.dashboard.show()
        return None

    def _workers_stop(self, numbers: list[str] = (), args: Any = None, quiet: bool = False) -> None:
        if numbers:
            raise UsageError("%workers stop takes no worker ids: it stops them all")
        cluster = self.cluster
        running = cluster is not None and cluster.running
        alive = sum(1 for row in cluster.status() if row["state"] != "dead") if running else 0
        if cluster is not None:
            cluster.stop()
        if self.dashboard is not None:
            self.dashboard.close()
        self._unwaited = []
        if not quiet:
            print(f"stopped {alive} worker{'s' if alive != 1 else ''}" if running else "no workers were running")

    def _workers_restart(self, numbers: list[str], args: argparse.Namespace) -> Any:
        cluster = self._cluster()
        before = {row["id"]: row.get("pid") for row in cluster.status()}
        try:
            ids = cluster.check_ids(self._ids(numbers, "restart") or None)
            cluster.restart(ids)
        except ClusterError as exc:
            raise UsageError(f"%workers restart: {exc}") from None
        rows = cluster.status()
        after = {row["id"]: row.get("pid") for row in rows}
        for wid in ids:
            print(f"restarted worker {wid} (pid {before.get(wid) or '-'} -> {after.get(wid) or '-'})")
        return StatusTable(rows)

    def _workers_interrupt(self, numbers: list[str], args: argparse.Namespace) -> None:
        cluster = self._cluster()
        try:
            report = cluster.interrupt(self._ids(numbers, "interrupt") or None)
        except ClusterError as exc:
            raise UsageError(f"%workers interrupt: {exc}") from None
        if not report:
            print("no worker was busy")
        for wid, outcome in sorted(report.items()):
            print(_outcome_line(wid, outcome))

    def _workers_cancel(self, numbers: list[str], args: argparse.Namespace) -> None:
        from . import cancel

        try:
            lines = cancel.cancel(self._cluster(), numbers)
        except ValueError as exc:
            raise UsageError(f"%workers cancel: {exc}") from None
        print("\n".join(lines))

    def _workers_add(self, numbers: list[str], args: argparse.Namespace) -> Any:
        cluster = self._cluster()
        if len(numbers) != 1 or not numbers[0].isdigit() or int(numbers[0]) < 1:
            raise UsageError("%workers add: say how many: %workers add N [--ssh HOSTS | --slurm | --mpi | --join]")
        try:
            ids = cluster.add(int(numbers[0]), args.launcher)
        except ClusterError as exc:
            raise UsageError(f"%workers add: {exc}") from None
        print(f"added worker(s) {', '.join(map(str, ids))}")
        return StatusTable(cluster.status())

    def _workers_remove(self, numbers: list[str], args: argparse.Namespace) -> Any:
        cluster = self._cluster()
        ids = self._ids(numbers, "remove")
        if not ids:
            raise UsageError("%workers remove: name the workers to remove: %workers remove ID [ID ...]")
        try:
            lost = cluster.remove(ids)
        except ClusterError as exc:
            raise UsageError(f"%workers remove: {exc}") from None
        print(f"removed worker(s) {', '.join(map(str, ids))}"
              + (f"; lost with them (held nowhere else): {', '.join(lost)}" if lost else ""))
        return StatusTable(cluster.status())

    def _workers_status(self, numbers: list[str], args: argparse.Namespace) -> Any:
        if numbers:
            raise UsageError("%workers status takes no worker ids: it shows them all")
        return StatusTable(self._cluster().status())

    @staticmethod
    def _ids(words: list[str], action: str) -> list[int]:
        try:
            return [_worker_id(w) for w in words]
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"%workers {action}: {exc}") from None

    def _cluster(self) -> Cluster:
        if self.cluster is None or not self.cluster.running:
            raise UsageError("no workers are running: start them with %workers start N")
        return self.cluster

    # -- running code ---------------------------------------------------------------------------

    @magic_arguments("%worker")
    @_worker_ids("+", "the workers to run the cell on (each runs all of it)")
    @_block
    @cell_magic
    def worker(self, line: str, cell: str) -> None:
        """Run the cell on workers, in the background unless --block.

        The names the cell reads come from wherever their current values are (the
        kernel, another worker), after the tasks that make them; what it binds stays on
        the worker (see %pull). Its output streams into this cell.
        """
        args = _parse(self.worker, line)
        cluster = self._cluster()
        ids = list(dict.fromkeys(args.ids))
        sink = self._sink(args.block, prefix_lines=len(ids) > 1)
        try:
            handle = cluster.run(cell, on=ids, sink=sink, cell=self._cell_number(), want_result=False)
        except ClusterError as exc:
            raise UsageError(f"%%worker: {exc}") from None
        self._finish_cell(handle, sink, args.block, prefix_lines=len(ids) > 1)

    @magic_arguments("%parallel")
    @argument("--show", action="store_true", help="show each worker's program, with its sends and receives "
                                                  "(and, with --auto, the predicted makespan); run nothing")
    @_block
    @argument("--default", type=_worker_id, metavar="ID", help="the worker of untagged statements before the "
                                                               "first tag (otherwise they are setup lines)")
    @argument("--auto", action="store_true", help="place the statements with a list scheduler (tags pin theirs), "
                                                  "costed by earlier runs of the same statements")
    @argument("--workers", nargs="+", type=_worker_id, metavar="ID", help="with --auto: the workers to place on")
    @argument("--export", metavar="DIR", help="write one script per worker and a run.py that runs them "
                                              "outside Jupyter; run nothing")
    @cell_magic
    def parallel(self, line: str, cell: str) -> None:
        """Run each statement of the cell on the worker its '# @ID' tag names.

        A statement without a tag runs where the one before it ran; untagged statements
        before the first tag (imports, constants, defs) are setup, run on each worker that
        uses them. With --auto, no tags are needed. The variables the statements share
        move between the workers by themselves.
        """
        args = _parse(self.parallel, line)
        cluster = self._cluster()
        how = {"default": args.default, "auto": args.auto, "workers": args.workers}
        try:
            if args.default is not None:
                cluster.check_ids(args.default, allow_all=args.show)
            if args.export:
                written = cluster.export_parallel(cell, args.export, **how)
                print(f"wrote {', '.join(path.name for path in written)} to {written[-1].parent}\n"
                      f"run it outside Jupyter: python {written[-1]}")
                return
            if args.show:
                print(cluster.plan_parallel(cell, **how))
                return
            sink = self._sink(args.block, prefix_lines=True)
            handle = cluster.run_parallel(cell, **how, sink=sink, cell_number=self._cell_number())
        except (ClusterError, TagError, ExportError, SyntaxError, OSError) as exc:
            raise UsageError(f"%%parallel: {exc}") from None
        self._finish_cell(handle, sink, args.block, prefix_lines=True)

    def _cell_number(self) -> int:
        """The number of the cell running now (``running_cell_number``)."""
        count = running_cell_number(self.shell)
        return count if isinstance(count, int) else self.shell.execution_count

    def _sink(self, block: bool, prefix_lines: bool) -> Sink:
        if block:
            return QueueSink()
        if getattr(self.shell, "kernel", None) is not None:
            return CellOutput(prefix_lines, cell=running_cell_number(self.shell), spill_dir=self.cluster.runtime_dir,
                              show_state=True)
        return PrintSink()

    def _finish_cell(self, handle: Task | TaskGroup, sink: Sink, block: bool, prefix_lines: bool) -> None:
        if not block:
            self._unwaited.append(handle)
            if isinstance(sink, CellOutput):
                cluster = self.cluster
                sink.watch(_tasks(handle), waits=lambda task: celltasks.waits_for(cluster, task))
            return
        self._wait_showing(handle, sink, prefix_lines)
        error = _cell_error(_tasks(handle))
        if error is not None:
            raise error

    def _wait_showing(self, handle: Task | TaskGroup, sink: QueueSink | None = None,
                      prefix_lines: bool = False) -> None:
        """Wait in the kernel's main thread, showing output as it comes; the stop button
        stops the work (see ``_stop_button``). A ``--block`` cell's output is written as it
        comes (batched); the cells of the waited tasks that show their output as display
        outputs get their final state published from here, so it is part of this cell's
        execution for a headless runner."""
        while True:
            try:
                while not handle.done():
                    if sink is not None:
                        sink.drain(prefix_lines)
                    _wait_briefly(handle)
                break
            except KeyboardInterrupt:
                if self._stop_button(handle):
                    break
        if sink is not None:
            sink.drain(prefix_lines, final=True)
        for shown in {id(t.sink): t.sink for t in _tasks(handle) if isinstance(t.sink, CellOutput)}.values():
            shown.sync()

    def _stop_button(self, handle: Task | TaskGroup) -> bool:
        """The stop button, pressed while a cell waits for ``handle``: its tasks not yet
        running are cancelled, and the code running (or waiting for its inputs) is
        interrupted, waiting up to 2 s for it to stop. If it stopped, True: the cell ends
        now, with the tasks' own KeyboardInterrupt (``_cell_error``). If a worker did not
        stop, the cell ends with a KeyboardInterrupt that names it and how to restart it."""
        cluster = self.cluster
        if cluster is None or not cluster.running:
            raise KeyboardInterrupt
        pending = [t for t in _tasks(handle) if not t.done()]
        current = {row["id"]: row.get("task_id") for row in cluster.status()}
        running = sorted({t.worker for t in pending if current.get(t.worker) == t.id})
        for task in pending:
            if current.get(task.worker) != task.id:
                cluster.cancel(task)
        report = cluster.interrupt(running) if running else {}
        stuck = [_outcome_line(w, outcome) for w, outcome in sorted(report.items()) if outcome != "interrupted"]
        if stuck:
            raise KeyboardInterrupt("\n".join(stuck))
        return True

    @magic_arguments()
    @_worker_ids("*", "the workers to wait for (default: all)")
    @line_magic
    def wait(self, line: str) -> None:
        """Wait until the work on these workers ends; raise the first error of it.

        The stop button interrupts the code that runs and cancels what is queued behind it.
        """
        args = _parse(self.wait, line)
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
            print(f"{len(failed)} tasks failed; the first cause:", file=sys.stderr)
        error = _cell_error(group.tasks)
        if error is not None:
            raise error

    # -- moving variables --------------------------------------------------------------------------

    @magic_arguments()
    @_names("+", "kernel variables")
    @_to
    @line_magic
    def push(self, line: str) -> None:
        """Copy kernel variables to workers (they become the current values).

        Interrupted, a push cancels what has not gone out: each worker gets a whole value or none.
        """
        args = _parse(self.push, line)
        missing = [n for n in args.names if n not in self.shell.user_ns]
        if missing:
            raise UsageError(f"%push: name {missing[0]!r} is not defined in the kernel")
        self._call("push", lambda c: c.push({n: self.shell.user_ns[n] for n in args.names}, to=args.to))

    @magic_arguments()
    @_names("+", "variables on the workers")
    @_from(False, "the worker to copy them from (default: the one that made them, or any that holds them)")
    @line_magic
    def pull(self, line: str) -> None:
        """Bring variables into the kernel, once the tasks that make them have ended.

        Fails at once if the worker it pulls from dies.
        """
        args = _parse(self.pull, line)
        self._call("pull", lambda c: c.pull(args.names, frm=args.frm))

    @magic_arguments()
    @_names("+", "variables on the sending worker")
    @_from(True, "the worker that holds them")
    @_to
    @line_magic
    def send(self, line: str) -> None:
        """Copy variables from one worker to others, directly between them."""
        args = _parse(self.send, line)
        self._call("send", lambda c: c.send(args.names, frm=args.frm, to=args.to, block=True))

    @magic_arguments()
    @_names("*", "the variables to look up (default: every variable on the workers)")
    @line_magic
    def who_has(self, line: str) -> Any:
        """Which workers (and the kernel) hold each variable, its size, and the task that made it."""
        args = _parse(self.who_has, line)
        print(who_has_text(self._cluster().who_has(args.names or None), asked=bool(args.names)))

    @magic_arguments()
    @argument("--save", metavar="FILE", help="save it instead: FILE.html is a page, FILE.json a Chrome/Perfetto "
                                             "trace")
    @line_magic
    def timeline(self, line: str) -> Any:
        """Show the timeline of the tasks and transfers again, or save it."""
        args = _parse(self.timeline, line)
        cluster = self.cluster
        if cluster is None:
            raise UsageError("%timeline: nothing to show yet: start workers with %workers start N")
        from . import timeline

        model = timeline.TimelineModel.from_log(cluster.events)
        if args.save:
            try:
                kind = timeline.save(model, args.save)
            except (ValueError, OSError) as exc:
                raise UsageError(f"%timeline: {exc}") from None
            print(f"saved the timeline to {args.save} ({'Chrome/Perfetto trace' if kind == 'json' else 'HTML page'})")
            return None
        if self.dashboard is not None and _has_widget_frontend(self.shell):
            self.dashboard.show()
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


def _cell_error(tasks: list[Task]) -> BaseException | None:
    """The error a cell that waited for ``tasks`` ends with: the first that is a cause (an
    exception, an interrupt, a death) rather than a task cancelled because of another's;
    or, if the stop button left some cancelled but still queued behind other work on
    their worker, a KeyboardInterrupt that says so."""
    errors = [t.error for t in tasks if t.error is not None]
    error = next((e for e in errors if not isinstance(e, TaskCancelled)), errors[0] if errors else None)
    queued = [t for t in tasks if not t.done()]
    if error is None and queued:
        which = ", ".join(f"#{t.id} on worker {t.worker}" for t in queued)
        error = KeyboardInterrupt(f"cancelled task {which}: it will be skipped when its worker gets to it")
    return error


def _tasks(handle: Task | TaskGroup) -> list[Task]:
    return handle.tasks if isinstance(handle, TaskGroup) else [handle]


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
        _magics._workers_stop(quiet=True)
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
