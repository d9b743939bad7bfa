"""Per-worker scripts: their text, that they compile, and that their channels work."""

from __future__ import annotations

import queue
import random
import runpy
import sys
import threading
import types

import pytest

from ipyworkers.plan.export import (
    RECV,
    RUN,
    SEND,
    ChannelOrderError,
    DeadlockError,
    ExportError,
    Op,
    build_program,
    check_channels,
    export_program,
    run_script,
    script,
)
from ipyworkers.plan.parallel import split
from ipyworkers.plan.schedule import auto_plan

SEED = """import os
datadir = '/data/'                    # @1
x = os.path.join(datadir, 'x.csv')    # @1
y = os.path.join(datadir, 'y.csv')    # @2
xy = x + y                            # @1
"""


def code_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_scripts_write_the_transfers_as_channel_calls_in_order():
    program = build_program(split(SEED, [1, 2]), [1, 2])
    one, two = code_lines(script(program, 1)), code_lines(script(program, 2))
    assert one == [
        "import os", "datadir = '/data/'                    # @1", "x = os.path.join(datadir, 'x.csv')    # @1",
        "send(datadir, to=2)", "y = recv(frm=2)", "xy = x + y                            # @1",
    ]
    assert two == ["import os", "datadir = recv(frm=1)", "y = os.path.join(datadir, 'y.csv')    # @2",
                   "send(y, to=1)"]
    assert program.finals == {1: ["datadir", "x", "xy"], 2: ["y"]}


def test_every_written_file_compiles(tmp_path):
    paths = export_program(split(SEED, [1, 2]), [1, 2], tmp_path / "out")
    assert [p.name for p in paths] == ["worker_1.py", "worker_2.py", "run.py"]
    for path in paths:
        compile(path.read_text(), str(path), "exec")
    run = paths[-1].read_text()
    assert "ipyworkers.Cluster(len(WORKERS))" in run and "cluster.run(program(k), on=k)" in run
    assert "cluster.wait()" in run and "cluster.pull(" in run and "return 1" in run


def test_sends_follow_the_receivers_order_not_the_senders():
    cell = "a = 1  # @1\nb = 2  # @1\nc = b  # @2\nz = 0  # @3\nd = a  # @2\n"
    program = build_program(split(cell, [1, 2, 3]), [1, 2, 3])
    assert [op.text for op in program.ops[1] if op.kind == SEND] == ["send(b, to=2)", "send(a, to=2)"]
    assert [op.text for op in program.ops[2] if op.kind == RECV] == ["b = recv(frm=1)", "a = recv(frm=1)"]
    check_channels(program, capacity=1)


def test_a_value_rebound_later_is_sent_before_it_changes():
    cell = "x = 1  # @1\ny = x  # @2\nx = 2  # @1\nz = x  # @2\n"
    program = build_program(split(cell, [1, 2]), [1, 2])
    assert [op.text for op in program.ops[1]] == ["x = 1  # @1", "send(x, to=2)", "x = 2  # @1", "send(x, to=2)"]
    assert execute(program)[2] == {"y": 1, "z": 2, "x": 2}


def test_a_value_received_once_is_not_received_again():
    cell = "x = 1  # @1\ny = x  # @2\nw = 0  # @1\nz = x + 1  # @2\n"
    program = build_program(split(cell, [1, 2]), [1, 2])
    assert [op.text for op in program.ops[2] if op.kind == RECV] == ["x = recv(frm=1)"]


def test_auto_plan_exports_and_its_channels_work():
    names = [f"t{i}" for i in range(1, 9)]
    cell = "import time\n" + "".join(f"{n} = time.sleep(0)\n" for n in names) + f"total = [{', '.join(names)}]\n"
    auto = auto_plan(cell, [1, 2])
    program = build_program(auto, [1, 2])
    combine = auto.placement[9]
    other = 3 - combine
    sends = [op.name for op in program.ops[other] if op.kind == SEND]
    receives = [op.name for op in program.ops[combine] if op.kind == RECV]
    assert sends == receives and len(sends) == 4
    assert "predicted makespan" in run_script(program)
    check_channels(program, capacity=1)
    assert execute(program)[combine]["total"] == [None] * 8


