"""The magics through a real kernel: their arguments and help, and the faults a notebook
user meets (interrupts, stuck or dying workers, limits). Every wait is bounded.

The pure helpers (comment stripping, the status table) are tested in-process first.
"""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import time

import psutil
import pytest

from ipyworkers.kernel.cluster import max_workers
from ipyworkers.notebook.magics import _uncommented
from ipyworkers.notebook.tables import StatusTable
from kernel_session import CellResult, KernelSession, plain
from polling import wait_until

# -- in-process ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, kept",
    [
        ("start 3   # workers 1..3", "start 3   "),
        ("# only a comment", ""),
        ("1 --block#not a comment", "1 --block#not a comment"),
        ("--save 'run #2.html'  # quoted", "--save 'run #2.html'  "),
        ('--save "a \\" #b.html" # c', '--save "a \\" #b.html" '),
        ("x --to 1", "x --to 1"),
    ],
)
def test_a_trailing_comment_starts_at_a_hash_that_starts_a_word_outside_quotes(line, kept):
    assert _uncommented(line) == kept


def test_status_table_shows_waiting_and_unresponsive_workers_readably():
    rows = [
        {"id": 1, "pid": 11, "host": "h", "state": "busy", "task": "#3 time.sleep(30)", "queued": 0, "names": []},
        {"id": 2, "pid": 12, "host": "h", "state": "waiting for x from worker 1", "task": "#4 y = x + 1",
         "queued": 1, "names": ["a", "b"]},
        {"id": 3, "pid": 13, "host": "h", "state": "unresponsive: restart it (%workers restart 3)",
         "task": "#5 f()", "queued": 0, "names": []},
        {"id": 4, "pid": None, "host": "", "state": "dead", "task": None, "queued": 0, "names": []},
    ]
    table = StatusTable(rows)
    lines = repr(table).splitlines()
    assert lines[0].split() == ["id", "pid", "host", "state", "cpu", "rss", "task", "names"]
    assert "waiting for x from worker 1" in lines[2] and "#4 y = x + 1 (+1 queued)" in lines[2]
    assert "unresponsive: restart it (%workers restart 3)" in lines[3]
    assert lines[4].split()[:6] == ["4", "-", "-", "dead", "-", "-"]
    html = table._repr_html_()
    for kind in ("busy", "waiting", "unresponsive", "dead"):
        assert f"class='ipyworkers-{kind}'" in html
    assert "waiting for x from worker 1" in html and "(%workers restart 3)" in html


# -- through a kernel ---------------------------------------------------------------------------------




def submit(session: KernelSession, code: str) -> str:
    """Send a cell without waiting for it (to interrupt it)."""
    return session.kc.execute(code)


def reply_to(session: KernelSession, msg_id: str, timeout: float) -> CellResult:
    """The reply to a cell sent with ``submit``, and its outputs; ``TimeoutError`` past ``timeout``."""
    deadline = time.monotonic() + timeout
    reply = None
    while reply is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no reply within {timeout} s")
        try:
            msg = session.kc.get_shell_msg(timeout=0.02)
            if msg["parent_header"].get("msg_id") == msg_id:
                reply = msg
        except queue.Empty:
            pass
        session.pump_for(0.02)
    session.wait_for(lambda: any(m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                                 and m["parent_header"].get("msg_id") == msg_id for m in session.messages),
                     timeout=max(1.0, deadline - time.monotonic()), what="the kernel to go idle")
    outputs = [{"msg_type": m["msg_type"], **m["content"]} for m in session.messages
               if m["parent_header"].get("msg_id") == msg_id
               and m["msg_type"] in ("stream", "display_data", "execute_result", "error")]
    return CellResult(msg_id, reply, outputs)


