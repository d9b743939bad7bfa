"""The worker's variables, versioned: the only state its threads share.

Each name the dataflow tracks carries the *version* it holds here (the id of the task
that produced it), and each task that ended here leaves its *outcome* (None for
success, else the root cause of its failure). The main thread writes both as tasks
run; IO threads wait on them to serve a value once it exists, so the socket, not the
kernel, does the waiting.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

MISSING = object()


class Namespace:
    def __init__(self, provided: dict[str, Any]):
        self._provided = dict(provided)
        self.ns: dict[str, Any] = dict(provided)
        self.versions: dict[str, int] = {}
        self.outcomes: dict[int, str | None] = {}
        self.cond = threading.Condition()

    def restore_provided(self) -> None:
        """``worker_id``, ``send`` and the rest belong to this worker: a task that rebound
        one does not change it for the next task."""
        self.ns.update(self._provided)

    def record_outcome(self, task: int, reason: str | None) -> None:
        with self.cond:
            self.outcomes[task] = reason
            self.cond.notify_all()

    def wait_for(self, name: str, version: int) -> tuple[str, Any]:
        """Block until ``name`` holds ``version`` here, or its producer ended without it.
        Returns ('ok', value), ('failed', root cause) or ('missing', None)."""
        with self.cond:
            while version not in self.outcomes and self.versions.get(name) != version:
                self.cond.wait()
            if self.versions.get(name) == version:
                if name in self.ns:
                    return "ok", self.ns[name]
                return "missing", None
            failure = self.outcomes.get(version)
            return ("failed", failure) if failure is not None else ("missing", None)

    def local_failure(self, name: str, version: int) -> str | None:
        """The root cause, if ``name`` at ``version`` (made here) will never exist."""
        with self.cond:
            return None if self.versions.get(name) == version else self.outcomes.get(version)

    def install(self, values: dict[str, Any], undefined: set[str], deps: list[tuple[str, int, int]]) -> None:
        """A task's inputs arrived: they become the values here, at their versions."""
        with self.cond:
            self.ns.update(values)
            for name in undefined:
                self.ns.pop(name, None)
                self.versions.pop(name, None)
            for name, version, _ in deps:
                if name in values:
                    self.versions[name] = version

    def snapshot(self, names: list[str]) -> dict[str, Any]:
        return {name: self.ns.get(name, MISSING) for name in names}

    def rebound(self, before: dict[str, Any]) -> list[str]:
        """Names a failed task bound before its error: they exist, as in a notebook."""
        return [name for name, old in before.items() if self.ns.get(name, MISSING) is not old]

    def note_writes(self, task: int, names: list[str]) -> tuple[dict[str, int], list[str]]:
        """The task's writes are now the versions here; returns their sizes, and the names
        the analysis expected that the code did not bind."""
        sizes, missing = {}, []
        with self.cond:
            for name in names:
                if name in self.ns:
                    self.versions[name] = task
                    sizes[name] = size_of(self.ns[name])
                else:
                    self.versions.pop(name, None)
                    missing.append(name)
            self.cond.notify_all()
        return sizes, missing


def size_of(value: Any) -> int:
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    try:
        return sys.getsizeof(value)
    except TypeError:
        return 0
