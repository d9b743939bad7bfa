"""The README's ```python blocks run as written.

Every ```python block of ``README.md`` is one of:

* **skipped**, by a rule that names why (``skip_reason``): the block's first line is a
  ``# needs: ...`` comment (other hosts, a file you bring), or the block contains a phrase
  of ``NEEDS`` (``--ssh``, ``X.txt``, ``big.log``, ...);
* a **script** (it uses ``Cluster(`` and no magic): run with this Python, in a
  temporary directory; it must exit 0;
* a **notebook cell** (anything else): run in order on one real kernel, as a frontend
  runs it; each cell, and a ``%wait`` after it (so the error of a non-blocking cell is
  reported against its block), must end without an error. A block meant to fail says
  so on its first line with ``# raises``; none does today.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_session import KernelSession

README = Path(__file__).resolve().parent.parent / "README.md"

NEEDS = {
    "--ssh": "workers on other hosts (ssh)",
    "--slurm": "a Slurm allocation",
    "--mpi": "mpiexec",
    "--join": "a worker started by hand on another host",
    "gpu1": "an SSH host named gpu1",
    "X.txt": "X.txt, and your own read_lines and parse",
    "stream(frm=1)": "the producer of the X.txt block before it",
    "big.log": "big.log, and your own count_errors and word_count",
}
"""A block containing one of these phrases is skipped, for the reason given."""

FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def readme_blocks() -> list[tuple[int, str]]:
    """(line number, code) of every ```python block, in order."""
    text = README.read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in FENCE.finditer(text)]


def skip_reason(code: str) -> str | None:
    first = code.lstrip().split("\n", 1)[0].strip()
    if first.startswith("# needs:"):
        return first[len("# needs:"):].strip()
    return next((f"needs {why}" for phrase, why in NEEDS.items() if phrase in code), None)


def is_script(code: str) -> bool:
    return "Cluster(" in code and not re.search(r"^\s*%", code, re.M)


def expects_error(code: str) -> bool:
    return code.lstrip().split("\n", 1)[0].strip().startswith("# raises")


BLOCKS = readme_blocks()


def test_every_block_is_run_or_skipped_by_a_named_rule():
    kinds = {"skipped": [], "script": [], "cell": []}
    for line, code in BLOCKS:
        kind = "skipped" if skip_reason(code) else "script" if is_script(code) else "cell"
        kinds[kind].append(line)
    print({k: v for k, v in kinds.items()})
    assert len(BLOCKS) >= 5, "the README's python blocks were not found"
    assert kinds["cell"] and kinds["script"], kinds


@pytest.mark.parametrize("line, code", [b for b in BLOCKS if is_script(b[1]) and not skip_reason(b[1])],
                         ids=lambda v: f"README line {v}" if isinstance(v, int) else "")
def test_script_block_runs(line, code, tmp_path):
    src = str(Path(__file__).resolve().parent.parent / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"README line {line}:\n{code}\n--- stderr:\n{done.stderr}"


def test_notebook_blocks_run_in_order_on_a_real_kernel(capsys, tmp_path):
    cells = [(line, code) for line, code in BLOCKS if not is_script(code) and not skip_reason(code)]
    skipped = [(line, skip_reason(code)) for line, code in BLOCKS if skip_reason(code)]
    with capsys.disabled():
        print("\nskipped README blocks: " + "; ".join(f"line {n}: {why}" for n, why in skipped))
    session = KernelSession(cwd=str(tmp_path))  # what the blocks write (say, --export DIR) goes there
    try:
        started = False
        for line, code in cells:
            result = session.execute(code, timeout=120)
            started = started or "%workers start" in code
            waited = session.execute("%wait", timeout=120) if started else None
            failed = result.status == "error" or (waited is not None and waited.status == "error")
            detail = result.error_text or (waited.error_text if waited is not None else "")
            if expects_error(code):
                assert failed, f"README line {line} is marked '# raises' but ran without an error:\n{code}"
            else:
                assert not failed, f"README line {line} failed:\n{code}\n---\n{detail}"
        session.execute("%workers stop")
    finally:
        session.shutdown()

