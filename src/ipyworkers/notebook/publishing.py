"""Publishing a cell's outputs: one display message (``publish``), and the
``ipyworkers-output`` thread (``Renderer``) that publishes the cells whose outputs changed,
at most every ``RENDER_SECONDS``, and ticks the state lines of cells with work in flight."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .outputs import CellOutput

log = logging.getLogger("ipyworkers.notebook")

RENDER_SECONDS = 0.15
IDLE_SECONDS = 5.0
TICK_SECONDS = 1.0
"""How often a cell with work in flight republishes its state line (its running time)."""


def display_pub() -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    return InteractiveShell.instance().display_pub


def publish(data: dict, metadata: dict, display_id: str, update: bool, parent: dict | None = None) -> None:
    """One ``display_data`` (or ``update_display_data``) message; with ``parent``, sent as
    part of that request (so a finished cell gets a new output), from any thread."""
    from IPython.display import publish_display_data

    pub = display_pub()
    token = None
    if parent and hasattr(pub, "set_thread_parent"):
        token = pub.set_thread_parent(parent)
    try:
        publish_display_data(data, metadata, transient={"display_id": display_id}, update=update)
    finally:
        if token is not None:
            pub.reset_thread_parent(token)


class Renderer:
    """The ``ipyworkers-output`` thread: publishes dirty cell outputs, at most every
    ``RENDER_SECONDS``. Started by the first output; ends after ``IDLE_SECONDS`` of quiet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirty: dict[int, CellOutput] = {}
        self._live: dict[int, CellOutput] = {}
        """Cells whose tasks have not all ended: their state lines tick every ``TICK_SECONDS``."""
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self, sink: CellOutput) -> None:
        with self._lock:
            self._dirty[id(sink)] = sink
            self._start_locked()
        self._wake.set()

    def watch(self, sink: CellOutput) -> None:
        with self._lock:
            self._live[id(sink)] = sink
            self._start_locked()

    def _start_locked(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ipyworkers-output", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        last = 0.0
        while True:
            with self._lock:
                live = bool(self._live)
            woke = self._wake.wait(TICK_SECONDS if live else IDLE_SECONDS)
            if not woke and not live:
                with self._lock:
                    if not self._dirty and not self._live:
                        self._thread = None
                        return
                continue
            if woke:
                time.sleep(max(0.0, last + RENDER_SECONDS - time.monotonic()))
            self._wake.clear()
            with self._lock:
                sinks = {**self._live, **self._dirty}
                self._dirty = {}
                for key in [k for k, s in self._live.items() if s.settled()]:
                    del self._live[key]
            sinks = list(sinks.values())
            last = time.monotonic()
            for sink in sinks:
                try:
                    sink.render()
                except Exception:
                    log.exception("publishing a cell's output failed")


renderer = Renderer()
