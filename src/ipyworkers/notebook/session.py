"""What the magics of one kernel share, the base of each group of them: the cluster
``%workers start`` started, its dashboard, and the non-blocking cells ``%wait`` has not
yet waited for."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics

from ..kernel.cluster import Cluster
from ..kernel.tasks import Task, TaskGroup


class MagicsSession(Magics):
    def __init__(self, shell):
        super().__init__(shell)
        self.cluster: Cluster | None = None
        self.dashboard = None
        self._unwaited: list[Task | TaskGroup] = []

    def _cluster(self) -> Cluster:
        if self.cluster is None or not self.cluster.running:
            raise UsageError("no workers are running: start them with %workers start N")
        return self.cluster


def has_widget_frontend(shell: Any) -> bool:
    if getattr(shell, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True
