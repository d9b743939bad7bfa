"""Workers that join by themselves: the kernel prints a command, anyone with the
credentials file runs it on any host that reaches this one."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import Any

from .base import JoinSlot, LaunchContext, Launcher


class Join(Launcher):
    """Wait for workers started by hand with::

        python -m ipyworkers.worker --connect tls://HOST:PORT --credentials FILE

    ``FILE`` (0600, on this host) holds the session key and certificates: copy it to the
    other host first if it does not share this file system. The command line holds no
    secret. ``announce`` is called with the command once it is known (default: print it).
    """

    name = "join"

    def __init__(self, *, listen: str | None = None, advertise: str | None = None, insecure: bool = False,
                 announce: Callable[[str], Any] | None = None, python: str = "python"):
        super().__init__(python=python, listen=listen, advertise=advertise, insecure=insecure)
        self.announce = announce if announce is not None else _print
        self.command: str | None = None

    def command_for(self, ctx: LaunchContext) -> str:
        argv = [self.python, "-m", "ipyworkers.worker", "--connect", ctx.connect_address(),
                "--credentials", ctx.credentials_file()]
        return shlex.join(argv)

    def start(self, ids: list[int], ctx: LaunchContext, started: dict[int, Any]) -> None:
        self.command = self.command_for(ctx)
        for wid in ids:
            started[wid] = JoinSlot(wid, listener_address=ctx.connect_address())
        self.announce(self.command)


def _print(command: str) -> None:
    print(f"Run on each host that is to join (the credentials file must be there too):\n  {command}",
          file=sys.stdout, flush=True)
