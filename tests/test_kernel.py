"""End to end: a real ipykernel, driven as a notebook frontend drives it."""

from __future__ import annotations

import json
import re
import time

import psutil
import pytest

from kernel_session import KernelSession, plain


def worker_pids(session: KernelSession) -> list[int]:
    kernel = psutil.Process(session.pid)
    return [p.pid for p in kernel.children() if "ipyworkers.worker" in p.cmdline()]


def test_two_non_blocking_cells_run_at_once_and_stream_into_their_own_cells(nb):
    started = time.monotonic()
    ticks = nb.execute("%%worker 1\nimport time\nfor i in range(5):\n    print('tick', i, flush=True); time.sleep(0.4)")
    plot = nb.execute("%%worker 2\nimport matplotlib.pyplot as plt\nplt.plot([1, 3, 2]); plt.show()")
    assert ticks.status == plot.status == "ok"
    assert time.monotonic() - started < 1.5, "non-blocking cells must return at once"
    partial = nb.wait_for_cell(ticks, lambda text: "tick 1" in text, timeout=10)
    assert "tick 4" not in partial, "ticks must arrive one by one, while the loop runs"
    nb.wait_for_cell(plot, lambda text: "Figure" in text, timeout=20)
    waited = nb.execute("%wait")
    assert waited.status == "ok"
    nb.pump_for(0.2)
    assert nb.cell_text(ticks) == "".join(f"tick {i}\n" for i in range(5))
    (figure,) = nb.cell_outputs(plot)
    assert "image/png" in figure["data"]
    assert "tick" not in nb.cell_text(plot)


def test_blocking_cell_behaves_like_a_normal_cell(nb):
    result = nb.execute("%%worker 1 --block\nx = 6\nprint('computed')\nx * 7")
    assert result.status == "ok"
    assert result.stdout == "computed\n"
    assert any(o.get("data", {}).get("text/plain") == "42" for o in result.outputs)


def test_remote_error_becomes_the_cell_error_with_the_cell_lines(nb):
    result = nb.execute("%%worker 2 --block\na = 1\nb = 0\na / b")
    assert result.status == "error"
    text = result.error_text
    assert "ZeroDivisionError" in text and "line 3" in text and "a / b" in text
    assert "[worker 2]" in text
    number = result.reply["content"]["execution_count"]
    assert f"Cell In[{number}], line 3" in text, "the traceback names this cell, not the next"


def test_error_of_a_non_blocking_cell_shows_in_that_cell_and_wait_raises_it(nb):
    failing = nb.execute("%%worker 1\nraise ValueError('bad input file')")
    nb.wait_for_cell(failing, lambda text: "bad input file" in text, timeout=10)
    waited = nb.execute("%wait")
    assert waited.status == "error" and "ValueError" in waited.error_text


def test_worker_death_is_shown_in_its_cell_and_restart_brings_it_back(nb):
    dying = nb.execute("%%worker 1\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    nb.wait_for_cell(dying, lambda text: "worker 1 died (signal SIGKILL)" in text, timeout=10)
    alive = nb.execute("%%worker 2 --block\nprint('still fine')")
    assert alive.stdout == "still fine\n"
    refused = nb.execute("%%worker 1 --block\n1")
    assert refused.status == "error" and "worker 1 is dead" in refused.error_text
    assert nb.execute("%workers restart 1").status == "ok"
    assert nb.execute("%%worker 1 --block\nprint(worker_id)").stdout == "1\n"


def test_stop_button_interrupts_the_worker_which_keeps_its_variables(nb):
    nb.execute("%%worker 1 --block\nkept = 'yes'")
    msg_id = nb.kc.execute("%%worker 1 --block\nimport time\nwhile True:\n    time.sleep(0.05)")
    time.sleep(1.0)
    nb.interrupt()
    reply = nb.kc.get_shell_msg(timeout=20)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = nb.kc.get_shell_msg(timeout=20)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] in ("KeyboardInterrupt", "RemoteError")
    assert nb.execute("%%worker 1 --block\nprint(kept)").stdout == "yes\n"


