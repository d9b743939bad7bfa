"""Workers placed by Slurm, on a real single-node Slurm (Debian's ``slurm-wlm``) with
munge, started by this test in a temporary directory (its own ports, socket and state;
``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``).

Opt-in, as it needs root, ``apt-get install slurm-wlm munge`` and ~20 s:

    IPYWORKERS_TEST_SLURM=1 PYTHONPATH=$PWD/src .venv/bin/python -m pytest tests/test_slurm.py
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import textwrap
import time

import pytest

from ipyworkers import Cluster
from ipyworkers.errors import WorkerStartError
from ipyworkers.kernel.launchers import Slurm
from ipyworkers.kernel.sinks import RecordingSink

TOOLS = ("munged", "slurmctld", "slurmd", "srun", "sbatch", "squeue", "scancel")
MISSING = [t for t in TOOLS if shutil.which(t) is None and not os.path.exists(f"/usr/sbin/{t}")]
pytestmark = [
    pytest.mark.skipif(os.environ.get("IPYWORKERS_TEST_SLURM") != "1",
                       reason="Slurm tests are opt-in: IPYWORKERS_TEST_SLURM=1 (root, slurm-wlm and munge)"),
    pytest.mark.skipif(bool(MISSING), reason=f"not installed: {', '.join(MISSING)} (apt-get install slurm-wlm munge)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the test runs slurmd, which needs root"),
]


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MiniSlurm:
    def __init__(self, folder: str):
        self.folder = folder
        self.node = socket.gethostname().split(".")[0]
        self.conf = os.path.join(folder, "slurm.conf")
        self.munge_socket = os.path.join(folder, "munge.sock")
        self.daemons: list[subprocess.Popen] = []
        self.env = {**os.environ, "SLURM_CONF": self.conf}
        self.env.pop("SLURM_JOB_ID", None)

    def start(self) -> None:
        f = self.folder
        for sub in ("state", "spool"):
            os.makedirs(os.path.join(f, sub), exist_ok=True)
        key = os.path.join(f, "munge.key")
        with open(key, "wb") as out:
            out.write(os.urandom(1024))
        os.chmod(key, 0o400)
        self._daemon([_tool("munged"), "-F", "--force", f"--key-file={key}", f"--socket={self.munge_socket}",
                      f"--pid-file={f}/munged.pid", f"--seed-file={f}/munged.seed", f"--log-file={f}/munged.log"])
        self._wait(lambda: os.path.exists(self.munge_socket), "munged")
        with open(self.conf, "w") as out:
            out.write(textwrap.dedent(f"""\
                ClusterName=iwtest
                SlurmctldHost={self.node}(127.0.0.1)
                SlurmctldPort={_free_port()}
                SlurmdPort={_free_port()}
                SlurmUser=root
                SlurmdUser=root
                AuthType=auth/munge
                AuthInfo=socket={self.munge_socket}
                CredType=cred/munge
                ProctrackType=proctrack/linuxproc
                TaskPlugin=task/none
                JobAcctGatherType=jobacct_gather/none
                AccountingStorageType=accounting_storage/none
                JobCompType=jobcomp/none
                MpiDefault=none
                SchedulerType=sched/backfill
                SelectType=select/cons_tres
                SelectTypeParameters=CR_CPU
                SlurmdParameters=config_overrides
                ReturnToService=2
                StateSaveLocation={f}/state
                SlurmdSpoolDir={f}/spool
                SlurmctldPidFile={f}/slurmctld.pid
                SlurmdPidFile={f}/slurmd.pid
                SlurmctldLogFile={f}/slurmctld.log
                SlurmdLogFile={f}/slurmd.log
                NodeName={self.node} NodeAddr=127.0.0.1 CPUs=8 State=UNKNOWN
                PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
                """))
        self._daemon([_tool("slurmctld"), "-D", "-i", "-f", self.conf])
        self._daemon([_tool("slurmd"), "-D", "-f", self.conf])
        self._wait(self._node_idle, "the Slurm node")

    def _daemon(self, argv: list[str]) -> None:
        self.daemons.append(subprocess.Popen(argv, env=self.env, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL, start_new_session=True))

    def _node_idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True, timeout=10)
        return out.stdout.strip().startswith("idle")

    def _wait(self, ready, what: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.2)
        logs = "".join(open(os.path.join(self.folder, n), errors="replace").read()[-1500:]
                       for n in ("slurmctld.log", "slurmd.log") if os.path.exists(os.path.join(self.folder, n)))
        raise RuntimeError(f"{what} did not come up in {seconds} s:\n{logs}")

    def jobs(self) -> str:
        return subprocess.run(["squeue", "-h"], env=self.env, capture_output=True, text=True, timeout=10).stdout

    def stop(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.terminate()
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    mini = MiniSlurm(str(tmp_path_factory.mktemp("slurm")))
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = mini.conf
    try:
        mini.start()
        yield mini
    finally:
        mini.stop()
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved


def _wait_no_jobs(slurm: MiniSlurm, seconds: float = 10) -> str:
    deadline = time.monotonic() + seconds
    while slurm.jobs().strip() and time.monotonic() < deadline:
        time.sleep(0.2)
    return slurm.jobs().strip()


def test_srun_tasks_become_workers(slurm):
    with Cluster(3, launcher=Slurm(mode="srun", listen="127.0.0.1:0"), default_sink=RecordingSink()) as cluster:
        procids = cluster.run("import os\nint(os.environ['SLURM_PROCID'])", on=[1, 2, 3], block=True).result
        assert procids == {1: 0, 2: 1, 3: 2}
        cluster.run("x = bytes(3_000_000)", on=1, block=True)
        assert cluster.run("len(x)", on=3, block=True).result == 3_000_000
        assert [r["launcher"] for r in cluster.status()] == ["slurm"] * 3
    assert _wait_no_jobs(slurm) == ""


def test_sbatch_job_becomes_workers_and_stop_cancels_it(slurm):
    with Cluster(2, launcher=Slurm(mode="sbatch", listen="127.0.0.1:0"), default_sink=RecordingSink()) as cluster:
        assert cluster.run("import os\nos.environ['SLURM_JOB_ID']", on=2, block=True).result
        assert slurm.jobs().strip(), "the batch job should be running"
    assert _wait_no_jobs(slurm) == ""


def test_a_job_that_never_starts_fails_start_and_is_cancelled(slurm):
    launcher = Slurm(mode="sbatch", args=["--begin=now+3600"], listen="127.0.0.1:0")
    cluster = Cluster(1, launcher=launcher, startup_timeout=5)
    with pytest.raises(WorkerStartError, match=r"job \d+: PENDING \(BeginTime\)"):
        cluster.start()
    assert _wait_no_jobs(slurm) == ""
