"""Workers beyond one machine, on real parts: three "hosts" (network namespaces on a
bridge, see ``netns.py``) that reach each other and this namespace over TCP only.

The kernel (this process) listens in the root namespace; workers join from the
namespaces with the join command, over mutual TLS with the session's CA (or plain TCP
where a test says ``insecure``).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import netns
from ipyworkers import Cluster, addressing, tls, wire
from ipyworkers import protocol as p
from ipyworkers.errors import AuthenticationError, WorkerStartError
from ipyworkers.kernel import events as ev
from ipyworkers.kernel.launchers import Join
from ipyworkers.kernel.sinks import RecordingSink

WHY_NOT = netns.available()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"no test hosts: {WHY_NOT}")
PY = sys.executable
MB = 1 << 20


@pytest.fixture(scope="module")
def hosts():
    made = netns.Hosts.make(3)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def joiners(hosts):
    """Start a cluster whose workers join from the given hosts; reaped afterwards."""
    clusters = []

    def start(placement: list[int], *, insecure: bool = False, extra: list[str] | None = None,
              timeout: float = 30, env: dict | None = None) -> Cluster:
        def announce(command: str) -> None:
            argv = shlex.split(command)
            assert argv[:3] == ["python", "-m", "ipyworkers.worker"] and "--credentials" in argv
            for i in placement:
                hosts.run(i, [PY, *argv[1:], *(extra or [])], env=env)

        launcher = Join(advertise=hosts.bridge_ip, announce=announce, insecure=insecure)
        cluster = Cluster(len(placement), launcher=launcher, default_sink=RecordingSink(), startup_timeout=timeout)
        clusters.append(cluster)
        cluster.start()
        return cluster

    yield start
    for cluster in clusters:
        cluster.stop()
    left = hosts.wait_empty(5)
    hosts.reap()
    assert not left, f"processes left in the test hosts after stop: {left}"


def on_host(cluster: Cluster, hosts: netns.Hosts) -> dict[int, int]:
    """host index -> worker id, from the hosts the workers report."""
    names = {hosts.hostname(i): i for i in range(len(hosts.names))}
    return {names[row["host"]]: row["id"] for row in cluster.status()}


def test_join_command_runs_a_cell_on_each_host(joiners, hosts):
    cluster = joiners([0, 1, 2])
    where = on_host(cluster, hosts)
    assert sorted(where) == [0, 1, 2], cluster.status()
    for i, wid in where.items():
        got = cluster.run("import socket\nsocket.gethostname(), worker_id", on=wid, block=True).result
        assert got == (hosts.hostname(i), wid)
        assert cluster._supervisor.row(wid)["address"].startswith(f"tls://{hosts.ip(i)}:")
    command = cluster.join_command()
    assert "--credentials" in command and cluster._supervisor._key.hex() not in command
    path = shlex.split(command)[-1]
    assert os.stat(path).st_mode & 0o777 == 0o600
    cluster.stop()
    assert not os.path.exists(path), "the credentials file outlived the session"


def test_100_mb_move_worker_to_worker_between_hosts(joiners, hosts):
    cluster = joiners([0, 1])
    where = on_host(cluster, hosts)
    a, b = where[0], where[1]
    cluster.run("import numpy as np\nx = np.ones(100 * 2**20, dtype=np.uint8)", on=a, block=True)
    before = sum(h.link.conn.bytes_received for h in cluster._supervisor.handles.values())
    started = time.perf_counter()
    assert cluster.run("int(x.sum())", on=b, block=True).result == 100 * MB
    elapsed = time.perf_counter() - started
    through_kernel = sum(h.link.conn.bytes_received for h in cluster._supervisor.handles.values()) - before
    assert through_kernel < MB, "the value went through the kernel, not worker to worker"
    assert cluster.status()[0]["relayed_from"] == [] and cluster.status()[1]["relayed_from"] == []
    print(f"100 MB host to host over TLS in {elapsed:.2f} s")


def test_stream_across_hosts(joiners, hosts):
    cluster = joiners([0, 2])
    where = on_host(cluster, hosts)
    a, b = where[0], where[2]
    producer = cluster.run(f"for i in range(200):\n    send(b'x' * 10000 + bytes([i % 256]), to={b})\nclose({b})",
                           on=a)
    total = cluster.run(f"n = 0\nfor m in stream(frm={a}):\n    n += len(m)\nn", on=b, block=True).result
    producer.wait(30)
    assert producer.error is None and total == 200 * 10001


def test_interrupt_reaches_a_remote_worker(joiners, hosts):
    cluster = joiners([1])
    task = cluster.run("import time\nfor _ in range(300):\n    time.sleep(0.1)", on=1)
    deadline = time.monotonic() + 10
    while task.state != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cluster.interrupt(1, wait=10) == {1: "interrupted"}
    assert "KeyboardInterrupt" in str(task.error)
    assert cluster.run("21 * 2", on=1, block=True).result == 42


def test_insecure_tcp_moves_values_too(joiners, hosts):
    cluster = joiners([0, 1], insecure=True)
    where = on_host(cluster, hosts)
    assert cluster._supervisor.row(where[0])["address"].startswith("tcp://")
    cluster.run("x = list(range(1000))", on=where[0], block=True)
    assert cluster.run("sum(x)", on=where[1], block=True).result == sum(range(1000))


def test_blocked_peer_link_is_relayed_through_the_kernel(joiners, hosts):
    """A firewall between hosts 0 and 1 (their control links still reach the kernel)."""
    if subprocess.run(["which", "nft"], capture_output=True).returncode != 0:
        pytest.skip("nft is not installed (Debian package nftables)")
    cluster = joiners([0, 1])
    where = on_host(cluster, hosts)
    rules = (f"table inet iwtest {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n"
             f"    ip saddr {hosts.ip(0)} drop\n  }}\n}}\n")
    subprocess.run(["ip", "netns", "exec", hosts.names[1], "nft", "-f", "-"], input=rules, text=True, check=True)
    try:
        cluster.run("x = b'z' * 3_000_000", on=where[0], block=True)
        assert cluster.run("len(x)", on=where[1], block=True).result == 3_000_000
        row = next(r for r in cluster.status() if r["id"] == where[1])
        assert row["relayed_from"] == [where[0]], row
        task = cluster.run(f"send(1, to={where[0]})", on=where[1])
        task.wait(30)
        assert task.error is not None and "cannot reach worker" in str(task.error) and "relayed" in str(task.error)
    finally:
        hosts.exec(1, "nft", "delete", "table", "inet", "iwtest", check=False)


def test_version_mismatch_is_refused_naming_both_sides(hosts):
    fake = ("import sys, ipyworkers._version as v; v.__version__ = '0.0.0-other'; "
            "from ipyworkers.worker.process import main; main(sys.argv[1:])")
    procs = []

    def announce(command: str) -> None:
        procs.append(hosts.run(0, [PY, "-c", fake, *shlex.split(command)[3:]]))

    cluster = Cluster(1, launcher=Join(advertise=hosts.bridge_ip, announce=announce), startup_timeout=20)
    try:
        with pytest.raises(WorkerStartError, match=r"runs ipyworkers 0\.0\.0-other, the kernel runs ipyworkers"):
            cluster.start()
        out, _ = procs[0].communicate(timeout=10)
        assert b"refused by the coordinator" in out and b"0.0.0-other" in out
    finally:
        cluster.stop()
        hosts.reap()


def test_a_remote_worker_with_another_clock_reports_in_the_kernels_clock(hosts):
    """Each host's monotonic clock is its own: times from a worker whose clock is 1000 s
    ahead still land inside the kernel's own before/after."""
    skew = ("import sys, time; m = time.monotonic; time.monotonic = lambda: m() + 1000.0; "
            "from ipyworkers.worker.process import main; main(sys.argv[1:])")

    def announce(command: str) -> None:
        hosts.run(0, [PY, "-c", skew, *shlex.split(command)[3:]])
        hosts.run(1, [PY, *shlex.split(command)[1:]])

    cluster = Cluster(2, launcher=Join(advertise=hosts.bridge_ip, announce=announce), default_sink=RecordingSink())
    try:
        cluster.start()
        where = on_host(cluster, hosts)
        before = time.monotonic()
        task = cluster.run("x = bytes(1000)", on=where[0], block=True)
        reader = cluster.run("len(x)", on=where[1], block=True)
        after = time.monotonic()
        assert before <= task.started_at <= task.finished_at <= after
        assert before <= reader.started_at <= after
        (transfer,) = [e for e in cluster.events.events(ev.TRANSFER) if e.data.get("name") == "x"]
        assert before <= transfer.data["start"] <= transfer.data["end"] <= after
    finally:
        cluster.stop()
        hosts.reap()