@pytest.mark.parametrize(
    "line, message",
    [
        ("%%worker 99\nx = 1", "no worker 99: this cluster has workers 1..2"),
        ("%%worker abc\nx = 1", "worker ids are whole numbers from 1, not 'abc'"),
        ("%%worker\nx = 1", "the following arguments are required: ids"),
        ("%%parallel\na = 1  # @1\nb = 2  # @5", "line 2: there is no worker 5"),
        ("%workers start 2", "workers are already running"),
        ("%workers frobnicate", "unknown action 'frobnicate'"),
    ],
)
def test_bad_input_is_a_usage_error_and_spawns_nothing(nb, line, message):
    before = sorted(worker_pids(nb))
    result = nb.execute(line)
    assert result.status == "error" and result.error["ename"] == "UsageError"
    assert message in plain(result.error["evalue"])
    assert sorted(worker_pids(nb)) == before
    assert nb.execute("%%worker 1 --block\nprint('ok')").stdout == "ok\n"


@pytest.mark.parametrize(
    "line, message",
    [
        ("%%worker 1\nx = 1", "no workers are running"),
        ("%workers start 0", "whole number >= 1, not '0'"),
        ("%workers start -3", "whole number >= 1, not '-3'"),
        ("%workers start many", "whole number >= 1, not 'many'"),
    ],
)
def test_bad_input_before_start_spawns_nothing(kernel, line, message):
    result = kernel.execute(line)
    assert result.status == "error" and message in plain(result.error["evalue"])
    assert worker_pids(kernel) == []


def test_dataflow_between_cells_waits_for_the_producer(nb):
    producer = nb.execute("%%worker 1\nimport numpy as np, time\ntime.sleep(1)\nx = np.arange(10_000_000)")
    consumer = nb.execute("%%worker 2\nprint(x.sum())")
    nb.wait_for_cell(consumer, lambda text: "49999995000000" in text, timeout=30)
    assert producer.status == "ok"
    who = nb.execute("%who_has x")
    assert "worker 1, worker 2" in who.stdout


def iopub_bytes(messages: list[dict]) -> int:
    return sum(len(json.dumps(m["content"])) for m in messages)


def test_output_of_a_non_blocking_cell_is_display_outputs_updated_in_place(nb):
    start = len(nb.messages)
    cell = nb.execute(
        "%%worker 1\nimport time\nfrom IPython.display import HTML, display\n"
        "for i in range(3):\n    print('step', i, flush=True); time.sleep(0.3)\n"
        "display(HTML('<b>bold</b>'))\nprint('after')\n"
        "handle = display(HTML('v1'), display_id=True)\ntime.sleep(0.3)\nhandle.update(HTML('v2'))"
    )
    nb.wait_for_cell(cell, lambda text: "step 1" in text, timeout=10)
    assert nb.execute("%wait").status == "ok"
    nb.pump_for(0.5)
    messages = nb.messages[start:]
    assert not [m for m in messages if m["msg_type"].startswith("comm") and "OutputModel" in json.dumps(m["content"])]
    assert not [m for m in messages if m["msg_type"] == "stream"], "no stream output: display outputs only"
    outputs = nb.cell_outputs(cell)
    assert [plain(o["data"].get("text/plain", "")) for o in outputs[::2]] == ["step 0\nstep 1\nstep 2\n", "after\n"]
    assert [o["data"].get("text/html") for o in outputs[1::2]] == ["<b>bold</b>", "v2"]
    text_id = nb.cell_display_ids(cell)[0]
    updates = [m for m in messages if m["msg_type"] == "update_display_data"
               and m["content"]["transient"]["display_id"] == text_id]
    assert 3 <= len(updates) <= 12, "the text output is updated as lines come, a few times a second at most"


def test_output_of_a_million_lines_costs_at_most_three_times_a_plain_cell(nb):
    lines = 1_000_000
    code = f"for i in range({lines}):\n    print('line', i)"
    start, started = len(nb.messages), time.monotonic()
    plain_cell = nb.execute(code, timeout=600)
    plain_seconds, plain_bytes = time.monotonic() - started, iopub_bytes(nb.messages[start:])
    assert plain_cell.status == "ok"

    start, started = len(nb.messages), time.monotonic()
    cell = nb.execute("%%worker 1\n" + code)
    waited = nb.execute("%wait", timeout=600)
    worker_seconds = time.monotonic() - started
    nb.pump_for(0.5)
    worker_bytes = iopub_bytes(nb.messages[start:])
    assert waited.status == "ok", waited.error_text
    print(f"\n{lines:,} lines: plain cell {plain_seconds:.2f} s, {plain_bytes:,} B of iopub; "
          f"worker cell + %wait {worker_seconds:.2f} s, {worker_bytes:,} B "
          f"(ratios {worker_seconds / plain_seconds:.2f}, {worker_bytes / plain_bytes:.4f})")
    assert worker_seconds <= 3 * plain_seconds
    assert worker_bytes <= 3 * plain_bytes

    text = nb.cell_text(cell)
    assert text.startswith("… 999,800 lines not shown; all of it: ipyworkers.output(")
    assert text.split("\n", 1)[1] == "".join(f"line {i}\n" for i in range(999_800, lines))
    number = cell.reply["content"]["execution_count"]
    check = nb.execute(
        f"import ipyworkers\n_full = ipyworkers.output({number})\n"
        f"_task = next(t for t in ipyworkers.current().tasks() if getattr(t.sink, 'cell', None) == {number})\n"
        f"print(_full == ''.join(f'line {{i}}\\n' for i in range({lines})), _task.stdout == _full, _task.stderr)\n"
        "del _full, _task"
    )
    assert check.stdout == "True True \n", check.error_text


