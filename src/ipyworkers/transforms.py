"""IPython's input transformations, without tokenizing a cell that holds no IPython syntax.

IPython turns ``%magic``, ``!cmd``, ``x?`` and the autocall escapes into Python before it
runs a cell, in a worker's shell, and the kernel does the same before it analyses one
(``kernel/code.py``). Finding them means tokenizing the whole cell (for a one-line cell,
some 35 µs of a 210 µs run; more for a longer one), yet most cells are plain Python.
"""

from __future__ import annotations

import re

from IPython.core.inputtransformer2 import TransformerManager

IPYTHON_SYNTAX = re.compile(r"[%!?]|^[ \t]*[,;/]", re.MULTILINE)
"""What each of IPython's token transformations starts from: a magic, shell or help
character anywhere (``a = %x``, ``a = !x``, ``%x``, ``!x``, ``x?``), or an autocall escape
first on a line (``,x``, ``;x``, ``/x``)."""


class PlainCellTransformer(TransformerManager):
    """A ``TransformerManager`` that skips the token transformations of a cell in which
    none of them could find anything; with transformers added or removed, it does it all."""

    def __init__(self) -> None:
        super().__init__()
        self._stock = list(self.token_transformers)

    def do_token_transforms(self, lines: list[str]) -> list[str]:
        if self.token_transformers == self._stock and not IPYTHON_SYNTAX.search("".join(lines)):
            return lines
        return super().do_token_transforms(lines)