def test_a_join_that_never_comes_fails_start_within_the_timeout(hosts):
    cluster = Cluster(1, launcher=Join(advertise=hosts.bridge_ip, announce=lambda c: None), startup_timeout=2)
    started = time.monotonic()
    with pytest.raises(WorkerStartError, match="did not report ready within 2"):
        cluster.start()
    assert time.monotonic() - started < 5
    assert not cluster.running


def test_kernel_sigkill_takes_remote_workers_down_within_2_s(hosts):
    script = textwrap.dedent(f"""
        import json, sys, time
        from ipyworkers import Cluster
        from ipyworkers.kernel.launchers import Join
        c = Cluster(2, launcher=Join(advertise={hosts.bridge_ip!r},
                                     announce=lambda cmd: print("CMD", cmd, flush=True)))
        c.start()
        c.run("import subprocess; child = subprocess.Popen(['sleep', '300'])", on=[1, 2], block=True)
        print("READY", json.dumps([r["pid"] for r in c.status()]), flush=True)
        time.sleep(300)
    """)
    kernel = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = kernel.stdout.readline()
        assert line.startswith("CMD "), line
        argv = shlex.split(line[4:])
        credentials = argv[argv.index("--credentials") + 1]
        workers = [hosts.run(i, [PY, *argv[1:]]) for i in (0, 1)]
        line = kernel.stdout.readline()
        assert line.startswith("READY"), line
        assert len(json.loads(line.split(" ", 1)[1])) == 2
        assert all(hosts.pids(i) for i in (0, 1))
        kernel.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        left = hosts.wait_empty(2.0)
        assert not left, f"still running {time.monotonic() - killed:.1f} s after the kernel was killed: {left}"
        for worker in workers:
            worker.wait(5)
        deadline = time.monotonic() + 2
        while os.path.exists(credentials) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(credentials), "the janitor did not remove the credentials file"
    finally:
        kernel.kill()
        kernel.wait()
        kernel.stdout.close()
        hosts.reap()


