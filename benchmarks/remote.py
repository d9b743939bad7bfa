"""Workers on two "hosts" (network namespaces on a bridge; needs root), against raw
sockets between the same namespaces and against Dask with TLS there.

    sudo .venv/bin/python benchmarks/remote.py [--repeat 5]

* start: ``Cluster(2, launcher=Join(...)).start()`` until both workers said hello
  (the join commands run in the two namespaces as soon as the command is printed);
* task round trip: a tiny task on a worker, submit to result, median;
* 100 MB worker to worker, over TLS and over plain TCP (``insecure``): the transfer as
  the receiver timed it, best of ``--repeat``, as a share of a raw stream of 100 MB
  between the same namespaces (Python ``socket`` with 4 MiB socket buffers and
  TCP_NODELAY, as ipyworkers': sendall from resident memory; recv_into either a buffer
  made resident before the clock starts, or fresh memory mapped inside the clock, as a
  new value needs; for TLS, the same through Python's ``ssl``, TLS 1.3, same certificates);
* Dask (``distributed``) with TLS in the same namespaces: a 100 MB NumPy array made on
  one worker and read on the other, timed by Dask's own transfer log, and the round trip.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from common import have  # noqa: E402

import netns  # noqa: E402 - the test hosts, from tests/
from ipyworkers import Cluster, tls  # noqa: E402
from ipyworkers.kernel import events as ev  # noqa: E402
from ipyworkers.kernel.launchers import Join  # noqa: E402
from ipyworkers.kernel.sinks import RecordingSink  # noqa: E402

PY = sys.executable
SIZE = 100 * 2**20
MAKE = f"import numpy as np\nbig = np.ones({SIZE}, dtype=np.uint8)"

RAW = r"""
import mmap, socket, ssl, sys, time
role, mode, host, port, files = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
mode, _, memory = mode.partition("-")
SIZE = 100 * 2**20
def ctx(server):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    c.minimum_version = ssl.TLSVersion.TLSv1_3
    c.check_hostname = False
    c.verify_mode = ssl.CERT_REQUIRED
    c.load_verify_locations(files[0])
    c.load_cert_chain(files[1], files[2])
    return c
