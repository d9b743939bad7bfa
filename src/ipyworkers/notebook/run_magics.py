"""The magics that run code on the workers, and wait for it: ``%%worker``,
``%%parallel`` and ``%wait``."""

from __future__ import annotations

import sys

from IPython.core.error import UsageError
from IPython.core.magic import cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..errors import ClusterError, TagError
from ..kernel import celltasks
from ..kernel.sinks import PrintSink, Sink
from ..kernel.tasks import Task, TaskGroup
from ..plan.export import ExportError
from .arguments import block, parse, worker_id, worker_ids
from .blocked import QueueSink
from .outputs import CellOutput, running_cell_number
from .session import MagicsSession
from .waiting import cell_error, tasks_of, wait_showing


@magics_class
class RunMagics(MagicsSession):
    """``%%worker``, ``%%parallel`` and ``%wait``."""


    @magic_arguments("%worker")
    @worker_ids("+", "the workers to run the cell on (each runs all of it)")
    @block
    @cell_magic
    def worker(self, line: str, cell: str) -> None:
        """Run the cell on workers, in the background unless --block.

        The names the cell reads come from wherever their current values are (the
        kernel, another worker), after the tasks that make them; what it binds stays on
        the worker (see %pull). Its output streams into this cell.
        """
        args = parse(self.worker, line)
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
    @block
    @argument("--default", type=worker_id, metavar="ID", help="the worker of untagged statements before the "
                                                               "first tag (otherwise they are setup lines)")
    @argument("--auto", action="store_true", help="place the statements with a list scheduler (tags pin theirs), "
                                                  "costed by earlier runs of the same statements")
    @argument("--workers", nargs="+", type=worker_id, metavar="ID", help="with --auto: the workers to place on")
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
        args = parse(self.parallel, line)
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
                sink.watch(tasks_of(handle), waits=lambda task: celltasks.waits_for(cluster, task))
            return
        wait_showing(self.cluster, handle, sink, prefix_lines)
        error = cell_error(tasks_of(handle))
        if error is not None:
            raise error

    @magic_arguments()
    @worker_ids("*", "the workers to wait for (default: all)")
    @line_magic
    def wait(self, line: str) -> None:
        """Wait until the work on these workers ends; raise the first error of it.

        The stop button interrupts the code that runs and cancels what is queued behind it.
        """
        args = parse(self.wait, line)
        cluster = self._cluster()
        try:
            ids = cluster.check_ids(args.ids or None)
        except ClusterError as exc:
            raise UsageError(f"%wait: {exc}") from None
        tasks = {t.id: t for t in cluster.unfinished(ids)}
        tasks.update({t.id: t for h in self._unwaited for t in tasks_of(h) if t.worker in ids})
        self._unwaited = [h for h in self._unwaited if any(t.id not in tasks for t in tasks_of(h))]
        group = TaskGroup(sorted(tasks.values(), key=lambda t: t.id))
        wait_showing(cluster, group)
        failed = [t for t in group if t.error is not None]
        if len(failed) > 1:
            print(f"{len(failed)} tasks failed; the first cause:", file=sys.stderr)
        error = cell_error(group.tasks)
        if error is not None:
            raise error
