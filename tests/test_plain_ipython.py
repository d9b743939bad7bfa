"""Terminal IPython (no widgets): output comes back as text with a [worker N] prefix."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap


def test_magics_in_plain_ipython_print_prefixed_output(tmp_path):
    script = tmp_path / "session.ipy"
    script.write_text(textwrap.dedent("""\
        TICKS = "import time\\nfor i in range(3):\\n    print('tick', i)\\n    time.sleep(0.1)"
        %load_ext ipyworkers
        %workers start 2
        get_ipython().run_cell_magic('worker', '1', TICKS)
        get_ipython().run_cell_magic('worker', '2', "x = 6 * 7\\nx")
        %wait
        %timeline
        %workers stop
    """))
    result = subprocess.run(
        [sys.executable, "-m", "IPython", "--quick", "--no-banner", "--colors=nocolor", str(script)],
        capture_output=True, text=True, timeout=120,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "2 workers ready" in out
    ticks = [out.index(f"[worker 1] tick {i}") for i in range(3)]
    assert ticks == sorted(ticks)
    assert "[worker 2] 42" in out
    assert "speed-up" in out
    assert re.search(r"^worker 1\s+\|[ #>.]*#", out, re.MULTILINE), out