if role == "recv":
    lsock = socket.create_server((host, port))
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    print("LISTENING", flush=True)
    sock, _ = lsock.accept()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if mode == "tls":
        sock = ctx(True).wrap_socket(sock, server_side=True)
    buf = bytearray(b"\1") * SIZE  # resident before the clock starts: no page faults in the loop
    first = bytearray(1)
    sock.recv_into(first, 1)
    start = time.perf_counter()
    if memory == "fresh":  # a new value needs new memory: as the workers get it, inside the clock
        buf = mmap.mmap(-1, SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        buf.madvise(mmap.MADV_HUGEPAGE)
    view = memoryview(buf)
    got = 1
    view[0] = first[0]
    while got < SIZE:
        n = sock.recv_into(view[got:])
        if not n:
            raise SystemExit("short")
        got += n
    print("SECONDS", time.perf_counter() - start, flush=True)
    sock.sendall(b"k")
else:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.connect((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if mode == "tls":
        sock = ctx(False).wrap_socket(sock)
    data = bytearray(b"\2") * SIZE  # resident, like the worker's array
    sock.sendall(data)
    sock.recv(1)
"""


def raw_once(hosts: netns.Hosts, mode: str, files: list[str], port: int) -> float:
    """Seconds for 100 MB from host 0 to host 1 over a raw (TLS) socket."""
    receiver = hosts.run(1, [PY, "-c", RAW, "recv", mode, hosts.ip(1), str(port), *files], text=True)
    sender = None
    try:
        assert receiver.stdout.readline().startswith("LISTENING")
        sender = hosts.run(0, [PY, "-c", RAW, "send", mode, hosts.ip(1), str(port), *files])
        line = receiver.stdout.readline()
        return float(line.split()[1])
    finally:
        for proc in (sender, receiver):
            if proc is not None:
                proc.wait(60)
                proc.stdout.close()
                hosts.procs.remove(proc)


class Ipyworkers:
    """A cluster of two joined workers, one per host, kept for every repetition."""

    def __init__(self, hosts: netns.Hosts, insecure: bool):
        self.workers: list = []

        def announce(command: str) -> None:
            for i in (0, 1):
                self.workers.append(hosts.run(i, [PY, *shlex.split(command)[1:]], stdout=subprocess.DEVNULL))

        launcher = Join(advertise=hosts.bridge_ip, announce=announce, insecure=insecure)
        self.cluster = Cluster(2, launcher=launcher, default_sink=RecordingSink())
        started = time.perf_counter()
        self.cluster.start()
        self.start = time.perf_counter() - started
        where = {row["host"]: row["id"] for row in self.cluster.status()}
        self.a, self.b = where[hosts.hostname(0)], where[hosts.hostname(1)]

    def round_trip(self) -> float:
        trips = []
        for _ in range(50):
            t0 = time.perf_counter()
            self.cluster.run("1", on=self.a, block=True)
            trips.append(time.perf_counter() - t0)
        return statistics.median(trips[10:])

    def move(self) -> float:
        cluster = self.cluster
        cluster.run("big = None", on=self.b, block=True)
        cluster.run(MAKE, on=self.a, block=True)
        before = len(cluster.events.events(ev.TRANSFER))
        cluster.run("len(big)", on=self.b, block=True)
        (transfer,) = cluster.events.events(ev.TRANSFER)[before:]
        return transfer.data["end"] - transfer.data["start"]

    def close(self) -> None:
        self.cluster.stop()
        for worker in self.workers:
            worker.wait(10)


class Dask:
    """A Dask scheduler here and one worker per host, all with TLS."""

    def __init__(self, hosts: netns.Hosts, files: list[str]):
        import numpy as np
        from distributed import Client
        from distributed.security import Security

        ca, cert, key = files
        tls_args = ["--tls-ca-file", ca, "--tls-cert", cert, "--tls-key", key]
        scheduler_file = os.path.join(tempfile.mkdtemp(prefix="iw-bench-dask-"), "scheduler.json")
        dask = str(Path(PY).with_name("dask"))
        started = time.perf_counter()
        self.scheduler = subprocess.Popen(
            [dask, "scheduler", "--protocol", "tls", "--host", hosts.bridge_ip, "--port", "0",
             "--dashboard-address", ":0", "--scheduler-file", scheduler_file, *tls_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not os.path.exists(scheduler_file):
            time.sleep(0.05)
        time.sleep(0.2)
        self.workers = [hosts.run(i, [dask, "worker", "--scheduler-file", scheduler_file, "--nthreads", "1",
                                      "--name", f"w{i}", "--host", hosts.ip(i), "--no-dashboard", "--no-nanny",
                                      *tls_args], stdout=subprocess.DEVNULL) for i in (0, 1)]
        security = Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)
        self.client = Client(scheduler_file=scheduler_file, security=security)
        self.client.wait_for_workers(2, timeout=60)
        self.start = time.perf_counter() - started
        names = {info["name"]: addr for addr, info in self.client.scheduler_info()["workers"].items()}
        self.a, self.b = names["w0"], names["w1"]
        self.np = np
        self.count = 0

    def round_trip(self) -> float:
        trips = []
        for i in range(50):
            t0 = time.perf_counter()
            self.client.submit(lambda x: x, i, workers=[self.a], pure=False).result()
            trips.append(time.perf_counter() - t0)
        return statistics.median(trips[10:])

    def move(self) -> float:
        np, client = self.np, self.client
        self.count += 1
        big = client.submit(lambda n, i: np.ones(n, dtype=np.uint8), SIZE, self.count, workers=[self.a], pure=False)
        client.submit(lambda x: int(len(x)), big, workers=[self.b], pure=False).result()
        log = client.run(lambda dask_worker: list(dask_worker.transfer_incoming_log), workers=[self.b])[self.b]
        del big
        return log[-1]["duration"]

    def close(self) -> None:
        self.client.close()
        self.scheduler.terminate()
        self.scheduler.wait(10)
        for worker in self.workers:
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7, help="best of this many (the machine may be shared)")
    args = parser.parse_args()
    why = netns.available()
    if why:
        raise SystemExit(f"benchmarks/remote.py needs network namespaces: {why}")
    hosts = netns.Hosts.make(2)
    folder = tempfile.mkdtemp(prefix="iw-bench-")
    try:
        session = tls.new_session(os.urandom(32)).worker
        files = []
        for name, pem in (("ca.pem", session.ca), ("cert.pem", session.cert), ("key.pem", session.private_key)):
            path = os.path.join(folder, name)
            Path(path).write_bytes(pem)
            files.append(path)
        systems = {"tls": Ipyworkers(hosts, insecure=False), "tcp": Ipyworkers(hosts, insecure=True)}
        if have("distributed"):
            systems["dask"] = Dask(hosts, files)
        raws = ("raw tcp-resident", "raw tcp-fresh", "raw tls-resident", "raw tls-fresh")
        samples: dict[str, list[float]] = {name: [] for name in (*raws, *systems)}
        try:
            trips = {name: system.round_trip() for name, system in systems.items()}
            for r in range(args.repeat):  # interleaved, so a busy moment hits every system alike
                for k, kind in enumerate(("tcp-resident", "tcp-fresh", "tls-resident", "tls-fresh")):
                    samples[f"raw {kind}"].append(raw_once(hosts, kind, files, 40000 + 4 * r + k))
                for name, system in systems.items():
                    samples[name].append(system.move())
        finally:
            for system in systems.values():
                system.close()
    finally:
        hosts.close()
    best = {name: min(values) for name, values in samples.items()}
    secure, plain, dask = systems["tls"], systems["tcp"], systems.get("dask")
    raw_tcp, raw_tls = best["raw tcp-resident"], best["raw tls-resident"]
    fresh_tcp, fresh_tls = best["raw tcp-fresh"], best["raw tls-fresh"]
    secure_move, plain_move, dask_move = best["tls"], best["tcp"], best.get("dask")
    mb = SIZE / 2**20

    def rate(seconds: float | None) -> str:
        return "-" if seconds is None else f"{seconds:.3f} s ({mb / seconds:.0f} MB/s)"

    print(textwrap.dedent(f"""
        Two hosts (network namespaces on a veth bridge); 100 MB = {SIZE} bytes; transfers: best of
        {args.repeat}, interleaved; round trip: median of 40.

        | measurement | ipyworkers TLS | ipyworkers plain TCP | Dask TLS |
        |---|---|---|---|
        | start 2 workers | {secure.start:.2f} s | {plain.start:.2f} s | \
{"-" if dask is None else f"{dask.start:.2f} s"} |
        | task round trip | {trips["tls"] * 1e3:.2f} ms | {trips["tcp"] * 1e3:.2f} ms | \
{"-" if dask is None else f"{trips['dask'] * 1e3:.2f} ms"} |
        | 100 MB worker to worker | {rate(secure_move)} | {rate(plain_move)} | {rate(dask_move)} |
        | raw stream into resident memory | TLS {rate(raw_tls)} | TCP {rate(raw_tcp)} | TLS {rate(raw_tls)} |
        | raw stream into fresh memory | TLS {rate(fresh_tls)} | TCP {rate(fresh_tcp)} | TLS {rate(fresh_tls)} |
        | share of raw, resident (target) | {raw_tls / secure_move:.0%} (>= 60%) | \
{raw_tcp / plain_move:.0%} (>= 90%) | {"-" if dask_move is None else f"{raw_tls / dask_move:.0%}"} |
        | share of raw, fresh | {fresh_tls / secure_move:.0%} | {fresh_tcp / plain_move:.0%} | \
{"-" if dask_move is None else f"{fresh_tls / dask_move:.0%}"} |
        """))


if __name__ == "__main__":
    main()