def test_no_deadlock_even_when_every_send_waits_for_the_last_one_to_be_taken():
    """Found by a stress run: with sends placed as early as possible (ahead of the
    sender's own receives), a one-message window deadlocked three workers here."""
    cell = ("h = 3  # @1\nh = h + 1\ng = h + h + 2  # @1\nd = g + h + 3  # @2\nd = d + h + 4  # @1\n"
            "d = g + d + 5\nb = d + d + 6  # @2\nb = b + g + 7  # @4\nh = h + h + 8  # @4\n")
    program = build_program(split(cell, [1, 2, 3, 4]), [1, 2, 3, 4])
    check_channels(program, capacity=1)
    finals_match_a_plain_run(cell, program)


def test_checker_finds_a_cycle_of_waits():
    ops = {
        1: [Op(RECV, "b = recv(frm=2)", 2, "b", 2), Op(SEND, "send(a, to=2)", 2, "a", 1)],
        2: [Op(RECV, "a = recv(frm=1)", 1, "a", 1), Op(SEND, "send(b, to=1)", 1, "b", 2)],
    }
    with pytest.raises(DeadlockError, match="worker 1 is stuck at `b = recv"):
        check_channels(ops)


def test_checker_finds_receives_in_the_wrong_order():
    ops = {
        1: [Op(SEND, "send(a, to=2)", 2, "a", 1), Op(SEND, "send(b, to=2)", 2, "b", 2)],
        2: [Op(RECV, "b = recv(frm=1)", 1, "b", 2), Op(RECV, "a = recv(frm=1)", 1, "a", 1)],
    }
    with pytest.raises(ChannelOrderError, match="expects 'b' from worker 1 but gets 'a'"):
        check_channels(ops)


def test_checker_counts_the_send_window():
    ops = {
        1: [Op(SEND, "send(a, to=2)", 2, "a", 1), Op(SEND, "send(b, to=2)", 2, "b", 2),
            Op(RECV, "c = recv(frm=2)", 2, "c", 3)],
        2: [Op(SEND, "send(c, to=1)", 1, "c", 3), Op(SEND, "send(d, to=1)", 1, "d", 4),
            Op(RECV, "a = recv(frm=1)", 1, "a", 1), Op(RECV, "b = recv(frm=1)", 1, "b", 2)],
    }
    with pytest.raises(ChannelOrderError, match="never receives"):
        check_channels(ops, capacity=2)  # d is sent, never received
    with pytest.raises(DeadlockError):
        check_channels(ops, capacity=1)


def test_names_from_outside_the_cell_are_reported():
    program = build_program(split("a = data + 1  # @1\n", [1, 2]), [1, 2])
    assert program.outside == ["data"]
    assert "does not define: data" in script(program, 1) and "(data)" in run_script(program)


def test_workers_must_be_numbered_as_a_cluster_numbers_them():
    with pytest.raises(ExportError, match="1..n"):
        build_program(split("a = 1  # @2\n", [2, 3]), [2, 3])


# -- running the programs without a cluster -------------------------------------------------


def execute(program) -> dict[int, dict]:
    """Run the scripts' operations in the order the channel replay completes them, each
    worker in its own namespace; a send takes the value its worker has at that moment."""
    spaces = {w: {} for w in program.workers}
    queues: dict[tuple[int, int], list] = {}
    for worker, op in check_channels(program):
        if op.kind == RUN:
            exec(op.text, spaces[worker])
        elif op.kind == SEND:
            queues.setdefault((worker, op.peer), []).append(spaces[worker][op.name])
        else:
            spaces[worker][op.name] = queues[(op.peer, worker)].pop(0)
    return {w: {k: v for k, v in ns.items() if k != "__builtins__"} for w, ns in spaces.items()}


SETUP = "K = 7\ndef f(v):\n    return v * 2 + K\n"


