"""What ``Cluster.status()`` says of each worker, from the scheduler's and the supervisor's views."""

from __future__ import annotations

from typing import Any

from ..plan.dataflow import KERNEL


def status_rows(member_ids: list[int], work: dict[int, dict[str, Any]],
                process_row: Any) -> list[dict[str, Any]]:
    """A row per worker: id, pid, host, state, current task, queued count, names held.
    ``work``: the scheduler's rows; ``process_row(wid)``: the supervisor's, or None."""
    rows = []
    for wid in member_ids:
        proc = process_row(wid)
        if proc is None or proc["lost"] or wid not in work:
            rows.append({"id": wid, "pid": None, "host": "", "state": "dead", "task": None, "queued": 0,
                         "names": []})
            continue
        rows.append({"id": wid, "pid": proc["pid"], "host": proc["host"],
                     "state": _state(wid, proc, work[wid]), **work[wid], "launcher": proc["launcher"],
                     "relayed_from": proc["relayed_from"],
                     **{k: proc.get(k) for k in ("cpu", "rss", "memory_warning")}})
    return rows


def _state(wid: int, proc: dict[str, Any], work: dict[str, Any]) -> str:
    if proc["unresponsive"]:
        return f"unresponsive: restart it (%workers restart {wid})"
    if work["waiting"]:
        inputs = ", ".join(f"{name} from {'the kernel' if src == KERNEL else f'worker {src}'}"
                           for name, src in work["waiting"])
        return f"waiting for {inputs}"
    return "busy" if work["task_id"] else "idle"
