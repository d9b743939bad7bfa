"""Workers placed by ``mpiexec`` (MPICH's Hydra, from the ``mpich`` package on PyPI):
each rank is a worker whose id is its rank plus the first id; the data moves over the
workers' own links, not MPI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from ipyworkers import Cluster
from ipyworkers.kernel.launchers import MPI
from ipyworkers.kernel.sinks import RecordingSink

MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="mpiexec is not installed (pip install mpich: the test extra)")
PY = sys.executable


def launcher(**options) -> MPI:
    return MPI(mpiexec=MPIEXEC, listen="127.0.0.1:0", **options)


def _ranks_running() -> list[psutil.Process]:
    me = psutil.Process()
    return [p for p in me.children(recursive=True) if "ipyworkers.worker" in " ".join(p.cmdline())]


def test_mpiexec_ranks_become_workers_and_values_move_between_them():
    with Cluster(3, launcher=launcher(), default_sink=RecordingSink()) as cluster:
        assert cluster.member_ids == [1, 2, 3]
        assert [r["launcher"] for r in cluster.status()] == ["mpi"] * 3
        ranks = cluster.run("import os\nint(os.environ['PMI_RANK'])", on=[1, 2, 3], block=True).result
        assert ranks == {1: 0, 2: 1, 3: 2}
        cluster.run("x = bytes(5_000_000)", on=1, block=True)
        assert cluster.run("len(x)", on=3, block=True).result == 5_000_000
        assert cluster._supervisor.row(3)["address"].startswith("tls://127.0.0.1:")


def test_removing_one_rank_keeps_the_others_and_stop_ends_mpiexec():
    with Cluster(3, launcher=launcher(), default_sink=RecordingSink()) as cluster:
        mpiexec = psutil.Process(cluster._supervisor.handles[1].process.pid)
        assert "mpiexec" in " ".join(mpiexec.cmdline())
        cluster.remove([2])
        assert cluster.run("worker_id", on=[1, 3], block=True).result == {1: 1, 3: 3}
        assert mpiexec.is_running()
        added = cluster.add(2)
        assert added == [4, 5] and cluster.run("worker_id", on=5, block=True).result == 5
        assert cluster.run("n_workers", on=1, block=True).result == 5, "the highest id, on every worker"
    assert not mpiexec.is_running() or mpiexec.status() == psutil.STATUS_ZOMBIE
    assert _ranks_running() == []


def test_kernel_sigkill_ends_mpiexec_and_its_ranks_within_2_s():
    script = textwrap.dedent(f"""
        import time
        from ipyworkers import Cluster
        from ipyworkers.kernel.launchers import MPI
        c = Cluster(2, launcher=MPI(mpiexec={MPIEXEC!r}, listen="127.0.0.1:0"))
        c.start()
        print("READY", flush=True)
        time.sleep(300)
    """)
    kernel = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert kernel.stdout.readline().startswith("READY")
        tree = psutil.Process(kernel.pid).children(recursive=True)
        assert any("mpiexec" in " ".join(p.cmdline()) for p in tree)
        kernel.send_signal(signal.SIGKILL)
        gone, alive = psutil.wait_procs(tree, timeout=2.0)
        assert not alive, f"still running 2 s after the kernel was killed: {[p.cmdline() for p in alive]}"
    finally:
        kernel.kill()
        kernel.wait()
        kernel.stdout.close()
    time.sleep(0.1)