def random_cell(rng: random.Random, workers: int, tagged: bool) -> str:
    names = "abcdgh"
    defined: list[str] = []
    lines = [] if tagged and rng.random() < 0.3 else SETUP.splitlines()
    for index in range(rng.randint(3, 12)):
        target = rng.choice(names)
        if defined and rng.random() < 0.8:
            args = rng.sample(defined, k=min(len(defined), rng.randint(1, 2)))
            expr = " + ".join(args) + f" + {index}"
            expr = f"f({expr})" if "def f" in "\n".join(lines) and rng.random() < 0.4 else expr
        else:
            expr = str(rng.randint(0, 9))
        tag = f"  # @{rng.randint(1, workers)}" if tagged and (index == 0 or rng.random() < 0.6) else ""
        lines.append(f"{target} = {expr}{tag}")
        defined.append(target)
    return "\n".join(lines) + "\n"


def finals_match_a_plain_run(cell: str, program) -> None:
    reference: dict = {}
    exec(cell, reference)
    spaces = execute(program)
    seen = set()
    for worker, names in program.finals.items():
        for name in set(names) - {"f"}:  # functions compare by identity
            assert spaces[worker][name] == reference[name], (cell, name)
            seen.add(name)
    assert seen >= set("abcdgh") & set(reference)


@pytest.mark.parametrize("seed", range(40))
def test_random_tagged_cells_give_the_values_of_a_plain_run(seed):
    rng = random.Random(seed)
    workers = rng.randint(2, 4)
    cell = random_cell(rng, workers, tagged=True)
    program = build_program(split(cell, range(1, workers + 1)), range(1, workers + 1))
    check_channels(program, capacity=1)
    finals_match_a_plain_run(cell, program)


@pytest.mark.parametrize("seed", range(40))
def test_random_auto_placed_cells_give_the_values_of_a_plain_run(seed):
    rng = random.Random(1000 + seed)
    workers = rng.randint(2, 4)
    cell = random_cell(rng, workers, tagged=False)
    costs = {line: rng.choice([0.1, 1.0, 3.0]) for line in cell.splitlines() if " = " in line}
    auto = auto_plan(cell, range(1, workers + 1), costs)
    program = build_program(auto, range(1, workers + 1))
    check_channels(program, capacity=1)
    finals_match_a_plain_run(cell, program)


class FakeCluster:
    """``ipyworkers.Cluster`` as run.py uses it, with threads for workers and queues for
    channels: enough to run the exported program for real, with no process."""

    def __init__(self, n: int):
        self.channels = {(a, b): queue.Queue() for a in range(1, n + 1) for b in range(1, n + 1)}
        self.spaces: dict[int, dict] = {}
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for thread in self.threads:
            thread.join(10)

    def run(self, code: str, on: int) -> None:
        space = {"send": lambda obj, to: self.channels[(on, to)].put(obj),
                 "recv": lambda frm: self.channels[(frm, on)].get(timeout=10), "worker_id": on}
        self.spaces[on] = space

        def work():
            try:
                exec(code, space)
            except BaseException as exc:  # noqa: BLE001 - reported by wait()
                self.errors.append(exc)

        thread = threading.Thread(target=work)
        self.threads.append(thread)
        thread.start()

    def wait(self) -> None:
        for thread in self.threads:
            thread.join(10)
        if self.errors:
            raise self.errors[0]

    def pull(self, names: list[str]) -> dict:
        return {n: next(s[n] for s in self.spaces.values() if n in s) for n in names}


def run_exported(cell: str, tmp_path, monkeypatch) -> int:
    export_program(split(cell, [1, 2]), [1, 2], tmp_path)
    monkeypatch.setitem(sys.modules, "ipyworkers", types.SimpleNamespace(Cluster=FakeCluster))
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(tmp_path / "run.py"), run_name="__main__")
    return exit_info.value.code


def test_run_py_runs_the_program_and_prints_the_final_values(tmp_path, monkeypatch, capsys):
    assert run_exported(SEED, tmp_path, monkeypatch) == 0
    out = capsys.readouterr().out.splitlines()
    assert "xy = '/data/x.csv/data/y.csv'" in out and "y = '/data/y.csv'" in out


def test_run_py_exits_non_zero_on_an_error(tmp_path, monkeypatch, capsys):
    assert run_exported("a = 1  # @1\nb = 1 / 0  # @2\n", tmp_path, monkeypatch) == 1
    assert "ZeroDivisionError" in capsys.readouterr().err