def test_block_output_is_batched_not_sent_line_by_line(nb):
    lines = 200_000
    started = time.monotonic()
    cell = nb.execute(f"%%worker 1 --block\nfor i in range({lines}):\n    print('line', i)", timeout=300)
    seconds = time.monotonic() - started
    assert cell.status == "ok", cell.error_text
    assert cell.stdout == "".join(f"line {i}\n" for i in range(lines))
    streams = [o for o in cell.outputs if o["msg_type"] == "stream"]
    print(f"\n{lines:,} lines with --block: {len(streams)} stream messages in {seconds:.2f} s")
    assert len(streams) <= seconds / 0.05 + 5


def test_output_of_a_200_mb_string_does_not_stall_the_kernel(nb):
    kernel = psutil.Process(nb.pid)
    rss_before = kernel.memory_info().rss
    cell = nb.execute("%%worker 1\nprint('x' * 200_000_000)")
    probes = []
    while True:
        started = time.monotonic()
        probe = nb.execute("import ipyworkers\nprint(len(ipyworkers.current().unfinished()))", timeout=60)
        probes.append(time.monotonic() - started)
        if probe.stdout == "0\n":
            break
    print(f"\n{len(probes)} kernel cells ran while 200 MB streamed in, the slowest in {max(probes):.2f} s")
    assert max(probes) < 5
    assert nb.execute("%wait", timeout=120).status == "ok"
    grown = kernel.memory_info().rss - rss_before
    nb.pump_for(0.5)
    text = nb.cell_text(cell)
    assert len(text) < 100_000
    assert text.startswith("… 199,934,465 characters not shown; all of it: ipyworkers.output(")
    assert text.endswith("x" * 1000 + "\n")
    number = cell.reply["content"]["execution_count"]
    check = nb.execute(
        f"_task = next(t for t in ipyworkers.current().tasks() if getattr(t.sink, 'cell', None) == {number})\n"
        "_s = _task.stdout\nimport os\n"
        "print(len(_s), _s.count('x'), [os.path.dirname(f) == str(ipyworkers.current().runtime_dir) "
        "for f in _task.sink.files])\ndel _s, _task"
    )
    assert check.stdout == "200000001 200000000 [True]\n", check.error_text
    print(f"kernel memory grew by {grown / 2**20:.0f} MiB")
    assert grown < 200 * 2**20, "the text past what is kept in memory goes to a file"


PARALLEL_CELL = """datadir = '/data/'      # @1
x = datadir + 'x.csv'   # @1
y = datadir + 'y.csv'   # @2
xy = x + y              # @1
print("all done")       # @2
"""


def test_parallel_cell_and_its_plan(nb):
    shown = nb.execute("%%parallel --show\n" + PARALLEL_CELL)
    assert "send(datadir, to=2)" in shown.stdout and "y = recv(frm=2)" in shown.stdout
    assert nb.execute("%who_has").stdout.strip() == "no variables on the workers yet"
    ran = nb.execute("%%parallel --block\n" + PARALLEL_CELL)
    assert ran.status == "ok", ran.error_text
    assert ran.stdout == "[worker 2] all done\n"
    pulled = nb.execute("%pull xy\nprint(xy)")
    assert pulled.stdout == "/data/x.csv/data/y.csv\n"


