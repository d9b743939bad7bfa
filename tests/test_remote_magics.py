"""``%workers start ... --ssh/--slurm/--mpi/--join``, ``add`` and ``remove``: the words
to launchers (no hosts needed), and add/remove through the magic on local and MPI workers."""

from __future__ import annotations

import pytest

from ipyworkers.kernel import launchers
from ipyworkers.notebook import remote
from ipyworkers.notebook.magics import WorkerMagics, _parse


def parse(line: str):
    """The words after ``%workers start`` as the magic parses them: (numbers, launcher)."""
    line, extra = remote.split_passthrough(f"start {line}")
    args = _parse(WorkerMagics.workers, line)
    return [int(n) for n in args.numbers], remote.launcher_from(args, extra)


@pytest.mark.parametrize("line, kind, n", [
    ("4 --ssh gpu1,gpu2", launchers.SSH, 4),
    ("16 --slurm -- -p short", launchers.Slurm, 16),
    ("8 --mpi", launchers.MPI, 8),
    ("2 --join --listen 0.0.0.0:7000 --advertise head.example", launchers.Join, 2),
    ("2 --ssh a --insecure", launchers.SSH, 2),
    ("2 --ssh a --python /opt/env/bin/python", launchers.SSH, 2),
])
def test_words_make_the_launcher(line, kind, n):
    numbers, launcher = parse(line)
    assert numbers == [n] and isinstance(launcher, kind)
    if kind is launchers.SSH:
        assert launcher.hosts[0] in ("gpu1", "a") and launcher.insecure == ("--insecure" in line)
        assert launcher.python == ("/opt/env/bin/python" if "--python" in line else "python3")
    if kind is launchers.Slurm:
        assert launcher.args == ["-p", "short"]
    if kind is launchers.Join:
        assert launcher.listen == "0.0.0.0:7000" and launcher.advertise == "head.example"


@pytest.mark.parametrize("line, message", [
    ("2 --ssh a --mpi", "not allowed with"),
    ("2 --insecure", "go with --ssh"),
])
def test_bad_words_say_why(line, message):
    with pytest.raises(ValueError, match=message):
        parse(line)


def test_add_and_remove_through_the_magic(capsys):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "ipyworkers")
    ip.run_line_magic("workers", "start 2")
    try:
        table = ip.run_line_magic("workers", "add 1 --mpi --listen 127.0.0.1:0")
        assert [row["launcher"] for row in table.rows] == ["local", "local", "mpi"]
        table = ip.run_line_magic("workers", "remove 2")
        assert [row["id"] for row in table.rows] == [1, 3]
        with pytest.raises(UsageError, match="no worker 7"):
            ip.run_line_magic("workers", "remove 7")
        assert "added worker(s) 3" in capsys.readouterr().out
    finally:
        ip.run_line_magic("workers", "stop")
