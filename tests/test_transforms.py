"""The cell transformer of the kernel's analysis and the workers' shells gives exactly what
IPython's own gives."""

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from ipyworkers.transforms import PlainCellTransformer

CELLS = [
    "1",
    "x = 1\ny = x + 1\ny",
    "def f(a, b):\n    return a / b\n",
    "  indented = 1\n  indented\n",
    ">>> x = 1\n>>> x\n",
    "In [1]: x = 2\n",
    "\n\n\nx = 3\n",
    "print('%d' % 3)",
    "a = b != c",
    "%time x = 1",
    "%%timeit\nx = 1\n",
    "files = !ls\n",
    "!echo hi",
    "x = %pwd",
    "len?",
    "len??",
    "x = 1\nprint?\n",
    ",f a b",
    ";f a b",
    "/f a b",
    "  /f a b",
    "x = (1,\n     2)\n",
    "s = '''\n/not a call\n'''",
    "a = 1; /f x",
    "x = 1 \\\n    + 2\n",
    "if x:\n    %time y = 1\n",
    "'unterminated",
    "",
    "# only a comment ?",
    "async def g():\n    await h()\n",
]


@pytest.mark.parametrize("cell", CELLS)
def test_same_as_ipython(cell: str) -> None:
    assert PlainCellTransformer().transform_cell(cell) == TransformerManager().transform_cell(cell)


def test_added_transformers_still_run() -> None:
    """A transformer the user adds may look for anything: every cell is tokenized for it."""
    looked = []

    class Spy:
        @classmethod
        def find(cls, tokens_by_line):
            looked.append(tokens_by_line)

    manager = PlainCellTransformer()
    manager.token_transformers.append(Spy)
    manager.transform_cell("x = 1\n")
    assert looked
