"""Workers placed by Slurm: ``srun`` inside an allocation, else a batch job (``sbatch``)
whose script runs ``srun``. Each task is a worker whose id is the first id plus its
``SLURM_PROCID``; the workers connect back to the kernel over TLS.

The credentials (0600) and a batch job's script and output live in ``shared_dir``
(default ``~/.ipyworkers``), which the compute nodes must see, as they see the home
directory on most clusters. ``stop`` ends ``srun`` (and so its step), or ``scancel``s
the job.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .base import Batch, LaunchContext, Launcher, WorkerProcess, describe_code, parent_death_signal
from .mpi import runs

POLL_SECONDS = 2.0


class Slurm(Launcher):
    name = "slurm"

    def __init__(self, *, args: list[str] | None = None, mode: str = "auto", python: str | None = None,
                 srun: str = "srun", sbatch: str = "sbatch", squeue: str = "squeue", scancel: str = "scancel",
                 **options: Any):
        super().__init__(python=python or sys.executable, **options)
        if mode not in ("auto", "srun", "sbatch"):
            raise ValueError(f"Slurm mode must be 'auto', 'srun' or 'sbatch', not {mode!r}")
        self.args = list(args or [])
        self.mode = mode
        self.srun, self.sbatch, self.squeue, self.scancel = srun, sbatch, squeue, scancel

    def use_srun(self) -> bool:
        return self.mode == "srun" or (self.mode == "auto" and "SLURM_JOB_ID" in os.environ)

    def start(self, ids: list[int], ctx: LaunchContext, started: dict[int, Any]) -> None:
        for block in runs(ids):
            command = self.worker_command(ctx, ctx.credentials_file(), ids=f"--first-id {block[0]}")
            if self.env:
                command = ["env", *(f"{k}={v}" for k, v in self.env.items()), *command]
            srun = [self.srun, "--ntasks", str(len(block)), "--kill-on-bad-exit=0"]
            if self.use_srun():
                process = self._srun(ctx, block, srun + self.args + command)
            else:
                process = self._submit(ctx, block, srun + command)
            started.update(Batch(process, block, ctx.token, host=process.host).members())

    def _srun(self, ctx: LaunchContext, block: list[int], argv: list[str]) -> WorkerProcess:
        log_path = ctx.runtime_dir / f"srun-{block[0]}-{time.monotonic_ns()}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, close_fds=True, preexec_fn=parent_death_signal())
        return SrunProcess(block[0], popen, log_path, host="srun")

    def _submit(self, ctx: LaunchContext, block: list[int], srun: list[str]) -> BatchJob:
        folder = Path(ctx.credentials_file()).parent
        stem = f"{Path(ctx.credentials_file()).stem}-{block[0]}"
        script = folder / f"{stem}.sh"
        output = folder / f"{stem}.out"
        script.write_text("#!/bin/sh\n"
                          f"#SBATCH --ntasks={len(block)}\n#SBATCH --job-name=ipyworkers\n"
                          f"#SBATCH --output={output}\n"
                          f"exec {shlex.join(srun)}\n")
        result = subprocess.run([self.sbatch, "--parsable", *self.args, str(script)], capture_output=True,
                                text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"sbatch failed ({describe_code(result.returncode)}): "
                               f"{(result.stderr or result.stdout).strip()}")
        job = result.stdout.strip().split(";")[0]
        return BatchJob(self, job, output, [script, output])


class SrunProcess(WorkerProcess):
    def terminate(self, grace: float = 1.0) -> None:
        """srun ends its step on SIGINT (twice: the first only reports)."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGINT)
                time.sleep(0.1)
                self.popen.send_signal(signal.SIGINT)
            except OSError:
                pass
            self.wait(grace)
        super().terminate(grace)


class BatchJob:
    """A Slurm job as a process: polled through ``squeue``, stopped with ``scancel``."""

    def __init__(self, launcher: Slurm, job: str, output: Path, files: list[Path]):
        self.launcher = launcher
        self.job = job
        self.output = output
        self.files = files
        self.pid = 0
        self.host = f"slurm job {job}"
        self._checked = 0.0
        self._state = "PENDING"
        self._reason = ""
        self.returncode: int | None = None

    def _refresh(self) -> None:
        if self.returncode is not None or time.monotonic() - self._checked < POLL_SECONDS:
            return
        self._checked = time.monotonic()
        try:
            result = subprocess.run([self.launcher.squeue, "-h", "-j", self.job, "-o", "%T|%r"],
                                    capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return
        line = result.stdout.strip()
        if result.returncode == 0 and line:
            self._state, _, self._reason = line.partition("|")
        elif result.returncode == 0 or "Invalid job id" in result.stderr:
            self._state, self.returncode = "ENDED", 0

    def poll(self) -> int | None:
        self._refresh()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.1)
        return self.returncode

    def log_tail(self, lines: int = 20) -> str:
        self._refresh()
        head = f"job {self.job}: {self._state}" + (f" ({self._reason})" if self._reason not in ("", "None") else "")
        try:
            text = self.output.read_text(errors="replace")
        except OSError:
            text = ""
        return "\n".join([head, *text.splitlines()[-lines:]])

    def exit_description(self) -> str:
        return f"job {self.job} {self._state.lower()}"

    def signal_group(self, sig: int) -> None:
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.terminate(0)

    def terminate(self, grace: float = 1.0) -> None:
        if self.returncode is None:
            try:
                subprocess.run([self.launcher.scancel, self.job], capture_output=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self.returncode = -signal.SIGTERM
        for path in self.files:
            try:
                path.unlink()
            except OSError:
                pass