# -- who may connect ------------------------------------------------------------------------------


@pytest.fixture
def tls_listener(hosts):
    key = os.urandom(32)
    session = tls.new_session(key)
    listener = wire.Listener(f"tls://{hosts.bridge_ip}:0", key, tls=session.coordinator.context(server=True))
    yield listener, key, session
    listener.close()


def _attempt(hosts, address: str, creds: tls.Credentials, tmp_path) -> subprocess.Popen:
    """A client on host 0 with ``creds``, connecting and sending a frame."""
    path = tmp_path / "creds"
    creds.write(str(path))
    code = textwrap.dedent(f"""
        from ipyworkers import tls, wire, protocol as p
        c = tls.Credentials.read({str(path)!r})
        try:
            conn = wire.connect({address!r}, c.key, tls=c.context(server=False))
            conn.send(p.Ping(1))
        except Exception as exc:
            print("REFUSED", exc)
    """)
    return hosts.run(0, [PY, "-c", code])


@pytest.mark.parametrize("who", ["wrong key", "another session's certificate", "no certificate"])
def test_wrong_credentials_are_refused_before_anything_is_unpickled(tls_listener, hosts, tmp_path, monkeypatch, who):
    listener, key, session = tls_listener
    other = tls.new_session(os.urandom(32) if who == "wrong key" else key)
    if who == "wrong key":
        creds = tls.Credentials(other.worker.key, session.worker.ca, session.worker.cert, session.worker.private_key)
    elif who == "no certificate":
        creds = tls.Credentials(key)
    else:
        creds = other.worker
    unpickled = []
    monkeypatch.setattr(wire.pickle, "loads", lambda *a, **k: unpickled.append(a) or p.Ping(0))
    address = addressing.format_address("tls", hosts.bridge_ip, listener.port)
    if who == "no certificate":
        address = address.replace("tls://", "tcp://")
    client = _attempt(hosts, address, creds, tmp_path)
    with pytest.raises(AuthenticationError):
        listener.accept(timeout=10, handshake_timeout=5)
    out, _ = client.communicate(timeout=10)
    assert b"REFUSED" in out or who == "no certificate"
    assert unpickled == []


