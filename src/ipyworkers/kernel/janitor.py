"""A tiny process that cleans up after a kernel that was killed.

Local workers' group guards remove the runtime directory when the kernel dies without
stopping; a cluster whose workers are all elsewhere has no such guard, and may have
left credential files (0600) for workers to read. So the supervisor starts this, with
the parent-death signal set: when the kernel dies, however, it removes the runtime
directory and every file listed in ``RUNTIME_DIR/cleanup``. ``stop`` ends it with
SIGTERM, which does the same (by then, nothing is left to do). It imports nothing of
ipyworkers, so it starts in a few milliseconds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .launchers.base import parent_death_signal

CODE = r"""
import os, shutil, signal, sys
runtime, kernel = sys.argv[1], int(sys.argv[2])
def clean(*_):
    try:
        with open(os.path.join(runtime, "cleanup")) as listed:
            for line in listed.read().splitlines():
                try:
                    os.unlink(line)
                except OSError:
                    pass
    except OSError:
        pass
    shutil.rmtree(runtime, ignore_errors=True)
    os._exit(0)
signal.signal(signal.SIGTERM, clean)
signal.signal(signal.SIGINT, signal.SIG_IGN)
if os.getppid() != kernel:
    clean()
while True:
    signal.pause()
"""


def start(runtime_dir: Path, kernel_pid: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-S", "-c", CODE, str(runtime_dir), str(kernel_pid)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True, preexec_fn=parent_death_signal())


def stop(process: subprocess.Popen | None) -> None:
    if process is None:
        return
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(2)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
