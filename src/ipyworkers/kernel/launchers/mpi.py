"""Workers placed by ``mpiexec``: one ``mpiexec -n N`` runs N workers, each taking its id
from its rank. The workers do not use MPI for data: they connect back to the kernel and
to each other over their own links. The credentials are a 0600 file that the ranks
read (on a shared file system, or the same machine)."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from .base import Batch, LaunchContext, Launcher, WorkerProcess, find_tool, parent_death_signal


def runs(ids: list[int]) -> list[list[int]]:
    """Consecutive runs: [1, 2, 3, 7] -> [[1, 2, 3], [7]] (a rank maps to first + rank)."""
    out: list[list[int]] = []
    for wid in ids:
        if out and wid == out[-1][-1] + 1:
            out[-1].append(wid)
        else:
            out.append([wid])
    return out


class MPI(Launcher):
    name = "mpi"

    def __init__(self, *, mpiexec: str | None = None, args: list[str] | None = None, python: str | None = None,
                 **options: Any):
        super().__init__(python=python or sys.executable, **options)
        self.mpiexec = mpiexec or find_tool("mpiexec")
        self.args = list(args or [])
        self._hydra: bool | None = None

    def hydra_args(self) -> list[str]:
        """MPICH's Hydra kills every rank when one dies; workers come and go one by one
        (``remove``, a crash), so ask it not to."""
        if self._hydra is None:
            try:
                out = subprocess.run([self.mpiexec, "--version"], capture_output=True, text=True, timeout=10)
                self._hydra = "HYDRA" in out.stdout + out.stderr
            except (OSError, subprocess.TimeoutExpired):
                self._hydra = False
        return ["-disable-auto-cleanup"] if self._hydra else []

    def env_args(self) -> list[str]:
        out: list[str] = []
        for key, value in self.env.items():
            out += ["-genv", key, value]
        return out

    def start(self, ids: list[int], ctx: LaunchContext, started: dict[int, Any]) -> None:
        for block in runs(ids):
            command = self.worker_command(ctx, ctx.credentials_file(), ids=f"--first-id {block[0]}")
            argv = [self.mpiexec, "-n", str(len(block)), *self.hydra_args(), *self.env_args(), *self.args, *command]
            log_path = ctx.runtime_dir / f"mpiexec-{block[0]}-{time.monotonic_ns()}.log"
            with open(log_path, "wb") as log:
                popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, close_fds=True,
                                         preexec_fn=parent_death_signal())
            process = WorkerProcess(block[0], popen, log_path, host="mpiexec")
            started.update(Batch(process, block, ctx.token, host="mpiexec").members())
