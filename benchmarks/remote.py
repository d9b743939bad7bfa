"""Workers on two "hosts" (network namespaces on a bridge; needs root), against raw
sockets between the same namespaces and against Dask with TLS there.

    sudo .venv/bin/python benchmarks/remote.py [--repeat 5]

* start: ``Cluster(2, launcher=Join(...)).start()`` until both workers said hello
  (the join commands run in the two namespaces as soon as the command is printed);
* task round trip: a tiny task on a worker, submit to result, median;
* 100 MB worker to worker, over TLS and over plain TCP (``insecure``): the transfer as
  the receiver timed it, best of ``--repeat``, as a share of a raw stream of 100 MB
  between the same namespaces (Python ``socket`` with 4 MiB socket buffers and TCP_NODELAY, as ipyworkers': sendall
  from memory, recv_into a preallocated buffer already resident; for TLS, the same
  through Python's ``ssl``, TLS 1.3 with the same certificates);
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

import netns  # noqa: E402 - the test hosts, from tests/
from ipyworkers import Cluster, tls  # noqa: E402
from ipyworkers.kernel import events as ev  # noqa: E402
from ipyworkers.kernel.launchers import Join  # noqa: E402
from ipyworkers.kernel.sinks import RecordingSink  # noqa: E402

PY = sys.executable
SIZE = 100 * 2**20
MAKE = f"import numpy as np\nbig = np.ones({SIZE}, dtype=np.uint8)"

RAW = r"""
import socket, ssl, sys, time
role, mode, host, port, files = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
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
    view = memoryview(buf)
    got = sock.recv_into(view)
    start = time.perf_counter()
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


def raw_stream(hosts: netns.Hosts, mode: str, files: list[str], repeat: int) -> float:
    """Best seconds for 100 MB from host 0 to host 1 over a raw (TLS) socket."""
    best = float("inf")
    for attempt in range(repeat):
        port = 40000 + attempt
        receiver = hosts.run(1, [PY, "-c", RAW, "recv", mode, hosts.ip(1), str(port), *files], text=True)
        assert receiver.stdout.readline().startswith("LISTENING")
        sender = hosts.run(0, [PY, "-c", RAW, "send", mode, hosts.ip(1), str(port), *files])
        line = receiver.stdout.readline()
        sender.wait(60)
        receiver.wait(60)
        best = min(best, float(line.split()[1]))
    hosts.reap()
    return best


def ipyworkers_run(hosts: netns.Hosts, insecure: bool, repeat: int) -> dict[str, float]:
    def announce(command: str) -> None:
        for i in (0, 1):
            hosts.run(i, [PY, *shlex.split(command)[1:]], stdout=subprocess.DEVNULL)

    launcher = Join(advertise=hosts.bridge_ip, announce=announce, insecure=insecure)
    cluster = Cluster(2, launcher=launcher, default_sink=RecordingSink())
    started = time.perf_counter()
    cluster.start()
    out = {"start": time.perf_counter() - started}
    try:
        where = {row["host"]: row["id"] for row in cluster.status()}
        a, b = where[hosts.hostname(0)], where[hosts.hostname(1)]
        trips = []
        for _ in range(50):
            t0 = time.perf_counter()
            cluster.run("1", on=a, block=True)
            trips.append(time.perf_counter() - t0)
        out["round trip"] = statistics.median(trips[10:])
        moves = []
        for _ in range(repeat):
            cluster.run("big = None", on=b, block=True)
            cluster.run(MAKE, on=a, block=True)
            before = len(cluster.events.events(ev.TRANSFER))
            cluster.run("len(big)", on=b, block=True)
            (transfer,) = cluster.events.events(ev.TRANSFER)[before:]
            moves.append(transfer.data["end"] - transfer.data["start"])
        out["100 MB"] = min(moves)
    finally:
        cluster.stop()
        hosts.reap()
    return out


