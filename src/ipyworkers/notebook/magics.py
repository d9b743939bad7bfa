"""IPython magics: parse the line, call ``Cluster``, show the result. Nothing more.

Each magic declares its arguments with IPython's ``magic_arguments`` (as ``%%capture``
does), so ``%workers?``, ``%%worker?`` and the rest print their full help. Arguments that
several magics share are small decorators in ``arguments.py``. A ``# comment`` at the end
of a magic's line (or of a cell magic's first line) is ignored.

The magics live in groups by job, each a ``magics_class`` over ``MagicsSession`` (what
they share): ``workers_magic.py`` (``%workers``, ``%timeline``), ``run_magics.py``
(``%%worker``, ``%%parallel``, ``%wait``; waiting itself is ``waiting.py``) and
``move_magics.py`` (``%push``, ``%pull``, ``%send``, ``%who_has``). ``WorkerMagics``
joins them into the one instance a kernel registers.
"""

from __future__ import annotations

from typing import Any

from ..kernel.cluster import Cluster
from .arguments import parse as _parse  # noqa: F401  (tests import it from here)
from .arguments import uncommented as _uncommented  # noqa: F401  (tests import it from here)
from .move_magics import MoveMagics
from .run_magics import RunMagics
from .workers_magic import WorkersMagic


def _joined_magics_class(cls: type) -> type:
    """``magics_class`` for a class whose magics are its bases' (each a ``magics_class``):
    ``magics_class`` itself records only the methods decorated since the previous class."""
    cls.registered = True
    cls.magics = {kind: {name: method for base in cls.__bases__ for name, method in base.magics[kind].items()}
                  for kind in ("line", "cell")}
    return cls


@_joined_magics_class
class WorkerMagics(WorkersMagic, RunMagics, MoveMagics):
    """Every magic of ipyworkers, on one shared session: the instance a kernel registers."""


_magics: WorkerMagics | None = None


def load(ipython: Any) -> None:
    global _magics
    _magics = WorkerMagics(ipython)
    ipython.register_magics(_magics)
    ipython.events.register("post_run_cell", _note_kernel_cell)


def unload(ipython: Any) -> None:
    global _magics
    try:
        ipython.events.unregister("post_run_cell", _note_kernel_cell)
    except ValueError:
        pass
    if _magics is not None:
        _magics._workers_stop(quiet=True)
    _magics = None


def current() -> Cluster | None:
    """The cluster the magics of this kernel use, if started."""
    return None if _magics is None else _magics.cluster


def _note_kernel_cell(result: Any) -> None:
    """A cell that ran in the kernel itself may rebind names the workers also use."""
    cluster = current()
    if cluster is None or not cluster.running:
        return
    raw = getattr(getattr(result, "info", None), "raw_cell", None)
    if raw:
        cluster.note_kernel_cell(raw)