def test_kernel_variables_move_to_workers_and_back(nb):
    nb.execute("scale = 10")
    assert nb.execute("%%worker 1 --block\nprint(scale * 2)").stdout == "20\n"
    nb.execute("scale = 100")
    assert nb.execute("%%worker 1 --block\nprint(scale * 2)").stdout == "200\n"
    nb.execute("%push scale --to 2")
    nb.execute("%%worker 2 --block\nscale += 1")
    nb.execute("%send scale --from 2 --to 1")
    assert nb.execute("%%worker 1 --block\nprint(scale)").stdout == "101\n"
    assert nb.execute("%pull scale --from 1\nprint(scale)").stdout == "101\n"


def test_bad_moves_are_clear_errors(nb):
    assert "not defined in the kernel" in nb.execute("%push nothing_here --to 1").error_text
    assert "'ghost' is not defined on any worker" in nb.execute("%pull ghost").error_text
    assert "no worker 7" in nb.execute("%send a --from 7 --to 1").error_text


def test_killing_the_kernel_leaves_no_worker_alive():
    session = KernelSession()
    try:
        result = session.execute("%load_ext ipyworkers\n%workers start 2\n"
                                 "get_ipython().run_cell_magic('worker', '1', \"import subprocess; "
                                 "subprocess.Popen(['sleep', '60'])\")")
        assert result.status == "ok", result.error_text
        time.sleep(0.5)
        kernel = psutil.Process(session.pid)
        descendants = kernel.children(recursive=True)
        workers = [p for p in kernel.children() if "ipyworkers.worker" in p.cmdline()]
        assert len(workers) == 2, "each worker is a child of the kernel (its group guard is the worker's child)"
    finally:
        session.kill()
    deadline = time.monotonic() + 10
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in descendants):
        assert time.monotonic() < deadline, "workers outlived their kernel"
        time.sleep(0.05)


def test_dashboard_draws_bars_and_transfers_live_and_timeline_saves(nb, tmp_path):
    nb.execute("%%worker 1\nimport time\ntime.sleep(0.5)\nv = list(range(1000))")
    nb.execute("%%worker 2\nw = len(v)")

    def drawn() -> bool:
        svgs = nb.html_widgets_containing("ipyworkers-timeline")
        return any('class="task done"' in s and 'class="transfer"' in s and ">v " in s for s in svgs)

    nb.wait_for(drawn, timeout=20, what="bars and a transfer on the dashboard")
    page, trace = tmp_path / "run.html", tmp_path / "run.json"
    saved = nb.execute(f"%wait\n%timeline --save {page}\n%timeline --save {trace}")
    assert saved.status == "ok", saved.error_text
    assert 'class="transfer"' in page.read_text()
    import json

    events = json.loads(trace.read_text())["traceEvents"]
    assert {e["tid"] for e in events if e["ph"] == "X" and e.get("cat") == "done"} == {1, 2}
    bad = nb.execute(f"%timeline --save {tmp_path / 'run.png'}")
    assert bad.status == "error" and "ending in .html or .json" in bad.error_text


def test_state_line_says_queued_running_done_failed_and_stays_after_the_work(nb):
    first = nb.execute("%%worker 1\nimport time\ntime.sleep(2.5)\nslow = 1")
    number = first.reply["content"]["execution_count"]
    second = nb.execute("%%worker 2\nprint(slow + 1)")
    queued = nb.wait_for_state(second, lambda s: s.startswith("queued"), timeout=10)
    assert queued == f"queued on worker 2 (after In[{number}])"
    running = nb.wait_for_state(first, lambda s: s.startswith("running 1."), timeout=10)
    assert running.endswith(" s on worker 1")
    nb.wait_for_state(first, lambda s: s.startswith("running 2."), timeout=10)
    nb.wait_for_state(second, lambda s: s.startswith("done in"), timeout=20)
    assert nb.execute("%wait").status == "ok"
    nb.pump_for(0.3)
    assert nb.cell_state(first).startswith("done in 2.") and nb.cell_state(first).endswith(" s on worker 1")
    assert nb.cell_text(second) == "2\n", "the state line is an output of its own, above what the cell printed"
    failing = nb.execute("%%worker 1 2\nraise ValueError('bad input file')")
    state = nb.wait_for_state(failing, lambda s: s.count("failed") == 2, timeout=10)
    assert state.split("\n") == [f"failed on worker {w}: ValueError: bad input file" for w in (1, 2)]
    assert nb.execute("%wait").status == "error"


