"""Output sinks that need a notebook kernel: a non-blocking cell's outputs, or the
waiting cell itself.

``CellOutput`` (a non-blocking ``%%worker``/``%%parallel`` cell) writes ordinary notebook
outputs, no widgets: ``display_data`` outputs, each with a display id, updated in place
with ``update_display_data``. What the cell printed is one text output holding a bounded
tail (``TAIL_LINES`` lines, ``TAIL_CHARS`` characters) under a line such as
``… 999,800 lines not shown; all of it: ipyworkers.output(12)``; each rich display (a
figure, HTML) is an output of its own. A saved notebook keeps them as it keeps any output.

The whole text stays reachable: ``CellOutput.text()``, ``Task.stdout``/``Task.stderr`` and
``ipyworkers.output(cell)``. Each (worker, stream) keeps up to ``KEEP_CHARS`` in memory;
beyond that it goes on in a file in the cluster's runtime directory (named in the cell),
which ``%workers stop`` removes; the sink keeps the file open, so its text stays readable
from Python until the sink is dropped.

Threads. The coordinator's reader threads call the sink; a call only appends to the
model and marks the sink dirty, never touching iopub. One thread, ``ipyworkers-output``
(``publishing.Renderer``), has one job: publish the dirty sinks' outputs, at most every
``RENDER_SECONDS``; it ends when nothing was dirty for ``IDLE_SECONDS`` and is started
again by the next output. ``%wait`` also publishes the final state of the cells it waited
for from the kernel's main thread (``CellOutput.sync``), so a headless run (nbclient)
records it in the cell.

Where outputs land. The first output of a cell is displayed when the cell starts, in the
cell. A non-blocking cell has finished by the time its work prints, so outputs that come
later are published with the header of the request that ran the cell: JupyterLab,
Notebook 7 and VS Code put them in that cell. Updates go by display id, whatever cell
runs now. A headless runner (nbclient) only takes messages of the cell it runs, so there
a late output past the first one is lost, as background-thread output always is there;
the first one (text, or a figure of a cell that printed nothing) is kept.

Here: the sink (``CellOutput``) and the cells it keeps. Its parts: ``segments.py`` (the
text tail and rich displays), ``whole_text.py`` (the whole text, memory then a file),
``publishing.py`` (the messages, and the thread that sends them).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from typing import Any

from ..kernel.sinks import Sink
from . import cellstate
from .publishing import TICK_SECONDS, display_pub, publish, renderer
from .segments import TAIL_CHARS as TAIL_CHARS  # the tests import it from here
from .segments import Prefixer, RichDisplay, TextTail
from .segments import Prefixer as _Prefixer  # noqa: F401  (the tests import it from here)
from .segments import TextTail as _Text  # noqa: F401  (the tests import it from here)
from .segments import carriage_returns as _carriage_returns  # noqa: F401  (the tests import it from here)
from .whole_text import KEEP_CHARS as KEEP_CHARS  # the tests import it from here
from .whole_text import KeptText, close_all
from .whole_text import KeptText as _Kept  # noqa: F401  (the tests import it from here)

log = logging.getLogger("ipyworkers.notebook")

BLANK = {"text/plain": ""}

_cells: weakref.WeakValueDictionary[int, CellOutput] = weakref.WeakValueDictionary()
_displays: weakref.WeakValueDictionary[str, CellOutput] = weakref.WeakValueDictionary()
"""Which cell shows a worker's display id, so ``handle.update(...)`` in a later cell
updates the output where it is. Reader threads of several workers use it: under ``_registry``."""
_registry = threading.Lock()


def output(cell: int, stream: str = "stdout", worker: int | None = None) -> str:
    """Everything a non-blocking cell printed (``In [cell]``): its stdout, or ``stream``,
    of ``worker`` or, if None, of every worker it ran on, worker by worker."""
    sink = _cells.get(cell)
    if sink is None:
        raise KeyError(f"no output of cell {cell} is kept: it ran no non-blocking worker code, "
                       "or its tasks are gone")
    return sink.text(stream, worker)


def running_cell_number(shell: Any) -> int | None:
    """The number the running cell's prompt shows (``In [N]``). Not ``shell.execution_count``:
    IPython 9 counts a cell before running it, earlier versions after."""
    result = getattr(getattr(shell, "displayhook", None), "exec_result", None)
    return getattr(result, "execution_count", None)



class CellOutput(Sink):
    """The outputs of one non-blocking cell, as display outputs updated in place.

    Make it in the cell, on the kernel's main thread: it displays the cell's first
    output (empty until something arrives) and remembers the cell's request. ``cell`` is
    the cell's number (for ``ipyworkers.output(cell)``); ``spill_dir`` is where text past
    ``KEEP_CHARS`` goes (the cluster's runtime directory; a temporary file otherwise).
    """

    def __init__(self, prefix_lines: bool = False, cell: int | None = None, spill_dir: Any = None,
                 show_state: bool = False):
        self.cell = cell
        self._spill_dir = None if spill_dir is None else str(spill_dir)
        self._prefix = Prefixer() if prefix_lines else None
        self._lock = threading.Lock()
        """Guards the model; the reader threads take it to append, the renderer to read."""
        self._render_lock = threading.Lock()
        """Held while publishing, so two threads never publish this cell's states out of order."""
        self._segments: list[TextTail | RichDisplay] = []
        self._kept: dict[tuple[int, str], KeptText] = {}
        self._clear_pending = False
        self._dirty = False
        self._slots: list[str] = []
        self._shown: list[tuple[int, int] | None] = []
        self._finalizer = weakref.finalize(self, close_all, self._kept)
        self._parent = dict(getattr(display_pub(), "parent_header", None) or {})
        if cell is not None:
            _cells[cell] = self
        self._tasks: list = []
        self._waits: Any = None
        self._state_slot = f"ipyworkers-state-{uuid.uuid4().hex}" if show_state else None
        self._state_shown: tuple[Any, str, float] | None = None
        if self._state_slot is not None:
            publish(*cellstate.bundle([("queued", "submitted")]), self._state_slot, update=False)
        self._slots.append(f"ipyworkers-{uuid.uuid4().hex}")
        self._shown.append(None)
        publish(BLANK, {}, self._slots[0], update=False)

    # -- the state line ------------------------------------------------------------------------

    def watch(self, tasks: list, waits: Any = None) -> None:
        """Show the state of ``tasks`` in the state line, live, until they end; ``waits(task)``
        says which tasks a queued one waits for."""
        with self._lock:
            self._tasks, self._waits = list(tasks), waits
            wake = self._mark_locked()
        for task in tasks:
            task.add_done_callback(self._task_ended)
        renderer.watch(self)
        if wake:
            renderer.wake(self)

    def _task_ended(self, task: Any) -> None:
        with self._lock:
            wake = self._mark_locked()
        if wake:
            renderer.wake(self)

    def settled(self) -> bool:
        """Have the watched tasks all ended (so the state line stops ticking)?"""
        return all(t.done() for t in self._tasks)

    def state(self) -> str:
        """The state line(s) as shown, in plain text."""
        return "\n".join(line for _, line in cellstate.state_lines(self._tasks, self._waits))

    def _state_plan(self) -> tuple[dict, dict] | None:
        """The state line's display data, if it should be republished now: its kind changed,
        or a second passed and its text did."""
        if self._state_slot is None or not self._tasks:
            return None
        try:
            lines = cellstate.state_lines(self._tasks, self._waits)
        except Exception:
            log.exception("the state line of a cell failed")
            return None
        kinds, text, now = tuple(k for k, _ in lines), "\n".join(t for _, t in lines), time.monotonic()
        shown = self._state_shown
        if shown is not None and (shown[1] == text or (shown[0] == kinds and now - shown[2] < TICK_SECONDS * 0.9)):
            return None
        self._state_shown = (kinds, text, now)
        return cellstate.bundle(lines)

    # -- Sink: reader threads; append and mark dirty, nothing more -------------------------------

    def stream(self, worker, name, text):
        with self._lock:
            kept = self._kept.get((worker, name))
            if kept is None:
                kept = self._kept[(worker, name)] = KeptText(f"cell{self.cell}-worker{worker}-{name}")
            kept.add(text, self._spill_dir)
            if self._prefix is not None:
                text = self._prefix(worker, name, text)
            self._open_text_locked().add(name, text)
            wake = self._mark_locked()
        if wake:
            renderer.wake(self)

    def display(self, worker, data, metadata, transient, update):
        display_id = (transient or {}).get("display_id")
        if update:
            if display_id is None:
                return
            with _registry:
                owner = _displays.get(display_id)
            if owner is not None:
                owner._update_display(display_id, data, metadata or {})
            return
        with self._lock:
            self._clear_if_pending_locked()
            self._segments.append(RichDisplay(data, metadata or {}, display_id))
            wake = self._mark_locked()
        if display_id is not None:
            with _registry:
                _displays[display_id] = self
        if wake:
            renderer.wake(self)

    def _update_display(self, display_id: str, data: dict, metadata: dict) -> None:
        with self._lock:
            for segment in self._segments:
                if isinstance(segment, RichDisplay) and segment.display_id == display_id:
                    segment.replace(data, metadata)
            wake = self._mark_locked()
        if wake:
            renderer.wake(self)

    def clear(self, worker, wait):
        with self._lock:
            if wait:
                self._clear_pending = True
                return
            self._segments = []
            wake = self._mark_locked()
        if wake:
            renderer.wake(self)

    def error(self, worker, ename, evalue, traceback):
        body = "\n".join(traceback) if traceback else f"{ename}: {evalue}"
        self._end_text("error", body)

    def note(self, worker, text):
        self._end_text("note", text)

    def _end_text(self, style: str, text: str) -> None:
        with self._lock:
            self._open_text_locked().end_with(style, text)
            wake = self._mark_locked()
        if wake:
            renderer.wake(self)

    def _open_text_locked(self) -> TextTail:
        self._clear_if_pending_locked()
        last = self._segments[-1] if self._segments else None
        if isinstance(last, TextTail) and not last.trailer:
            return last
        text = TextTail()
        self._segments.append(text)
        return text

    def _clear_if_pending_locked(self) -> None:
        if self._clear_pending:
            self._segments = []
            self._clear_pending = False

    def _mark_locked(self) -> bool:
        """Mark dirty; True if the renderer must be told (it was clean)."""
        was, self._dirty = self._dirty, True
        return not was

    # -- the whole text ------------------------------------------------------------------------

    def text(self, name: str = "stdout", worker: int | None = None) -> str:
        """Everything ``worker`` (default: every worker, in order) wrote to ``name``."""
        with self._lock:
            keys = sorted(k for k in self._kept if k[1] == name and worker in (None, k[0]))
            snapshots = [self._kept[k].snapshot() for k in keys]
        return "".join(KeptText.read(snap) for snap in snapshots)

    def kept_text(self, worker: int, name: str) -> str:
        """For ``Task.stdout``/``Task.stderr``."""
        return self.text(name, worker)

    @property
    def files(self) -> list[str]:
        """The files holding text past what is kept in memory (in the cluster's runtime
        directory: gone after ``%workers stop``, though ``text()`` still reads them)."""
        with self._lock:
            return [k.path for k in self._kept.values() if k.path is not None]

    def _where(self) -> str:
        where = f"ipyworkers.output({self.cell})" if self.cell is not None else "task.stdout, task.stderr"
        files = [k.path for k in self._kept.values() if k.path is not None]
        return where + (f", or {', '.join(files)}" if files else "")

    # -- publishing (the renderer, or the main thread through sync) ----------------------------------

    def sync(self) -> None:
        """Publish the current state now, from this thread."""
        self.render()

    def render(self) -> None:
        with self._render_lock:
            state = self._state_plan()
            if state is not None:
                publish(*state, self._state_slot, update=True)
            with self._lock:
                self._dirty = False
                where = self._where()
                plan = []
                for index, segment in enumerate(self._segments):
                    state = (segment.uid, segment.version)
                    if index < len(self._shown) and self._shown[index] == state:
                        continue
                    plan.append((index, *segment.bundle(where)))
                    self._set_shown(index, state)
                for index in range(len(self._segments), len(self._slots)):
                    if self._shown[index] is not None:
                        plan.append((index, BLANK, {}))
                        self._shown[index] = None
            for index, data, metadata in plan:
                if index < len(self._slots):
                    publish(data, metadata, self._slots[index], update=True)
                else:
                    self._slots.append(f"ipyworkers-{uuid.uuid4().hex}")
                    publish(data, metadata, self._slots[index], update=False, parent=self._parent)

    def _set_shown(self, index: int, state: tuple[int, int]) -> None:
        while len(self._shown) <= index:
            self._shown.append(None)
        self._shown[index] = state
