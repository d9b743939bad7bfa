"""Shared by the notebook generators: cells as (kind, source) pairs to an .ipynb."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """``kind`` is "md", "code", or "code+error" (a cell expected to raise)."""
    out = []
    for kind, source in cells:
        if kind == "md":
            out.append(new_markdown_cell(source))
            continue
        cell = new_code_cell(source)
        if kind == "code+error":
            cell.metadata["tags"] = ["raises-exception"]
        out.append(cell)
    for index, cell in enumerate(out):
        cell["id"] = f"cell-{index}"
    notebook = new_notebook(cells=out)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def write(cells: list[tuple[str, str]], name: str) -> Path:
    path = Path(__file__).with_name(name)
    nbformat.write(build(cells), path)
    print(f"wrote {path}")
    return path
