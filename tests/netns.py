"""Test hosts on this one machine: network namespaces on a bridge.

``Hosts.make(3)`` makes three namespaces, each with a veth pair to a bridge in this
(the root) namespace, an address in a /24 of its own and its loopback up. They reach
each other and this namespace over TCP, and nothing else (no route out, no NAT). The
bridge's address is where a coordinator here is reached from them.

``Hosts.run(i, argv)`` runs a process "on" host i: in its namespace and, with
``unshare --uts``, under a hostname of its own (``hostNN-i``), so a worker there
reports that host. ``close()`` kills every process left in the namespaces, then deletes
them and the bridge; a fixture calls it however the test ended.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

STEP_SECONDS = 10


def available() -> str | None:
    """None if namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    name = f"iwprobe{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=STEP_SECONDS)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result


@dataclass
class Hosts:
    tag: str
    subnet: str
    names: list[str] = field(default_factory=list)
    bridge: str = ""
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def bridge_ip(self) -> str:
        return f"{self.subnet}.1"

    def ip(self, i: int) -> str:
        return f"{self.subnet}.{11 + i}"

    def hostname(self, i: int) -> str:
        return f"host{self.tag[-4:]}-{i}"

    @classmethod
    def make(cls, count: int) -> Hosts:
        tag = f"{os.getpid() % 10000:04d}{random.randrange(100):02d}"
        hosts = cls(tag, _free_subnet())
        try:
            hosts.bridge = f"iwbr{tag}"
            sh("ip", "link", "add", hosts.bridge, "type", "bridge")
            sh("ip", "addr", "add", f"{hosts.bridge_ip}/24", "dev", hosts.bridge)
            sh("ip", "link", "set", hosts.bridge, "up")
            for i in range(count):
                hosts._add_host(i)
        except BaseException:
            hosts.close()
            raise
        return hosts

    def _add_host(self, i: int) -> None:
        name, veth = f"iw{self.tag}h{i}", f"iwv{self.tag}{i}"
        sh("ip", "netns", "add", name)
        self.names.append(name)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        sh("ip", "link", "set", veth, "master", self.bridge)
        sh("ip", "link", "set", veth, "up")
        inside = ("ip", "netns", "exec", name)
        sh(*inside, "ip", "addr", "add", f"{self.ip(i)}/24", "dev", "eth0")
        sh(*inside, "ip", "link", "set", "eth0", "up")
        sh(*inside, "ip", "link", "set", "lo", "up")

    def prefix(self, i: int) -> list[str]:
        """Run in host i's namespace, under its own hostname."""
        return ["ip", "netns", "exec", self.names[i], "unshare", "--uts", "sh", "-c",
                f'hostname {self.hostname(i)} && exec "$@"', "sh"]

    def run(self, i: int, argv: list[str], **kwargs) -> subprocess.Popen:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.STDOUT)
        proc = subprocess.Popen(self.prefix(i) + list(argv), **kwargs)
        self.procs.append(proc)
        return proc

    def exec(self, i: int, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.names[i], *argv, check=check)

    def pids(self, i: int) -> list[int]:
        out = sh("ip", "netns", "pids", self.names[i], check=False).stdout.split()
        return [int(pid) for pid in out if pid.isdigit()]

    def wait_empty(self, seconds: float) -> dict[str, list[int]]:
        """Wait until no process runs in any namespace; returns what still runs then."""
        deadline = time.monotonic() + seconds
        while True:
            left = {name: self.pids(i) for i, name in enumerate(self.names)}
            left = {name: pids for name, pids in left.items() if pids}
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.05)

    def reap(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdout, proc.stderr, proc.stdin):
                if stream is not None:
                    stream.close()
        self.procs.clear()

    def close(self) -> None:
        for i in range(len(self.names)):
            for pid in self.pids(i):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.reap()
        for name in self.names:
            sh("ip", "netns", "del", name, check=False)
        self.names.clear()
        if self.bridge:
            sh("ip", "link", "del", self.bridge, check=False)
            self.bridge = ""


def _free_subnet() -> str:
    used = sh("ip", "-o", "-4", "addr").stdout
    for _ in range(100):
        subnet = f"10.{random.randrange(200, 250)}.{random.randrange(1, 250)}"
        if f" {subnet}." not in used:
            return subnet
    raise RuntimeError("no free 10.x.y.0/24 for the test hosts")