def test_cancel_a_cell_or_a_task_and_the_state_line_says_so(nb):
    running = nb.execute("%%worker 1\nimport time\nwhile True:\n    time.sleep(0.05)")
    queued = nb.execute("%%worker 1\nnever = 1")
    reader = nb.execute("%%worker 2\nprint(never)")
    nb.wait_for_state(running, lambda s: s.startswith("running"), timeout=10)
    first = running.reply["content"]["execution_count"]
    second = queued.reply["content"]["execution_count"]
    result = nb.execute(f"%workers cancel In[{second}]")
    assert result.status == "ok", result.error_text
    assert re.fullmatch(rf"task #\d+ on worker 1 \(In\[{second}\]\): cancelled before it started\n", result.stdout), \
        "behind a task its worker still runs, it has not started: it ends at once, and the worker skips it"
    nb.wait_for_state(queued, lambda s: s.startswith("cancelled on"), timeout=10)
    task_id = nb.execute(f"import ipyworkers\nprint(ipyworkers.current().tasks_of_cell({first})[0].id)").stdout.strip()
    stopped = nb.execute(f"%workers cancel #{task_id}   # the endless loop")
    assert stopped.stdout == f"task #{task_id} on worker 1 (In[{first}]): interrupted\n"
    assert nb.wait_for_state(running, lambda s: s.startswith("interrupted"), timeout=10) == "interrupted on worker 1"
    cancelled = nb.wait_for_state(queued, lambda s: s.startswith("cancelled on"), timeout=10)
    assert cancelled.startswith("cancelled on worker 1")
    state = nb.wait_for_state(reader, lambda s: s.startswith("cancelled on"), timeout=10)
    assert state.startswith("cancelled on worker 2: input 'never' is unavailable"), state
    for line, message in [("%workers cancel #999999", "there is no task #999999"),
                          ("%workers cancel In[999999]", "In[999999] has no tasks"),
                          ("%workers cancel 7", "'7' names no cell or task"),
                          ("%workers cancel", "what to cancel?")]:
        bad = nb.execute(line)
        assert bad.status == "error" and bad.error["ename"] == "UsageError" and message in plain(bad.error["evalue"])
    nb.execute("%wait")


def test_who_has_has_a_header_marks_lost_values_and_lists_only_bound_names(nb):
    nb.execute("%%worker 1 --block\nkept = list(range(1000))")
    nb.execute("%%worker 2 --block\nonly_here = 1")
    failed = nb.execute("%%worker 2 --block\nraise ValueError('before binding')\nnever_bound = 1")
    assert failed.status == "error"
    killed = nb.execute("%%worker 2 --block\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert killed.status == "error"
    lines = nb.execute("%who_has").stdout.splitlines()
    assert lines[0].split() == ["name", "held", "by", "size", "made", "by"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "worker 1" in rows["kept"] and "task #" in rows["kept"] and "In[" in rows["kept"]
    assert "lost (worker 2 died (signal SIGKILL))" in rows["only_here"], rows
    assert "never_bound" not in rows
    assert "not bound: task #" in nb.execute("%who_has never_bound").stdout
    restarted = nb.execute("%workers restart 2")
    match = re.match(r"restarted worker 2 \(pid - -> (\d+)\)\n", restarted.stdout)
    assert match and int(match[1]) in worker_pids(nb), restarted.stdout
    old = nb.execute("%%worker 1 --block\nimport os\nprint(os.getpid())").stdout.strip()
    again = nb.execute("%workers restart 1").stdout
    new = nb.execute("%%worker 1 --block\nimport os\nprint(os.getpid())").stdout.strip()
    assert again.startswith(f"restarted worker 1 (pid {old} -> {new})\n") and old != new
    assert nb.execute("%workers stop").stdout == "stopped 2 workers\n"
    assert nb.execute("%workers stop").stdout == "no workers were running\n"
    assert nb.execute("%workers start 2").status == "ok"


def test_workers_status_shows_each_workers_cpu_and_memory(nb):
    nb.execute("%%worker 1\nimport time\nend = time.time() + 2.5\nwhile time.time() < end:\n    pass")
    time.sleep(2.0)
    status = nb.execute("%workers status")
    text = next(o["data"]["text/plain"] for o in status.outputs if o.get("msg_type") == "execute_result")
    lines = text.splitlines()
    assert lines[0].split()[4:6] == ["cpu", "rss"]
    busy = lines[1].split()
    assert busy[0] == "1" and busy[4].endswith("%") and int(busy[4][:-1]) >= 30, text
    assert busy[6] == "MiB" and 5 < float(busy[5]) < 2000, text
    nb.execute("%wait")