def wait_for_output(session: KernelSession, msg_id: str, text: str, timeout: float) -> None:
    """Until the cell sent as ``msg_id`` (still running: the kernel is busy) prints ``text``."""
    def printed() -> bool:
        return text in "".join(m["content"].get("text", "") for m in session.messages
                               if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream")

    session.wait_for(printed, timeout=timeout, what=f"the cell to print {text!r}")


def status_text(session: KernelSession) -> str:
    result = session.execute("%workers status")
    assert result.status == "ok", result.error_text
    return "".join(o["data"]["text/plain"] for o in result.outputs if o["msg_type"] == "execute_result")


def wait_for_state(session: KernelSession, worker: int, pattern: str, timeout: float) -> str:
    """Poll ``%workers status`` until worker's row matches ``pattern``; returns that row."""
    deadline = time.monotonic() + timeout
    while True:
        rows = {line.split()[0]: line for line in status_text(session).splitlines()[1:]}
        row = rows.get(str(worker), "")
        if re.search(pattern, row):
            return row
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker {worker} never matched {pattern!r} within {timeout} s; its row: {row!r}")
        time.sleep(0.1)


def worker_processes(session: KernelSession) -> list[psutil.Process]:
    kernel = psutil.Process(session.pid)
    out = []
    for proc in kernel.children():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE or "ipyworkers.worker" in " ".join(proc.cmdline()):
                out.append(proc)
        except psutil.NoSuchProcess:
            pass
    return out


def worker_pid(session: KernelSession, worker: int) -> int:
    result = session.execute(f"import ipyworkers\nprint(ipyworkers.current().status()[{worker - 1}]['pid'])")
    assert result.status == "ok", result.error_text
    return int(result.stdout)


def page_text(result: CellResult) -> str:
    """What ``%magic?`` shows: the page payload of the execute reply."""
    pages = [p["data"]["text/plain"] for p in result.reply["content"].get("payload", []) if p.get("source") == "page"]
    assert pages, f"no page payload in {result.reply['content']}"
    return plain(pages[0])


# -- arguments and help --------------------------------------------------------------------------------


def test_help_of_every_magic_lists_its_arguments(kernel):
    workers = page_text(kernel.execute("%workers?"))
    for usage in ("%workers start [N] [--force]", "%workers stop", "%workers restart [ID ...]",
                  "%workers interrupt [ID ...]", "%workers status", "--force"):
        assert usage in workers, workers
    worker = page_text(kernel.execute("%%worker?"))
    assert "%%worker [--block] ids [ids ...]" in worker and "Run the cell on workers" in worker
    parallel = page_text(kernel.execute("%%parallel?"))
    assert "--default ID" in parallel and "--show" in parallel and "# @ID" in parallel
    push = page_text(kernel.execute("%push?"))
    assert "--to" in push and "whole value or none" in push
    for magic in ("%pull?", "%send?", "%wait?", "%who_has?", "%timeline?"):
        assert "::" in page_text(kernel.execute(magic)), magic


def test_trailing_comments_are_ignored_on_every_magic_line(kernel):
    try:
        started = kernel.execute("%workers start 2   # workers 1..2")
        assert started.status == "ok", started.error_text
        assert "2 workers ready" in started.stdout
        ran = kernel.execute("%%worker 1 --block  # on the first worker\nv = 21\nprint(v)")
        assert ran.stdout == "21\n", ran.error_text
        kernel.execute("w = 2")
        moved = kernel.execute("%push w --to 2  # the kernel's w\n%send v --from 1 --to 2 # v too\n"
                               "%wait 1 2  # both\n%pull v --from 2  # back\nprint(v * w)")
        assert moved.stdout == "42\n", moved.error_text
        assert "worker 1, worker 2" in kernel.execute("%who_has v  # where?").stdout
        shown = kernel.execute("%%parallel --show  # plan only\na = 1  # @1\nb = a  # @2")
        assert "send(a, to=2)" in shown.stdout, shown.error_text
        assert kernel.execute("%workers status  # all").status == "ok"
    finally:
        assert kernel.execute("%workers stop  # done").status == "ok"
        kernel.execute("%reset -f")


def test_usage_errors_name_the_magic_and_the_bad_word(nb):
    cases = {
        "%workers": "%workers: the following arguments are required: action",
        "%workers stop 1": "takes no worker ids",
        "%workers status --force": "--force goes only with start",
        "%workers restart x": "worker ids are whole numbers from 1, not 'x'",
        "%workers interrupt 9": "no worker 9: this cluster has workers 1..2",
        "%%worker 1 --blok\nx = 1": "unrecognized arguments: --blok",
        "%push --to 1": "the following arguments are required: NAME",
        "%send a --to 1": "the following arguments are required: --from",
        "%pull 'x": "No closing quotation",
    }
    for line, message in cases.items():
        result = nb.execute(line)
        assert result.status == "error" and result.error["ename"] == "UsageError", line
        assert message in plain(result.error["evalue"]), (line, result.error["evalue"])


# -- limits and starting -----------------------------------------------------------------------------------


def test_start_above_the_limit_needs_force_and_force_starts_them(kernel):
    limit = max_workers()
    refused = kernel.execute(f"%workers start {limit * 5}")
    assert refused.status == "error" and refused.error["ename"] == "UsageError"
    message = plain(refused.error["evalue"])
    assert f"limit of {limit}" in message and f"%workers start {limit * 5} --force" in message
    assert worker_processes(kernel) == []
    try:
        forced = kernel.execute(f"%workers start {limit + 1} --force", timeout=90)
        assert forced.status == "ok", forced.error_text
        assert f"{limit + 1} workers ready" in forced.stdout
        assert len(worker_processes(kernel)) == limit + 1
    finally:
        kernel.execute("%workers stop")
    assert worker_processes(kernel) == []


@pytest.mark.parametrize("delay", [0.1, 0.3])
def test_an_interrupted_start_leaves_no_worker_and_no_zombie(kernel, delay):
    msg_id = submit(kernel, "%workers start 6")
    time.sleep(delay)
    kernel.interrupt()
    result = reply_to(kernel, msg_id, timeout=30)
    if result.status == "ok":
        kernel.execute("%workers stop")
        pytest.skip(f"the start took less than {delay} s: the interrupt came after it")
    assert result.error["ename"] == "KeyboardInterrupt", result.reply["content"]
    assert "the workers it had started are stopped" in result.error["evalue"]
    deadline = time.monotonic() + 5
    while worker_processes(kernel):
        left = [(p.pid, p.status()) for p in worker_processes(kernel)]
        assert time.monotonic() < deadline, f"an interrupted start left {left}"
        time.sleep(0.05)
    try:
        again = kernel.execute("%workers start 2")
        assert again.status == "ok", again.error_text
        assert kernel.execute("%%worker 2 --block\nprint(worker_id)").stdout == "2\n"
    finally:
        kernel.execute("%workers stop")


# -- interrupts that report the truth ------------------------------------------------------------------------


def test_interrupt_reports_that_nothing_was_busy(nb):
    assert nb.execute("%workers interrupt").stdout == "no worker was busy\n"


def test_a_worker_that_ignores_sigint_is_reported_and_restart_fixes_it(nb, tmp_path):
    ignoring = tmp_path / "ignoring"
    nb.execute(f"%%worker 1\nimport signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
               f"open({str(ignoring)!r}, 'w').close()\ntime.sleep(30)")
    wait_until(ignoring.exists, what="the cell ignoring SIGINT")
    started = time.monotonic()
    report = nb.execute("%workers interrupt 1")
    assert report.status == "ok", report.error_text
    assert time.monotonic() - started < 5
    assert "worker 1 did not stop" in report.stdout and "%workers restart 1" in report.stdout
    assert nb.execute("%workers restart 1").status == "ok"
    assert nb.execute("%%worker 1 --block\nprint(worker_id)").stdout == "1\n"


def test_stop_button_ends_a_blocking_cell_whose_worker_ignores_it(nb):
    msg_id = submit(nb, "%%worker 1 --block\nimport signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                        "print('ignoring', flush=True)\ntime.sleep(30)")
    wait_for_output(nb, msg_id, "ignoring", timeout=10)
    pressed = time.monotonic()
    nb.interrupt()
    result = reply_to(nb, msg_id, timeout=10)
    assert time.monotonic() - pressed < 4.5, "one press ends the cell within the interrupt's 2 s wait"
    assert result.status == "error" and result.error["ename"] == "KeyboardInterrupt"
    assert "worker 1 did not stop" in result.error["evalue"] and "%workers restart 1" in result.error["evalue"]
    assert nb.execute("%%worker 2 --block\nprint('other worker fine')").stdout == "other worker fine\n"
    assert nb.execute("%workers restart 1").status == "ok"
    assert nb.execute("%%worker 1 --block\nprint(worker_id)").stdout == "1\n"


def test_stop_button_stops_a_parallel_cell_and_cancels_what_is_queued(nb):
    nb.execute("%%worker 1\nimport time\ntime.sleep(30)")  # the blocking cell queues behind this
    msg_id = submit(nb, "%%parallel --block\na = 1  # @1\nimport time  # @2\nprint('asleep', flush=True)\n"
                        "time.sleep(30)")
    wait_for_output(nb, msg_id, "asleep", timeout=10)
    nb.interrupt()
    result = reply_to(nb, msg_id, timeout=10)
    assert result.status == "error" and "KeyboardInterrupt" in result.error_text
    # worker 1's own cell runs on; the part of the cell queued behind it was cancelled at once: it never runs
    wait_for_state(nb, 1, r"\bbusy\b(?!.*queued)", timeout=5)
    assert nb.execute("%workers interrupt 1").stdout == "worker 1: interrupted\n"
    assert nb.execute("%%worker 1 --block\nprint('a' in globals())").stdout == "False\n"


def test_a_sigstopped_worker_is_unresponsive_and_one_press_ends_wait(nb):
    nb.execute("%%worker 1\nimport time\ntime.sleep(30)")
    wait_for_state(nb, 1, r"\bbusy\b", timeout=10)
    pid = worker_pid(nb, 1)
    os.kill(pid, signal.SIGSTOP)
    try:
        msg_id = submit(nb, "%wait")
        time.sleep(0.5)
        pressed = time.monotonic()
        nb.interrupt()
        result = reply_to(nb, msg_id, timeout=10)
        assert time.monotonic() - pressed < 4.5, "one press ends %wait"
        assert result.status == "error" and result.error["ename"] == "KeyboardInterrupt", result.reply["content"]
        assert "worker 1 is unresponsive" in result.error["evalue"]
        assert "%workers restart 1" in result.error["evalue"]
        wait_for_state(nb, 1, r"unresponsive: restart it \(%workers restart 1\)", timeout=5)
        assert nb.execute("%workers restart 1").status == "ok"
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert nb.execute("%%worker 1 --block\nprint(worker_id)").stdout == "1\n"
        wait_for_state(nb, 1, r"\bidle\b", timeout=5)
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def test_a_task_waiting_for_its_inputs_shows_it_and_can_be_interrupted(nb):
    nb.execute("%%worker 1\nimport time\ntime.sleep(30)\nx = 1")
    nb.execute("%%worker 2\ny = x + 1")
    wait_for_state(nb, 2, r"waiting for x from worker 1", timeout=10)
    assert nb.execute("%workers interrupt 2").stdout == "worker 2: interrupted\n"
    waited = nb.execute("%wait 2", timeout=10)
    assert waited.status == "error" and "interrupted while waiting for its inputs" in waited.error_text
    assert nb.execute("%%worker 2 --block\nprint('fine')").stdout == "fine\n"
    wait_for_state(nb, 2, r"\bidle\b", timeout=5)
    assert nb.execute("%workers interrupt 1").stdout == "worker 1: interrupted\n"


# -- moving variables under faults --------------------------------------------------------------------


def test_an_interrupted_push_leaves_the_worker_usable(nb):
    made = nb.execute("import numpy as np\nbig = np.ones(50_000_000)")  # 400 MB
    assert made.status == "ok", made.error_text
    msg_id = submit(nb, "%push big --to 1")
    time.sleep(random.uniform(0.05, 0.2))
    nb.interrupt()
    reply_to(nb, msg_id, timeout=30)  # interrupted, or done if it was quick: either way whole or absent
    started = time.monotonic()
    assert nb.execute("%%worker 1 --block\nprint('ok')", timeout=20).stdout == "ok\n"
    assert time.monotonic() - started < 20
    wait_for_state(nb, 1, r"\bidle\b", timeout=5)
    nb.execute("del big")


def test_pull_from_a_worker_that_dies_fails_fast(nb):
    nb.execute("%%worker 1\nimport os, time\ntime.sleep(1)\nos._exit(1)\nx = 1")
    started = time.monotonic()
    pulled = nb.execute("%pull x", timeout=10)
    assert pulled.status == "error" and "worker 1 died" in pulled.error_text
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("block", ["", " --block"])
def test_parallel_default_that_names_no_worker_is_a_usage_error(nb, block):
    result = nb.execute(f"%%parallel --default 7{block}\na = 1\nb = 2  # @2", timeout=10)
    assert result.status == "error" and result.error["ename"] == "UsageError"
    assert "no worker 7" in plain(result.error["evalue"])
    assert nb.execute("%%worker 2 --block\nprint('ok')").stdout == "ok\n"


def test_status_shows_cpu_and_memory_and_warns_when_a_worker_nears_the_machines_memory():
    from ipyworkers.kernel.resources import warning

    assert warning(1, 2 << 30, (16 << 30, 12 << 30)) is None
    text = warning(2, 14 << 30, (16 << 30, 1 << 30))
    assert text.startswith("worker 2 uses 14.0 GiB, 88% of this machine's memory (1.0 GiB available)")
    rows = [{"id": 1, "pid": 11, "host": "h", "state": "idle", "cpu": 97.4, "rss": 150 << 20, "queued": 0,
             "names": []},
            {"id": 2, "pid": 12, "host": "h", "state": "busy", "cpu": 3.0, "rss": 14 << 30, "queued": 0,
             "names": [], "memory_warning": text}]
    table = StatusTable(rows)
    lines = repr(table).splitlines()
    assert lines[1].split()[4:7] == ["97%", "150.0", "MiB"]
    assert lines[-1] == f"warning: {text}"
    assert "ipyworkers-warning" in table._repr_html_()
