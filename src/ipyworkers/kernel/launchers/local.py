"""Local workers: children of the kernel, over Unix sockets (the default)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .base import LaunchContext, WorkerProcess


class LocalLauncher:
    """Starts ``python -m ipyworkers.worker`` as a child of this process, in its own session;
    it connects over a Unix socket and gets the key on its stdin."""

    remote = False
    name = "local"
    listen = advertise = None
    insecure = False

    def __init__(self, python: str | None = None, env: dict[str, str] | None = None):
        self.python = python or sys.executable
        self.env = env or {}

    def start(self, ids: list[int], ctx: LaunchContext, started: dict[int, Any]) -> None:
        for wid in ids:
            started[wid] = self.launch(wid, ctx.n_workers, ctx.address, ctx.key, ctx.runtime_dir, ctx.colors)

    def launch(self, worker_id: int, n_workers: int, address: str, key: bytes,
               runtime_dir: Path, colors: str = "nocolor") -> WorkerProcess:
        log_path = runtime_dir / f"worker-{worker_id}-{time.monotonic_ns()}.log"
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": _import_path()}
        env.pop("IPYWORKERS_KEY", None)
        cmd = [
            self.python, "-m", "ipyworkers.worker",
            "--id", str(worker_id), "--n-workers", str(n_workers),
            "--connect", address, "--runtime-dir", str(runtime_dir),
            "--parent-pid", str(os.getpid()), "--colors", colors,
        ]
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                env=env, start_new_session=True, close_fds=True,
            )
        try:
            popen.stdin.write(key.hex().encode() + b"\n")
            popen.stdin.close()
        except OSError:
            pass
        return WorkerProcess(worker_id, popen, log_path)


def _import_path() -> str:
    """The coordinator's own ``sys.path``, so that whatever the kernel can import (a module
    beside the notebook, a path the user added) the workers can too, and a function sent
    by reference unpickles there."""
    return os.pathsep.join(os.getcwd() if entry == "" else entry for entry in sys.path)
