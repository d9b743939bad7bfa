"""The magics that move variables, and say where they are: ``%push``, ``%pull``,
``%send`` and ``%who_has``."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import magic_arguments

from ..errors import ClusterError
from .arguments import from_, names, parse, to
from .session import MagicsSession
from .tables import who_has_text


@magics_class
class MoveMagics(MagicsSession):
    """``%push``, ``%pull``, ``%send`` and ``%who_has``."""

    @magic_arguments()
    @names("+", "kernel variables")
    @to
    @line_magic
    def push(self, line: str) -> None:
        """Copy kernel variables to workers (they become the current values).

        Interrupted, a push cancels what has not gone out: each worker gets a whole value or none.
        """
        args = parse(self.push, line)
        missing = [n for n in args.names if n not in self.shell.user_ns]
        if missing:
            raise UsageError(f"%push: name {missing[0]!r} is not defined in the kernel")
        self._call("push", lambda c: c.push({n: self.shell.user_ns[n] for n in args.names}, to=args.to))

    @magic_arguments()
    @names("+", "variables on the workers")
    @from_(False, "the worker to copy them from (default: the one that made them, or any that holds them)")
    @line_magic
    def pull(self, line: str) -> None:
        """Bring variables into the kernel, once the tasks that make them have ended.

        Fails at once if the worker it pulls from dies.
        """
        args = parse(self.pull, line)
        self._call("pull", lambda c: c.pull(args.names, frm=args.frm))

    @magic_arguments()
    @names("+", "variables on the sending worker")
    @from_(True, "the worker that holds them")
    @to
    @line_magic
    def send(self, line: str) -> None:
        """Copy variables from one worker to others, directly between them."""
        args = parse(self.send, line)
        self._call("send", lambda c: c.send(args.names, frm=args.frm, to=args.to, block=True))

    @magic_arguments()
    @names("*", "the variables to look up (default: every variable on the workers)")
    @line_magic
    def who_has(self, line: str) -> Any:
        """Which workers (and the kernel) hold each variable, its size, and the task that made it."""
        args = parse(self.who_has, line)
        print(who_has_text(self._cluster().who_has(args.names or None), asked=bool(args.names)))

    def _call(self, verb: str, action) -> Any:
        cluster = self._cluster()
        try:
            return action(cluster)
        except ClusterError as exc:
            raise UsageError(f"%{verb}: {exc}") from None
