"""The worker process: ``python -m ipyworkers.worker``.

The main thread runs user code, one task at a time, in submission order, with
IPython semantics. Other threads keep serving while it runs: the control link
(tasks, interrupts, pulls), the peer listener (other workers fetching values from
this one), and a watch on the parent process. The worker exits when its control
link closes or its parent dies, and takes its process group with it.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import Future
from typing import Any

from .. import wire
from ..errors import ChannelError
from ..protocol import NOTHING
from ..wire import Connection, SerializationError
from .channels import Channels

PARENT_POLL_SECONDS = 0.25
FLUSH_SECONDS = 0.05
STREAM_CHUNK = 8192
STREAM_REPORT_TICKS = 4
SWITCH_SECONDS = 0.001
"""How long busy user code may hold the GIL before an IO thread gets it (Python's default,
5 ms, delays every stream batch and fetch that arrives while user code computes)."""


class InputUnavailable(Exception):
    """An input of a task cannot be had.

    ``root`` names the original failure (a failed task, a dead worker); a task
    cancelled for it passes the same root on to the tasks that depend on it.
    """

    def __init__(self, message: str, root: str | None = None):
        super().__init__(message)
        self.root = root


class TaskStream:
    """Replaces sys.stdout / sys.stderr: text goes to the running task's cell."""

    def __init__(self, worker: Worker, name: str, fallback):
        self._worker = worker
        self.name = name
        self._fallback = fallback
        self._lock = threading.Lock()
        self._buffer: list[str] = []
        self._size = 0
        self._task: int | None = None
        self.encoding = "utf-8"
        self.errors = "replace"

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        task = self._worker.current_output_task
        if task is None:
            self._fallback.write(text)
            self._fallback.flush()
            return len(text)
        with self._lock:
            if self._task != task:
                self._flush_locked()
                self._task = task
            self._buffer.append(text)
            self._size += len(text)
            urgent = "\n" in text or self._size > STREAM_CHUNK
        if urgent:
            self.flush()
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._buffer:
            return
        text = "".join(self._buffer)
        self._buffer.clear()
        self._size = 0
        self._worker.emit(("stream", self._task, self.name, text))

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fallback.fileno()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False


