"""How worker processes start. Local processes for now; a remote launcher later
only has to provide the same ``launch`` and the process-like handle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class WorkerProcess:
    worker_id: int
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def exit_description(self) -> str:
        code = self.popen.returncode
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"signal {signal.Signals(-code).name}"
            except ValueError:
                return f"signal {-code}"
        return f"exit code {code}"

    def signal_group(self, sig: int) -> None:
        """Signal the worker's process group: its own subprocesses go too."""
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self, grace: float = 1.0) -> None:
        """SIGTERM, then SIGKILL what ignores it; always reaps, always clears the group."""
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            if self.wait(grace) is None:
                self.signal_group(signal.SIGKILL)
                self.popen.wait()
        self.signal_group(signal.SIGKILL)


class LocalLauncher:
    """Starts ``python -m ipyworkers.worker`` as a child of this process, in its own session."""

    def __init__(self, python: str | None = None, env: dict[str, str] | None = None):
        self.python = python or sys.executable
        self.env = env or {}

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
