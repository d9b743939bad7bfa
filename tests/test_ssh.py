"""Workers started over SSH, on real parts: Debian's sshd, run by the test in each of
three network-namespace hosts (``netns.py``) with a temporary host key and an
authorized key, and the ``ssh`` client driven by ``ipyworkers.kernel.launchers.SSH``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import netns
from ipyworkers import Cluster
from ipyworkers.errors import WorkerStartError
from ipyworkers.kernel.launchers import SSH
from ipyworkers.kernel.sinks import RecordingSink

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
WHY_NOT = netns.available() or (None if SSHD and shutil.which("ssh") and shutil.which("ssh-keygen") else
                                "openssh-server is not installed (make test installs it when root)")
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"no SSH test hosts: {WHY_NOT}")
PY = sys.executable
SRC = os.path.dirname(os.path.dirname(os.path.abspath(__import__("ipyworkers").__file__)))


class SSHHosts:
    """sshd in each namespace host, and the client options that reach them."""

    def __init__(self, hosts: netns.Hosts, folder: str):
        self.hosts = hosts
        self.folder = folder
        self.daemons: dict[int, subprocess.Popen] = {}
        key = os.path.join(folder, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(folder, "host_key")],
                       check=True)
        shutil.copy(key + ".pub", os.path.join(folder, "authorized_keys"))
        self.ssh_args = ["-i", key, "-o", "StrictHostKeyChecking=no", "-o",
                         f"UserKnownHostsFile={os.path.join(folder, 'known_hosts')}", "-o", "LogLevel=ERROR"]

    def start(self, i: int) -> None:
        config = os.path.join(self.folder, f"sshd_config_{i}")
        with open(config, "w") as out:
            out.write(textwrap.dedent(f"""\
                ListenAddress {self.hosts.ip(i)}
                Port 22
                HostKey {self.folder}/host_key
                PidFile none
                AuthorizedKeysFile {self.folder}/authorized_keys
                PermitRootLogin prohibit-password
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                UsePAM no
                StrictModes no
                PrintMotd no
                """))
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        daemon = self.hosts.run(i, [SSHD, "-D", "-e", "-f", config], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.daemons[i] = daemon
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(["ssh", *self.ssh_args, "-o", "ConnectTimeout=2", "-o", "BatchMode=yes",
                                    self.hosts.ip(i), "true"], capture_output=True, timeout=10)
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"sshd on test host {i} did not answer: {probe.stderr.decode()}")

    def launcher(self, hosts: list[int], **options) -> SSH:
        env = {"PYTHONPATH": SRC, "PYTHONUNBUFFERED": "1"}
        return SSH([self.hosts.ip(i) for i in hosts], python=PY, ssh_args=self.ssh_args, env=env,
                   connect_timeout=3, **options)

    def workers_left(self) -> dict[int, list[int]]:
        """Processes in each host other than its sshd (and the sshd's own session children)."""
        left = {}
        for i in range(len(self.hosts.names)):
            daemon = self.daemons.get(i)
            keep = set()
            if daemon is not None:
                keep.add(daemon.pid)
                try:
                    keep |= {int(x) for x in subprocess.run(["pgrep", "-P", str(daemon.pid)],
                                                             capture_output=True, text=True).stdout.split()
                             if _cmd(int(x)).startswith(SSHD)}
                except ValueError:
                    pass
            pids = [pid for pid in self.hosts.pids(i) if pid not in keep and not _cmd(pid).startswith("sshd")]
            if pids:
                left[i] = pids
        return left

    def wait_no_workers(self, seconds: float) -> dict[int, list[int]]:
        deadline = time.monotonic() + seconds
        while True:
            left = self.workers_left()
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.05)


