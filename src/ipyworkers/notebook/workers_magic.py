"""``%workers`` (start, stop, restart, interrupt, cancel, add, remove, status) and
``%timeline``: the cluster's life, and what it shows of itself."""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import argument, kwds, magic_arguments

from ..errors import ClusterError
from ..kernel.cluster import Cluster, max_workers
from . import remote
from .arguments import WORKERS_ACTIONS, ids_of, parse, workers_action
from .session import MagicsSession, has_widget_frontend
from .tables import StatusTable
from .waiting import outcome_line

_IPYTHON_CACHE_NAME = re.compile(r"^_(i{0,3}|_{0,2})\d*$|^_(ih|oh|dh|ii+)$")


@magics_class
class WorkersMagic(MagicsSession):
    """``%workers`` and ``%timeline``."""

    @magic_arguments()
    @kwds(usage="%(prog)s start [N] [--force] [--ssh HOSTS | --slurm | --mpi | --join] [-- ARGS]\n"
                "  %%%(prog)s add N [--ssh HOSTS | --slurm | --mpi | --join] [-- ARGS]\n"
                "  %%%(prog)s remove ID [ID ...]\n  %%%(prog)s stop\n  %%%(prog)s restart [ID ...]\n"
                "  %%%(prog)s interrupt [ID ...]\n  %%%(prog)s cancel In[N]|#TASK ...\n  %%%(prog)s status")
    @argument("action", type=workers_action, help=" | ".join(WORKERS_ACTIONS))
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
        args = parse(self.workers, line)
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
        if not has_widget_frontend(self.shell):
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
            ids = cluster.check_ids(ids_of(numbers, "restart") or None)
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
            report = cluster.interrupt(ids_of(numbers, "interrupt") or None)
        except ClusterError as exc:
            raise UsageError(f"%workers interrupt: {exc}") from None
        if not report:
            print("no worker was busy")
        for wid, outcome in sorted(report.items()):
            print(outcome_line(wid, outcome))

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
        ids = ids_of(numbers, "remove")
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

    @magic_arguments()
    @argument("--save", metavar="FILE", help="save it instead: FILE.html is a page, FILE.json a Chrome/Perfetto "
                                             "trace")
    @line_magic
    def timeline(self, line: str) -> Any:
        """Show the timeline of the tasks and transfers again, or save it."""
        args = parse(self.timeline, line)
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
        if self.dashboard is not None and has_widget_frontend(self.shell):
            self.dashboard.show()
            return None
        print(timeline.render_text(model))
        return None


class _HiddenNames:
    """Kernel names that are IPython's own, never user variables to ship."""

    def __init__(self, shell: Any):
        self.shell = shell

    def __contains__(self, name: str) -> bool:
        return name in self.shell.user_ns_hidden or bool(_IPYTHON_CACHE_NAME.match(name))


def _colors(shell: Any) -> str:
    colors = str(getattr(shell, "colors", "nocolor") or "nocolor").lower()
    return "linux" if getattr(shell, "kernel", None) is not None and colors == "nocolor" else colors