def test_a_worker_with_bad_credentials_cannot_join_but_good_ones_can(hosts, tmp_path):
    bad = tmp_path / "bad.cred"
    tls.new_session(os.urandom(32)).worker.write(str(bad))
    procs = []

    def announce(command: str) -> None:
        argv = shlex.split(command)
        at = argv.index("--credentials")
        procs.append(hosts.run(2, [PY, *argv[1:at], "--credentials", str(bad)]))
        procs.append(hosts.run(0, [PY, *argv[1:]]))

    cluster = Cluster(1, launcher=Join(advertise=hosts.bridge_ip, announce=announce), startup_timeout=20,
                      default_sink=RecordingSink())
    try:
        cluster.start()
        assert [row["host"] for row in cluster.status()] == [hosts.hostname(0)]
        out, _ = procs[0].communicate(timeout=10)
        assert b"cannot join the coordinator" in out, out
    finally:
        cluster.stop()
        hosts.reap()


def test_a_joiner_that_no_start_waits_for_is_told_so_at_once(joiners, hosts):
    cluster = joiners([0])
    argv = shlex.split(cluster.join_command())
    late = hosts.run(2, [PY, *argv[1:]])
    out, _ = late.communicate(timeout=15)
    assert b"refused by the coordinator: no worker of this cluster is waiting to start now" in out, out
    assert late.returncode != 0 and cluster.member_ids == [1]


def test_a_silent_connection_does_not_hold_up_a_start(hosts):
    """Someone connects to the join port and says nothing: the joiners still get in."""
    import socket

    silent = []

    def announce(command: str) -> None:
        port = int(shlex.split(command)[4].rsplit(":", 1)[1])
        silent.append(socket.create_connection((hosts.bridge_ip, port)))
        for i in (0, 1):
            hosts.run(i, [PY, *shlex.split(command)[1:]])

    cluster = Cluster(2, launcher=Join(advertise=hosts.bridge_ip, announce=announce), default_sink=RecordingSink())
    try:
        started = time.monotonic()
        cluster.start()
        assert time.monotonic() - started < 8, "the silent connection held up the start"
    finally:
        cluster.stop()
        for sock in silent:
            sock.close()
        hosts.reap()


def test_listener_address_and_port_zero():
    key = os.urandom(32)
    listener = wire.Listener("tcp://127.0.0.1:0", key)
    try:
        assert listener.port and listener.address == f"tcp://127.0.0.1:{listener.port}"
        assert addressing.parse_address(listener.address) == ("tcp", ("127.0.0.1", listener.port))
        assert addressing.parse_address("tls://[::1]:5") == ("tls", ("::1", 5))
        assert addressing.parse_address("unix:///tmp/x") == ("unix", "/tmp/x") == addressing.parse_address("/tmp/x")
        with pytest.raises(ValueError, match="needs the session's TLS"):
            wire.connect(listener.address.replace("tcp", "tls"), key)
    finally:
        listener.close()


def test_credentials_file_is_0600_and_round_trips(tmp_path):
    session = tls.new_session(os.urandom(32))
    path = session.worker.write(str(tmp_path / "c"), "tls://h:1")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert tls.Credentials.read(path) == session.worker
    assert tls.Credentials.loads(tls.Credentials(b"k" * 32).dumps()).secure is False


def test_threads_of_a_tls_link_end(hosts):
    """A TLS listener and link leave no thread or socket (checked by the leak checks)."""
    key = os.urandom(32)
    session = tls.new_session(key)
    listener = wire.Listener(f"tls://{hosts.bridge_ip}:0", key, tls=session.coordinator.context(server=True))
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("c", listener.accept(timeout=5)))
    thread.start()
    conn = wire.connect(listener.address, key, tls=session.worker.context(server=False))
    thread.join()
    conn.send(p.Ping(3), [b"x" * 200_000, memoryview(b"y" * 10)])
    msg, parts = box["c"].recv()
    assert msg == p.Ping(3) and [len(x) for x in parts] == [200_000, 10]
    for c in (conn, box["c"]):
        c.close()
    listener.close()
