"""Explicit moves: kernel to workers (push), worker to workers (send), worker to kernel (pull)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ClusterError, SerializationError, TaskCancelled
from ..plan.dataflow import KERNEL
from ..serialize import dumps_value, loads_value
from . import events as ev
from .records import Submission
from .tasks import TaskGroup

if TYPE_CHECKING:
    from .cluster import Cluster


def push(cluster: Cluster, values: Mapping[str, Any], to: int | Sequence[int], block: bool = True) -> TaskGroup:
    """Put kernel-side values into workers' namespaces (they become the current values).
    Interrupted, it cancels what has not gone out yet: each worker gets a whole value or none."""
    cluster._require_running()
    ids = cluster.check_ids(to, allow_all=False)
    names = list(values)
    check_names(names)
    pickled = {name: dumps_value(name, value) for name, value in values.items()}
    cluster.namespace.update(values)
    cluster._scheduler.note_kernel_writes(names, label="push")
    group = _moves(cluster, names, ids, KERNEL, "push", pickled)
    return _finish_move(cluster, group, block)


def send(cluster: Cluster, names: Iterable[str], frm: int, to: int | Sequence[int], block: bool = False) -> TaskGroup:
    """Copy names from worker ``frm`` to workers ``to``, directly between them."""
    cluster._require_running()
    (source,) = cluster.check_ids(frm, allow_all=False)
    ids = cluster.check_ids(to, allow_all=False)
    names = list(names)
    check_names(names)
    for name in names:
        cluster._scheduler.require_defined(name)
    try:
        group = _moves(cluster, names, [i for i in ids if i != source], source, "send", {})
    except ValueError as exc:
        raise ClusterError(str(exc)) from None
    return _finish_move(cluster, group, block)


def _moves(cluster: Cluster, names: list[str], ids: list[int], source: int, verb: str, pickled: dict) -> TaskGroup:
    label = f"{verb} {', '.join(names)}"
    subs = [Submission(wid, None, frozenset(names), frozenset(), label, cluster._default_sink(), want_result=False,
                       sources=dict.fromkeys(names, source), kernel_values=pickled) for wid in ids]
    return TaskGroup(cluster._submit(subs))


def _finish_move(cluster: Cluster, group: TaskGroup, block: bool) -> TaskGroup:
    if not block:
        return group
    try:
        group.wait()
    except KeyboardInterrupt:
        for task in group:
            cluster.cancel(task)
        raise
    if group.error is not None:
        raise group.error
    return group


def pull(cluster: Cluster, names: str | Iterable[str], frm: int | None = None,
         timeout: float | None = None) -> dict[str, Any]:
    """Bring names into the kernel namespace (after the tasks that produce them) and return
    them. Fails at once if the worker it pulls from dies."""
    cluster._require_running()
    names = [names] if isinstance(names, str) else list(names)
    check_names(names)
    if frm is not None:
        cluster.check_ids(frm, allow_all=False)
    alive = set(cluster.worker_ids)
    requests = []
    try:
        for name in names:
            version, source = cluster._scheduler.pull_source(name, frm, alive)
            requests.append((name, version, source, *cluster._scheduler.request_pull(name, version, source)))
            cluster._supervisor.pump()
        values = {name: _await_pull(cluster, name, version, source, future, timeout)
                  for name, version, source, _, future in requests}
    finally:
        for *_, req, _future in requests:
            cluster._scheduler.forget_pull(req)
    cluster.namespace.update(values)
    return values


def _await_pull(cluster: Cluster, name: str, version: int, source: int, future, timeout: float | None) -> Any:
    started = time.monotonic()
    try:
        status, info, parts = future.result(timeout)
    except TimeoutError:
        raise TimeoutError(f"{name!r} did not arrive from worker {source} within {timeout} s") from None
    if status == "failed":
        raise TaskCancelled(source, version, f"{name!r} is unavailable because {info}")
    if status == "error":
        raise SerializationError(info)
    if status == "missing":
        raise NameError(f"name {name!r} is not defined on worker {source}")
    value = loads_value(name, parts, "the kernel")
    size = sum(len(part) for part in parts)
    cluster._scheduler.pulled(name, version, size)
    ended = time.monotonic()
    cluster.events.record(ev.TRANSFER, worker=KERNEL, at=ended, name=name, source=source, dest=KERNEL,
                       bytes=size, start=max(info, started), end=ended, version=version)
    return value


def check_names(names: list[str]) -> None:
    if not names:
        raise ClusterError("name at least one variable")
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise ClusterError(f"{name!r} is not a variable name")
