"""How workers start: here, over SSH, under Slurm or MPI, or by joining.

Each launcher only *places* worker processes (with the engine a site already runs);
the workers then connect back to the kernel over their own links, and move data
directly to each other.
"""

from .base import Batch, BatchMember, JoinSlot, LaunchContext, Launcher, WorkerProcess
from .join import Join
from .local import LocalLauncher
from .mpi import MPI
from .slurm import Slurm
from .ssh import SSH

__all__ = ["Batch", "BatchMember", "Join", "JoinSlot", "LaunchContext", "Launcher", "LocalLauncher", "MPI",
           "SSH", "Slurm", "WorkerProcess"]