class PeerClient:
    """This worker's link to another worker, for fetching values from it."""

    def __init__(self, worker: Worker, source: int, address: str):
        self.worker = worker
        self.source = source
        self.address = address
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._pending: dict[int, tuple[Future, str]] = {}
        self._next = 0
        self._broken: str | None = None

    def request(self, name: str, version: int) -> Future:
        future: Future = Future()
        with self._lock:
            if self._broken is None and self._conn is None:
                self._connect()
            if self._broken is not None:
                future.set_exception(InputUnavailable(self._broken.format(name=name)))
                return future
            self._next += 1
            self._pending[self._next] = (future, name)
            req = self._next
        try:
            self._conn.send(("get", req, name, version))
        except wire.WireError:
            self._fail(f"worker {self.source} died before sending {{name!r}}")
        return future

    def _connect(self) -> None:
        try:
            self._conn = wire.connect_unix(self.address, self.worker.key)
            self._conn.send(("hello", self.worker.id))
        except (OSError, wire.WireError) as exc:
            self._broken = f"cannot reach worker {self.source} to fetch {{name!r}}: {exc}"
            return
        threading.Thread(target=self._read, name=f"peer-client-{self.source}", daemon=True).start()

    def post(self, msg: tuple, parts=()) -> None:
        """A stream message to this peer (no reply expected)."""
        with self._lock:
            if self._broken is None and self._conn is None:
                self._connect()
            broken, conn = self._broken, self._conn
        if broken is not None:
            raise ChannelError(f"worker {self.source} cannot be reached: the stream to it is broken")
        try:
            conn.send(msg, parts)
        except wire.WireError as exc:
            raise ChannelError(f"worker {self.source} died: the stream to it is broken") from exc

    def _read(self) -> None:
        conn = self._conn
        try:
            while True:
                msg, parts = conn.recv()
                if msg[0] != "value":
                    self.worker.channels.on_reply(self.source, msg)
                    continue
                _, req, status, info = msg
                with self._lock:
                    future, _ = self._pending.pop(req, (None, None))
                if future is not None:
                    future.set_result((status, info, parts))
        except (wire.WireError, OSError, EOFError):
            self._fail(f"worker {self.source} died during the transfer of {{name!r}}")
            self.worker.channels.on_link_lost(self.source)

    def _fail(self, message: str) -> None:
        with self._lock:
            self._broken = message
            pending, self._pending = self._pending, {}
        for future, name in pending.values():
            future.set_exception(InputUnavailable(message.format(name=name)))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class Worker:
    def __init__(self, worker_id: int, n_workers: int, conn: Connection, listener: socket.socket,
                 key: bytes, parent_pid: int, colors: str, runtime_dir: str):
        self.id = worker_id
        self.runtime_dir = runtime_dir
        self.n_workers = n_workers
        self.conn = conn
        self.listener = listener
        self.key = key
        self.parent_pid = parent_pid
        self.colors = colors
        self.channels = Channels(self)
        self.peer_addresses: dict[int, str] = {}
        self.ns: dict[str, Any] = {
            "worker_id": worker_id, "n_workers": n_workers, "send": self.channels.send,
            "recv": self.channels.recv, "close": self.channels.close, "stream": self.channels.stream,
        }
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.cond = threading.Condition()
        self.versions: dict[str, int] = {}
        self.outcomes: dict[int, str | None] = {}
        self.staged: dict[int, dict[str, Future]] = {}
        self.peers: dict[int, PeerClient] = {}
        self.functions: dict[str, Any] = {}
        self.accumulators: dict[str, Any] = {}
        self.current: int | None = None
        self.current_output_task: int | None = None
        self.interruptible = False
        self.returns_result = False
        self.shell = None
        self._error: tuple[str, str, list[str]] | None = None
        self._main_ident = threading.get_ident()

    # -- plumbing ----------------------------------------------------------------------

    def emit(self, msg: Any, parts=()) -> None:
        try:
            self.conn.send(msg, parts)
        except wire.WireError:
            self.die()

    def die(self) -> None:
        """The kernel is gone: remove its runtime directory (nobody else will) and take
        this process group, user subprocesses too, down."""
        try:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            os.killpg(os.getpgrp(), signal.SIGKILL)
        finally:
            os._exit(1)

    def serve_forever(self) -> None:
        for target, name in (
            (self._control_loop, "control"),
            (self._accept_peers, "peers"),
            (self._watch_parent, "parent-watch"),
            (self._flush_loop, "flush"),
        ):
            threading.Thread(target=target, name=name, daemon=True).start()
        self._install_streams()
        self.shell = make_shell(self)
        while True:
            try:
                msg = self.inbox.get()
                if msg is None:
                    break
                self._execute(*msg)
            except KeyboardInterrupt:
                continue
        self._shutdown()

    def _install_streams(self) -> None:
        sys.stdout = TaskStream(self, "stdout", sys.__stdout__)
        sys.stderr = TaskStream(self, "stderr", sys.__stderr__)

    def _shutdown(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        self.conn.close()
        self.listener.close()
        os._exit(0)

    def _watch_parent(self) -> None:
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            if os.getppid() != self.parent_pid:
                self.die()

    def _flush_loop(self) -> None:
        ticks = 0
        while True:
            time.sleep(FLUSH_SECONDS)
            for stream in (sys.stdout, sys.stderr):
                if isinstance(stream, TaskStream):
                    stream.flush()
            ticks += 1
            if ticks % STREAM_REPORT_TICKS == 0:
                self.channels.report_all()

    # -- control link -------------------------------------------------------------------

    def _control_loop(self) -> None:
        try:
            while True:
                msg, parts = self.conn.recv()
                try:
                    self._on_control(msg, parts)
                except Exception:
                    traceback.print_exc(file=sys.__stderr__)
        except (wire.WireError, OSError, EOFError):
            self.die()

    def _on_control(self, msg: tuple, parts: list) -> None:
        kind = msg[0]
        if kind == "run":
            spec = msg[1]
            self._prefetch(spec)
            self.inbox.put((spec, parts))
        elif kind == "interrupt":
            self._interrupt(msg[1])
        elif kind == "forget":
            self._record_outcome(msg[1], msg[2])
        elif kind == "get":
            _, req, name, version = msg
            threading.Thread(
                target=self._serve_get, args=(self.conn, ("value", req), name, version), daemon=True
            ).start()
        elif kind == "peers":
            self.peer_addresses = dict(msg[1])
        elif kind == "shutdown":
            self.inbox.put(None)

    def _interrupt(self, task_id: int | None) -> None:
        with self.cond:
            busy = self.current is not None and self.interruptible
            if busy and (task_id is None or task_id == self.current):
                signal.pthread_kill(self._main_ident, signal.SIGINT)

    def _record_outcome(self, task_id: int, reason: str | None) -> None:
        with self.cond:
            self.outcomes[task_id] = reason
            self.cond.notify_all()

    # -- values to others ------------------------------------------------------------------

    def _accept_peers(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_peer, args=(sock,), daemon=True).start()

    def _serve_peer(self, sock: socket.socket) -> None:
        try:
            wire.tune(sock)
            wire.handshake_server(sock, self.key)
        except wire.WireError:
            sock.close()
            return
        conn = Connection(sock)
        source = None
        try:
            (kind, source), _ = conn.recv()
            if kind != "hello":
                raise wire.FrameError("peer did not say who it is")
            while True:
                msg, parts = conn.recv()
                if msg[0] == "get":
                    _, req, name, version = msg
                    threading.Thread(
                        target=self._serve_get, args=(conn, ("value", req), name, version), daemon=True
                    ).start()
                else:
                    self.channels.on_peer_message(source, msg, parts, conn)
        except (wire.WireError, OSError, ValueError):
            conn.close()
            if source is not None:
                self.channels.on_peer_gone(source)

    def _serve_get(self, conn: Connection, reply: tuple, name: str, version: int) -> None:
        """Send ``name`` at ``version`` once it exists here; the socket does the waiting."""
        with self.cond:
            while version not in self.outcomes and self.versions.get(name) != version:
                self.cond.wait()
            failure = self.outcomes.get(version) if self.versions.get(name) != version else None
            present = self.versions.get(name) == version and name in self.ns
            value = self.ns.get(name)
        try:
            if failure is not None:
                conn.send((*reply, "failed", failure))
            elif not present:
                conn.send((*reply, "missing", None))
            else:
                served = time.monotonic()
                try:
                    parts = wire.dumps_value(name, value)
                except SerializationError as exc:
                    conn.send((*reply, "error", f"{exc} (on worker {self.id})"))
                    return
                conn.send((*reply, "ok", served), parts)
        except wire.WireError:
            return

    # -- values from others --------------------------------------------------------------------

    def peer_link(self, dest: int) -> PeerClient:
        address = self.peer_addresses.get(dest)
        if address is None:
            raise ChannelError(f"worker {dest} is not running")
        return self._peer(dest, address)

    def _peer(self, source: int, address: str) -> PeerClient:
        peer = self.peers.get(source)
        if peer is None or peer.address != address or peer._broken:
            peer = self.peers[source] = PeerClient(self, source, address)
        return peer

    def _prefetch(self, spec: dict) -> None:
        """Start fetching remote inputs now, while earlier tasks may still run here."""
        staged = {}
        for name, version, source in spec["deps"]:
            if source in (self.id, 0):
                continue
            address = spec["peers"].get(source)
            if address is None:
                future = Future()
                future.set_exception(InputUnavailable(f"worker {source}, which holds {name!r}, is gone"))
            else:
                future = self._peer(source, address).request(name, version)
            future.started = time.monotonic()
            staged[name] = future
        if staged:
            self.staged[spec["id"]] = staged

    def _gather(self, spec: dict, parts: list) -> tuple[dict[str, Any], set[str]]:
        """The task's inputs as {name: value}, and the names that must be undefined."""
        kernel_parts = wire.unpack_values(spec["kernel_values"], parts)
        staged = self.staged.pop(spec["id"], {})
        values, undefined = {}, set()
        for name, version, source in spec["deps"]:
            if source == self.id:
                self._check_local(name, version)
            elif source == 0:
                values[name] = wire.loads_value(name, kernel_parts[name], f"worker {self.id}")
                now = time.monotonic()
                size = sum(len(p) for p in kernel_parts[name])
                self.emit(("fetched", spec["id"], name, version, 0, size, now, now))
            else:
                found = self._receive(spec["id"], name, version, source, staged[name])
                if found is _MISSING:
                    undefined.add(name)
                else:
                    values[name] = found
        return values, undefined

    def _check_local(self, name: str, version: int) -> None:
        with self.cond:
            root = None if self.versions.get(name) == version else self.outcomes.get(version)
        if root is not None:
            raise InputUnavailable(f"input {name!r} is unavailable because {root}", root=root)

    def _receive(self, task_id: int, name: str, version: int, source: int, future: Future) -> Any:
        status, info, parts = future.result()
        if status == "failed":
            raise InputUnavailable(f"input {name!r} is unavailable because {info}", root=info)
        if status == "error":
            raise InputUnavailable(info)
        if status == "missing":
            return _MISSING
        value = wire.loads_value(name, parts, f"worker {self.id}")
        size = sum(len(p) for p in parts)
        self.emit(("fetched", task_id, name, version, source, size, max(info, future.started), time.monotonic()))
        return value

    # -- running a task ---------------------------------------------------------------------

    def _execute(self, spec: dict, parts: list) -> None:
        task_id = spec["id"]
        with self.cond:
            self.current = task_id
            self.interruptible = True
        try:
            try:
                values, undefined = self._gather(spec, parts)
            except InputUnavailable as exc:
                self._end_unrun(task_id, str(exc), exc.root)
                return
            except SerializationError as exc:
                self._end_unrun(task_id, str(exc), None)
                return
            except KeyboardInterrupt:
                self._end_unrun(task_id, "interrupted while waiting for its inputs", None)
                return
            self._install(values, undefined, spec)
            self._run(spec, wire.unpack_values(spec.get("payload", ()), parts[len(parts) - spec["payload_parts"]:]))
        finally:
            with self.cond:
                self.current = None
                self.interruptible = False

    def _install(self, values: dict[str, Any], undefined: set[str], spec: dict) -> None:
        with self.cond:
            self.ns.update(values)
            for name in undefined:
                self.ns.pop(name, None)
                self.versions.pop(name, None)
            for name, version, _ in spec["deps"]:
                if name in values:
                    self.versions[name] = version

    def _end_unrun(self, task_id: int, message: str, root: str | None) -> None:
        """The task did not run: cancelled (``root`` given) or failed getting its inputs."""
        if root is None:
            self._record_outcome(task_id, f"task #{task_id} on worker {self.id} failed ({message})")
        else:
            self._record_outcome(task_id, root)
        self.emit(("unrun", task_id, message, root, time.monotonic()))

    def _apply(self, call: dict, payload: dict[str, list]) -> _Outcome:
        """A function call sent by ``Cluster.map``/``mapreduce``: no cell, no namespace."""
        try:
            if "collect" in call:
                return _Outcome(self.accumulators.pop(call["collect"], NOTHING))
            for key in payload.keys() - {"item"}:
                self.functions[key] = wire.loads_value(key, payload[key], f"worker {self.id}")
            value = self.functions[call["fn"]](wire.loads_value("item", payload["item"], f"worker {self.id}"))
            if call.get("acc") is None:
                return _Outcome(value)
            key = call["acc"]
            if key in self.accumulators:
                value = self.functions[call["reduce"]](self.accumulators[key], value)
            self.accumulators[key] = value
            return _Outcome(None)
        except BaseException as exc:
            if isinstance(exc, SystemExit):
                raise
            user_frames = exc.__traceback__.tb_next or exc.__traceback__
            stb = self.shell.InteractiveTB.structured_traceback(type(exc), exc, user_frames)
            self.note_error(type(exc), exc, stb)
            return _Outcome(None, success=False)

    def _run(self, spec: dict, payload: dict[str, list]) -> None:
        task_id = spec["id"]
        started = time.monotonic()
        self.emit(("started", task_id, started))
        self._error = None
        self.channels.task_started()
        self.current_output_task = task_id
        self.returns_result = bool(spec.get("want_result"))
        before = {name: self.ns.get(name, _MISSING) for name in spec["writes"]}
        result = None
        if spec.get("apply") is not None:
            result = self._apply(spec["apply"], payload)
        elif spec["code"] is not None:
            self.shell.execution_count = spec.get("cell") or task_id
            result = self.shell.run_cell(spec["code"], store_history=False)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        self.current_output_task = None
        with self.cond:
            self.interruptible = False
        error = self._error if result is not None and not result.success else None
        written = spec["writes"] if error is None else self._rebound(before)
        sizes, missing = self._note_writes(task_id, written)
        outcome = None if error is None else f"task #{task_id} on worker {self.id} failed ({error[0]}: {error[1]})"
        if outcome is not None:
            self.channels.task_failed(outcome)
        else:
            self.channels.flush_all()
        self.channels.report_all()
        value_parts: list = []
        if error is None and spec.get("want_result") and result is not None and result.result is not None:
            value_parts = self._result_parts(result.result)
        self._record_outcome(task_id, outcome)
        info = {"t0": started, "t1": time.monotonic(), "error": error, "sizes": sizes, "missing": missing,
                "written": written}
        self.emit(("finished", task_id, info), value_parts)

    def _rebound(self, before: dict[str, Any]) -> list[str]:
        """Names a failed task bound before its error: they exist, as in a notebook."""
        return [name for name, old in before.items() if self.ns.get(name, _MISSING) is not old]

    def _note_writes(self, task_id: int, writes: list[str]) -> tuple[dict[str, int], list[str]]:
        sizes, missing = {}, []
        with self.cond:
            for name in writes:
                if name in self.ns:
                    self.versions[name] = task_id
                    sizes[name] = _size_of(self.ns[name])
                else:
                    self.versions.pop(name, None)
                    missing.append(name)
        return sizes, missing

    def _result_parts(self, value: Any) -> list:
        try:
            return wire.dumps_value("result", value)
        except SerializationError:
            return wire.dumps_value("result", _Unpicklable(repr(value)))

    def note_error(self, etype, evalue, stb: list[str]) -> None:
        name = getattr(etype, "__name__", str(etype))
        self._error = (name, str(evalue), list(stb))

    def publish_display(self, data: dict, metadata: dict, transient: dict, update: bool) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        self.emit(("display", self.current_output_task, data, metadata, transient, update))

    def clear_output(self, wait: bool) -> None:
        self.emit(("clear", self.current_output_task, wait))


class _Outcome:
    """What ``run_cell`` returns, for a function call."""

    def __init__(self, result: Any, success: bool = True):
        self.result = result
        self.success = success




class _Unpicklable:
    """Stands for a task result that could not be pickled: keeps its repr."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


_MISSING = object()


def _size_of(value: Any) -> int:
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    try:
        return sys.getsizeof(value)
    except TypeError:
        return 0


def make_shell(worker: Worker):
    """An IPython shell whose displays, results and tracebacks go to the coordinator."""
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class ForwardingDisplayPublisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
            worker.publish_display(data, metadata or {}, transient or {}, update)

        def clear_output(self, wait=False):
            worker.clear_output(wait)

    class ForwardingDisplayHook(DisplayHook):
        def write_output_prompt(self):
            pass

        def compute_format_data(self, result):
            if worker.returns_result:
                return {}, {}
            return super().compute_format_data(result)

        def write_format_data(self, format_dict, md_dict=None):
            worker.publish_display(format_dict, md_dict or {}, {"execute_result": True}, False)

        def finish_displayhook(self):
            self._is_active = False

    class WorkerShell(InteractiveShell):
        displayhook_class = ForwardingDisplayHook
        display_pub_class = ForwardingDisplayPublisher

        def _showtraceback(self, etype, evalue, stb):
            worker.note_error(etype, evalue, stb)

        def enable_gui(self, gui=None):
            pass

    config = Config()
    config.HistoryManager.enabled = False
    return WorkerShell.instance(config=config, user_ns=worker.ns, colors=worker.colors)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ipyworkers.worker")
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--n-workers", type=int, required=True)
    parser.add_argument("--connect", required=True, help="coordinator's Unix socket")
    parser.add_argument("--runtime-dir", required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--colors", default="nocolor")
    return parser.parse_args(argv)


def _read_key() -> bytes:
    """The session key comes through stdin (or the environment), never the command line."""
    key_hex = os.environ.pop("IPYWORKERS_KEY", None) or sys.stdin.readline().strip()
    if not key_hex:
        raise SystemExit("ipyworkers worker: no session key on stdin or in IPYWORKERS_KEY")
    return bytes.fromhex(key_hex)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    key = _read_key()
    if os.getppid() != args.parent_pid:
        raise SystemExit("ipyworkers worker: parent is already gone")
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    conn = wire.connect_unix(args.connect, key)
    peer_path = os.path.join(args.runtime_dir, f"peer-{args.id}-{os.getpid()}.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(peer_path)
    listener.listen(64)
    worker = Worker(args.id, args.n_workers, conn, listener, key, args.parent_pid, args.colors, args.runtime_dir)
    conn.send(("hello", {"id": args.id, "pid": os.getpid(), "host": socket.gethostname(), "peer": peer_path}))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.setswitchinterval(SWITCH_SECONDS)
    worker.serve_forever()


