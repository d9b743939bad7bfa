"""Every test must leave nothing behind: no Cluster, worker or child process, thread,
open socket or runtime directory (in the manner of Dask's ``utils_test.clean``).

The checks live in ``leaks.py``. This run gets its own marker and ``TMPDIR`` before
anything starts (``pytest_configure``), so the checks see only what this run started,
whatever else runs on the machine. A test turns a check off (or ``fds`` on) with a mark, as in
``@pytest.mark.leaks(threads=False)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import leaks  # noqa: E402 - from the directory just put on the path

MODULE_CHECKS = [leaks.clusters, leaks.processes, leaks.children, leaks.runtime_dirs]
"""What a module-scoped fixture (a kernel kept for the whole module) may not leave behind."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "leaks(**checks): turn leak checks off or on: leaks(threads=False, fds=True)")
    leaks.start_run()


def pytest_unconfigure(config: pytest.Config) -> None:
    leaks.end_run()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Nothing this run started may outlive it: what is left (say, by a session-scoped
    fixture, which no other check sees end) is reported, killed or removed, and fails the run."""
    problems = leaks.leftovers(settle=leaks.SETTLE_SECONDS)
    if not problems:
        return
    text = "this test run left behind:\n" + leaks.format_problems(problems)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write("\n")
        reporter.write_sep("=", "leaks at the end of the run", red=True)
        reporter.write_line(text, red=True)
    else:
        print(text, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def library_event_loop():
    """jupyter_client keeps one asyncio loop (and its self-pipe) per thread for good;
    make it before the first leak snapshot, so it is not counted against a test."""
    import asyncio

    from jupyter_client.utils import run_sync

    run_sync(asyncio.sleep)(0)
    yield


@pytest.fixture(scope="module", autouse=True)
def check_module_leaks():
    after = leaks.snapshot(MODULE_CHECKS)
    yield
    _fail_on(after(), "leaked in this module (by a module-scoped fixture, or a test whose own check was off)")


@pytest.fixture(autouse=True)
def check_leaks(request: pytest.FixtureRequest):
    mark = request.node.get_closest_marker("leaks")
    after = leaks.snapshot(leaks.select(**(mark.kwargs if mark else {})))
    yield
    _fail_on(after(), "test leaked")


def _fail_on(problems: list[str], what: str) -> None:
    if problems:
        pytest.fail(f"{what}:\n{leaks.format_problems(problems)}", pytrace=False)


@pytest.fixture
def cluster():
    from ipyworkers import Cluster
    from ipyworkers.kernel.sinks import RecordingSink

    c = Cluster(2, default_sink=RecordingSink())
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def sink():
    from ipyworkers.kernel.sinks import RecordingSink

    return RecordingSink()


# -- a real kernel, driven as a notebook frontend drives it (tests/kernel_session.py) ---------------


@pytest.fixture(scope="module")
def kernel():
    """One real ipykernel per test module, with the extension loaded."""
    from kernel_session import KernelSession

    session = KernelSession()
    session.execute("%load_ext ipyworkers")
    yield session
    session.shutdown()


@pytest.fixture
def nb(kernel):
    """The shared kernel, with two fresh workers; they are stopped after the test."""
    result = kernel.execute("%workers start 2")
    assert result.status == "ok", result.error_text
    yield kernel
    kernel.execute("%workers stop")
    kernel.execute("%reset -f")
