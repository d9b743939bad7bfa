"""Workers on other hosts through the user's own ``ssh`` (its config, keys and agent).

One ``ssh`` client per worker, run from here: the credentials go through its stdin,
never its command line, and the remote worker connects back over TLS. The worker's life
is its control link; the ``ssh`` client ends with it (and is killed on ``stop``).
"""

from __future__ import annotations

import shlex
import subprocess
import time
from typing import Any

from .base import LaunchContext, Launcher, WorkerProcess, parent_death_signal


def spread(ids: list[int], hosts: list[str]) -> list[tuple[int, str]]:
    """Blocks of consecutive ids per host, as even as they can be: 4 on 2 hosts, 2 each."""
    plan = []
    per, extra = divmod(len(ids), len(hosts))
    i = 0
    for index, host in enumerate(hosts):
        count = per + (1 if index < extra else 0)
        plan += [(wid, host) for wid in ids[i:i + count]]
        i += count
    return plan


class SSH(Launcher):
    name = "ssh"

    def __init__(self, hosts: list[str] | str, *, python: str = "python3", ssh: str = "ssh",
                 ssh_args: list[str] | None = None, connect_timeout: int = 10, **options: Any):
        super().__init__(python=python, **options)
        self.hosts = [h.strip() for h in (hosts.split(",") if isinstance(hosts, str) else hosts) if h.strip()]
        if not self.hosts:
            raise ValueError("SSH needs at least one host")
        self.ssh = ssh
        self.ssh_args = list(ssh_args or [])
        self.connect_timeout = connect_timeout

    def start(self, ids: list[int], ctx: LaunchContext, started: dict[int, Any]) -> None:
        secret = ctx.credentials.dumps().encode()
        for wid, host in spread(ids, self.hosts):
            command = self.worker_command(ctx, "-", host=_host_of(host), ids=f"--id {wid}")
            if self.env:
                command = ["env", *(f"{k}={v}" for k, v in self.env.items()), *command]
            argv = [self.ssh, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                    *self.ssh_args, host, "--", shlex.join(command)]
            log_path = ctx.runtime_dir / f"ssh-{wid}-{time.monotonic_ns()}.log"
            with open(log_path, "wb") as log:
                popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, close_fds=True,
                                         preexec_fn=parent_death_signal())
            started[wid] = WorkerProcess(wid, popen, log_path, token=ctx.token, host=host)
            try:
                popen.stdin.write(secret)
                popen.stdin.close()
            except OSError:
                pass


def _host_of(destination: str) -> str:
    """``user@host`` -> ``host`` (the address toward it picks the interface to hand out)."""
    return destination.rsplit("@", 1)[-1]