def dask_run(hosts: netns.Hosts, files: list[str], repeat: int) -> dict[str, float] | None:
    try:
        import numpy as np
        from distributed import Client
        from distributed.security import Security
    except ImportError:
        return None
    ca, cert, key = files
    tls_args = ["--tls-ca-file", ca, "--tls-cert", cert, "--tls-key", key]
    folder = tempfile.mkdtemp(prefix="iw-bench-dask-")
    scheduler_file = os.path.join(folder, "scheduler.json")
    dask = str(Path(PY).with_name("dask"))
    started = time.perf_counter()
    scheduler = subprocess.Popen([dask, "scheduler", "--protocol", "tls", "--host", hosts.bridge_ip, "--port", "0",
                                  "--dashboard-address", ":0", "--scheduler-file", scheduler_file, *tls_args],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not os.path.exists(scheduler_file):
            time.sleep(0.05)
        time.sleep(0.2)
        for i in (0, 1):
            hosts.run(i, [dask, "worker", "--scheduler-file", scheduler_file, "--nthreads", "1", "--name", f"w{i}",
                          "--host", hosts.ip(i), "--no-dashboard", "--no-nanny", *tls_args],
                      stdout=subprocess.DEVNULL)
        security = Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)
        with Client(scheduler_file=scheduler_file, security=security) as client:
            client.wait_for_workers(2, timeout=60)
            out = {"start": time.perf_counter() - started}
            addresses = {info["name"]: addr for addr, info in client.scheduler_info()["workers"].items()}
            a, b = addresses["w0"], addresses["w1"]
            trips = []
            for i in range(50):
                t0 = time.perf_counter()
                client.submit(lambda x: x, i, workers=[a], pure=False).result()
                trips.append(time.perf_counter() - t0)
            out["round trip"] = statistics.median(trips[10:])
            moves = []
            for i in range(repeat):
                big = client.submit(lambda n, i: np.ones(n, dtype=np.uint8), SIZE, i, workers=[a], pure=False)
                client.submit(lambda x: int(len(x)), big, workers=[b], pure=False).result()
                log = client.run(lambda dask_worker: list(dask_worker.transfer_incoming_log), workers=[b])[b]
                moves.append(log[-1]["duration"])
                del big
            out["100 MB"] = min(moves)
        return out
    finally:
        scheduler.terminate()
        scheduler.wait(10)
        hosts.reap()


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
        raw_tcp = raw_stream(hosts, "tcp", files, args.repeat)
        raw_tls = raw_stream(hosts, "tls", files, args.repeat)
        secure = ipyworkers_run(hosts, insecure=False, repeat=args.repeat)
        plain = ipyworkers_run(hosts, insecure=True, repeat=args.repeat)
        dask = dask_run(hosts, files, args.repeat)
    finally:
        hosts.close()
    mbps = SIZE / 2**20
    print(textwrap.dedent(f"""
        Two hosts (network namespaces on a veth bridge), 100 MB = {SIZE} bytes, best of {args.repeat}.

        | measurement | ipyworkers TLS | ipyworkers plain TCP | Dask TLS |
        |---|---|---|---|
        | start 2 workers | {secure['start']:.2f} s | {plain['start']:.2f} s | {_s(dask, 'start')} |
        | task round trip (median) | {secure['round trip'] * 1e3:.2f} ms | {plain['round trip'] * 1e3:.2f} ms \
| {_ms(dask)} |
        | 100 MB worker to worker | {secure['100 MB']:.3f} s ({mbps / secure['100 MB']:.0f} MB/s) \
| {plain['100 MB']:.3f} s ({mbps / plain['100 MB']:.0f} MB/s) | {_move(dask, mbps)} |
        | raw stream, same namespaces | TLS: {raw_tls:.3f} s ({mbps / raw_tls:.0f} MB/s) \
| TCP: {raw_tcp:.3f} s ({mbps / raw_tcp:.0f} MB/s) | TLS: {raw_tls:.3f} s |
        | share of raw (target) | {raw_tls / secure['100 MB']:.0%} (>= 60%) | {raw_tcp / plain['100 MB']:.0%} (>= 90%) \
| {_share(dask, raw_tls)} |
        """))


def _s(d, k):
    return "-" if d is None else f"{d[k]:.2f} s"


def _ms(d):
    return "-" if d is None else f"{d['round trip'] * 1e3:.2f} ms"


def _move(d, mbps):
    return "-" if d is None else f"{d['100 MB']:.3f} s ({mbps / d['100 MB']:.0f} MB/s)"


def _share(d, raw):
    return "-" if d is None else f"{raw / d['100 MB']:.0%}"


if __name__ == "__main__":
    main()
