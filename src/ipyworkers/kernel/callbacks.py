"""The thread that runs user callbacks (``Task.add_done_callback``).

Callbacks run here, after every lock is released, on a thread that reads no socket:
a callback that waits for another task, or submits one, cannot stall the readers
that would deliver what it waits for.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("ipyworkers.kernel")

_STOP = object()


class CallbackThread:
    def __init__(self, name: str = "ipyworkers-callbacks"):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._queue.put((fn, args))

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception:
                log.exception("a task callback raised")

    def stop(self, timeout: float = 5.0) -> None:
        """Run what is queued, then end the thread."""
        self._queue.put(_STOP)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