def _cmd(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read().replace("\0", " ")
    except OSError:
        return ""


@pytest.fixture(scope="module")
def ssh_hosts(tmp_path_factory):
    hosts = netns.Hosts.make(3)
    try:
        made = SSHHosts(hosts, str(tmp_path_factory.mktemp("ssh")))
        for i in range(3):
            made.start(i)
        yield made
    finally:
        hosts.close()


@pytest.fixture
def no_workers_left(ssh_hosts):
    yield
    left = ssh_hosts.wait_no_workers(5)
    assert not left, f"workers left on the test hosts: {left}"


def test_ssh_starts_two_workers_on_each_host_and_moves_values_between_them(ssh_hosts, no_workers_left):
    hosts = ssh_hosts.hosts
    with Cluster(4, launcher=ssh_hosts.launcher([0, 1]), default_sink=RecordingSink()) as cluster:
        rows = cluster.status()
        assert [r["host"] for r in rows] == [hosts.hostname(0)] * 2 + [hosts.hostname(1)] * 2
        assert all(r["launcher"] == "ssh" for r in rows)
        assert cluster.run("import socket\nsocket.gethostname()", on=3, block=True).result == hosts.hostname(1)
        cluster.run("import numpy as np\nx = np.arange(1_000_000)", on=1, block=True)
        assert cluster.run("int(x.sum())", on=4, block=True).result == sum(range(1_000_000))
        assert all(r["relayed_from"] == [] for r in cluster.status())


def test_add_ssh_workers_to_a_local_cluster_and_remove_them(ssh_hosts, no_workers_left):
    hosts = ssh_hosts.hosts
    with Cluster(2, default_sink=RecordingSink()) as cluster:
        cluster.run("a = 20", on=1, block=True)
        added = cluster.add(2, ssh_hosts.launcher([2]))
        assert added == [3, 4] and cluster.n_workers == 4
        assert [r["host"] for r in cluster.status()][2:] == [hosts.hostname(2)] * 2
        assert cluster.who_has(["a"])["a"]["holders"] == [1], "names held stay where they are"
        # local <-> remote: not reachable directly (a Unix socket here, no certificate there): relayed
        assert cluster.run("a + 1", on=3, block=True).result == 21
        cluster.run("b = 5", on=4, block=True)
        assert cluster.run("a + b", on=2, block=True).result == 25
        assert cluster.run("b * 2", on=3, block=True).result == 10
        relayed = {r["id"]: r["relayed_from"] for r in cluster.status()}
        assert relayed == {1: [], 2: [4], 3: [1], 4: []}, relayed
        assert cluster.remove([3]) == []
        assert cluster.member_ids == [1, 2, 4]
        assert cluster.run("worker_id", on=4, block=True).result == 4


def test_unreachable_host_fails_start_naming_it_and_leaves_nothing_running(ssh_hosts, no_workers_left):
    hosts = ssh_hosts.hosts
    nowhere = f"{hosts.subnet}.99"
    launcher = SSH([hosts.ip(0), nowhere], python=PY, ssh_args=ssh_hosts.ssh_args, connect_timeout=2,
                   env={"PYTHONPATH": SRC})
    cluster = Cluster(2, launcher=launcher, startup_timeout=20)
    started = time.monotonic()
    with pytest.raises(WorkerStartError) as info:
        cluster.start()
    assert time.monotonic() - started < 15
    message = str(info.value)
    print(message)
    assert nowhere in message and ("No route to host" in message or "timed out" in message), message
    assert not cluster.running


def test_kernel_sigkill_takes_ssh_workers_down_within_2_s(ssh_hosts, no_workers_left):
    hosts = ssh_hosts.hosts
    script = textwrap.dedent(f"""
        import json, time
        from ipyworkers import Cluster
        from ipyworkers.kernel.launchers import SSH
        c = Cluster(2, launcher=SSH({[hosts.ip(0), hosts.ip(1)]!r}, python={PY!r},
                                    ssh_args={ssh_hosts.ssh_args!r}, env={{"PYTHONPATH": {SRC!r}}}))
        c.start()
        c.run("import subprocess; child = subprocess.Popen(['sleep', '300'])", on=[1, 2], block=True)
        print("READY", json.dumps([r["pid"] for r in c.status()]), flush=True)
        time.sleep(300)
    """)
    kernel = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = kernel.stdout.readline()
        assert line.startswith("READY"), line
        assert ssh_hosts.workers_left().keys() == {0, 1}
        kernel.send_signal(signal.SIGKILL)
        left = ssh_hosts.wait_no_workers(2.0)
        assert not left, f"still running 2 s after the kernel was killed: {left}"
    finally:
        kernel.kill()
        kernel.wait()
        kernel.stdout.close()


def test_version_mismatch_over_ssh_is_refused(ssh_hosts, no_workers_left):
    """The remote python reports another ipyworkers version: start fails naming both."""
    hosts = ssh_hosts.hosts
    shim = os.path.join(ssh_hosts.folder, "shim")
    os.makedirs(shim, exist_ok=True)
    with open(os.path.join(shim, "sitecustomize.py"), "w") as out:
        out.write("import ipyworkers._version as v\nv.__version__ = '9.9.9-remote'\n")
    launcher = SSH([hosts.ip(0)], python=PY, ssh_args=ssh_hosts.ssh_args,
                   env={"PYTHONPATH": f"{shim}:{SRC}"})
    cluster = Cluster(1, launcher=launcher, startup_timeout=20)
    with pytest.raises(WorkerStartError, match=r"worker 1 on \S+ runs ipyworkers 9\.9\.9-remote, the kernel runs"):
        cluster.start()
    assert json.dumps(cluster.status()) == "[]"
