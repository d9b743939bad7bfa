"""Growing and shrinking a running cluster: ``Cluster.add``, ``Cluster.remove``.

Ids are never reused: added workers get the ids after the highest one so far, so a
name's holder, a task's worker and a timeline row keep meaning the same worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import ClusterError
from . import events as ev

if TYPE_CHECKING:
    from .cluster import Cluster


def add(cluster: Cluster, n: int, launcher: Any = None) -> list[int]:
    cluster._require_running()
    launcher = launcher or cluster.launcher
    check_count(n, launcher, cluster._force, n, already=len(cluster.worker_ids))
    ids = cluster._supervisor.next_ids(n)
    cluster._add_workers(ids, launcher)
    return ids


def remove(cluster: Cluster, ids: Iterable[int] | int) -> list[str]:
    cluster._require_running()
    targets = cluster.check_ids(ids, allow_all=True)
    if not set(cluster._members) - set(targets):
        raise ClusterError("a cluster keeps at least one worker: stop it instead (%workers stop)")
    lost = sorted(name for name, info in cluster.who_has(None).items()
                  if info["holders"] and set(info["holders"]) <= set(targets))
    for wid in targets:
        cluster._supervisor.retire(wid)
        cluster._apply(cluster._scheduler.remove_worker(wid, f"worker {wid} was removed"))
        cluster._members.remove(wid)
        cluster._launcher_of.pop(wid, None)
        cluster.events.record(ev.WORKER_STOPPED, worker=wid)
    return lost


def join_command(cluster: Cluster) -> str | None:
    launchers = [cluster.launcher, *cluster._launcher_of.values()]
    return next((ln.command for ln in launchers if getattr(ln, "command", None)), None)


def check_count(n: Any, launcher: Any, force: bool, given: Any, already: int = 0) -> None:
    """A whole number >= 1, and, for local workers, not more than this machine can take."""
    from .cluster import max_workers

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ClusterError(f"number of workers must be a whole number >= 1, not {given!r}")
    if getattr(launcher, "remote", False) or force or n + already <= max_workers():
        return
    raise ClusterError(
        f"{n + already} workers is more than {max_workers()} (4 per CPU on this machine), and each is a "
        f"process of its own; to start them anyway, pass force=True (%workers start {n} --force)")


def ranges(ids: list[int]) -> str:
    """[1, 2, 3, 5] -> '1..3, 5'."""
    out, start = [], None
    for i, wid in enumerate(ids):
        if start is None:
            start = wid
        if i + 1 == len(ids) or ids[i + 1] != wid + 1:
            out.append(str(wid) if start == wid else f"{start}..{wid}")
            start = None
    return ", ".join(out)
