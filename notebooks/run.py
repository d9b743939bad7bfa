"""Execute a notebook headless on a real kernel and write the executed copy.

    python notebooks/run.py notebooks/tour.ipynb notebooks/tour.executed.ipynb

Widget state is stored in the notebook, so the output that streamed into the
non-blocking cells' output areas is kept; it is also printed here, cell by cell.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def widget_outputs(notebook: nbformat.NotebookNode) -> dict[str, list[dict]]:
    state = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return {model_id: model.get("state", {}).get("outputs", []) for model_id, model in state.items()}


def summarize(notebook: nbformat.NotebookNode) -> str:
    widgets = widget_outputs(notebook)
    lines = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        first = cell.source.splitlines()[0] if cell.source else ""
        lines.append(f"[{index}] {first}")
        for output in cell.get("outputs", []):
            lines.extend("    " + line for line in _text(output, widgets).splitlines())
    return "\n".join(lines)


def _text(output: dict, widgets: dict[str, list[dict]]) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return output["text"]
    if kind == "error":
        return f"{output['ename']}: {output['evalue']}"
    data = output.get("data", {})
    if WIDGET_VIEW in data:
        return "".join(_text(o, widgets) for o in widgets.get(data[WIDGET_VIEW]["model_id"], []))
    if "image/png" in data:
        return "<figure>\n"
    return data.get("text/plain", "") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--timeout", type=int, default=300)
    args = parser.parse_args(argv)
    notebook = nbformat.read(args.notebook, as_version=4)
    client = NotebookClient(notebook, timeout=args.timeout, kernel_name="python3",
                            store_widget_state=True, resources={"metadata": {"path": str(args.notebook.parent)}})
    started = time.monotonic()
    try:
        client.execute()
    finally:
        nbformat.write(notebook, args.output)
    print(summarize(notebook))
    print(f"\nexecuted {args.notebook} in {time.monotonic() - started:.1f} s; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
