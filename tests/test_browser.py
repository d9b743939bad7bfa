"""JupyterLab 4 and Notebook 7 in headless Chromium, as a user sees them.

One server and one browser per frontend serve every test of this module (module-scoped
fixtures); each test opens its own notebook in a page of its own and shuts its kernel down
at the end, so no kernel or worker outlives the test. Every wait is bounded; a timeout
leaves a screenshot in test-artifacts/<test>-<frontend>-failure.png. Screenshots of what
passed are kept there too (the README shows some of them, copied to docs/).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMELINE = "svg.ipyworkers-timeline"
MODEL_NOT_FOUND = re.compile("model not found", re.I)
WIDE = {"width": 1300, "height": 1000}

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"Chromium is not installed at {CHROMIUM} (make test installs it with apt-get)"
)

FRONTENDS = {
    "jupyterlab": ("jupyterlab", "lab/workspaces/{stem}/tree/"),
    "notebook7": ("notebook", "notebooks/"),
}


@dataclass
class Frontend:
    name: str
    base: str
    token: str
    root: Path
    browser: object
    page_path: str

    def url(self, notebook: str) -> str:
        """The notebook's page; in JupyterLab, in a workspace of its own, so that it opens
        alone (a shared workspace would also reopen the notebooks of earlier tests)."""
        path = self.page_path.format(stem=Path(notebook).stem)
        return f"{self.base}{path}{notebook}?token={self.token}"

    def api(self, method: str, path: str) -> object:
        request = urllib.request.Request(f"{self.base}api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None


@pytest.fixture(scope="module", params=sorted(FRONTENDS))
def frontend(request, tmp_path_factory):
    """JupyterLab or Notebook 7 on a free local port, with a private config, and a headless
    Chromium; shared by the tests of this module."""
    module, page_path = FRONTENDS[request.param]
    pytest.importorskip(module)
    playwright_api = pytest.importorskip("playwright.sync_api")
    root = tmp_path_factory.mktemp(request.param)
    token = secrets.token_hex(16)
    with _server(module, root, token) as base, playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        _warm_up(browser, f"{base}api/status?token={token}")
        try:
            yield Frontend(request.param, base, token, root, browser, page_path)
        finally:
            browser.close()


def _warm_up(browser, url: str) -> None:
    """One page loaded and closed, so that the browser's own service processes (network,
    storage), which it starts with its first page and keeps, exist before the first test's
    leak check looks."""
    page = browser.new_page()
    page.goto(url)
    page.close()


@contextmanager
def _server(module: str, root: Path, token: str):
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / ".config"), "JUPYTER_RUNTIME_DIR": str(root / ".rt")}
    log_path = root / ".server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", module, "--no-browser", "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--expose-app-in-browser",
             "--allow-root", "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        try:
            yield _server_url(log_path, server)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def _server_url(log_path: Path, server: subprocess.Popen, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", log_path.read_text())
        if match:
            return match.group(1)
        if server.poll() is not None:
            raise RuntimeError(f"the Jupyter server exited:\n{log_path.read_text()}")
        time.sleep(0.2)
    raise TimeoutError(f"the Jupyter server did not start:\n{log_path.read_text()}")


@pytest.fixture
def open_notebook(frontend, request):
    """``open_notebook(name, cells, viewport)``: write a notebook and open it in a new page.
    At the end, every kernel of the server is shut down (its workers with it), so the
    test's leak checks see nothing left."""
    pages = []

    def open_(name: str, cells: list[str], viewport: dict = WIDE):
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, frontend.root / name)
        page = frontend.browser.new_page(viewport=viewport)
        pages.append(page)
        page.goto(frontend.url(name))
        _wait_ready(page, frontend)
        return page

    yield open_
    for page in pages:
        page.close()
    _shut_down_kernels(frontend)


def _shot(frontend: Frontend, page, what: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{what}-{frontend.name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@contextmanager
def _failure_shot(frontend: Frontend, page, what: str):
    try:
        yield
    except Exception:
        _shot(frontend, page, f"{what}-failure")
        raise


# -- the tests ------------------------------------------------------------------------------------

RUN_CELLS = [
    "%load_ext ipyworkers\n%workers start 2",
    "%%worker 1\nimport time\ntime.sleep(1)\nv = list(range(100_000))\nprint('worker 1 made', len(v), 'items')",
    "%%worker 2\nprint('worker 2 got', len(v), 'items')",
    "%%worker 1\ndef load(path):\n    raise ValueError(f'bad input file {path}')\nload('a.csv')",
]
SHOWN_TEXTS = ["worker 1 made 100000 items", "worker 2 got 100000 items", "ValueError: bad input file a.csv",
               "failed on worker 1"]


def test_live_dashboard_then_output_and_timeline_survive_reload_save_shutdown_and_reopen(frontend, open_notebook):
    """Live: bars, a transfer arrow, each cell's output, the picture hidden behind the live
    widget. Reloaded with the kernel running: the live widget again. Saved, kernel shut
    down, reopened: every worker cell's output and the timeline are there, as plain outputs
    of the saved notebook, and no "model not found" in their place."""
    page = open_notebook("reopen.ipynb", RUN_CELLS)
    with _failure_shot(frontend, page, "reopen-live"):
        _run_all(page)
        page.wait_for_selector(f".ipyworkers-dashboard {TIMELINE} g.transfer", timeout=60_000)
        page.wait_for_function(f"document.querySelectorAll('.ipyworkers-dashboard {TIMELINE} rect.task.done')"
                               ".length >= 2", timeout=60_000)
        for text in SHOWN_TEXTS:
            _shown(page, text).first.wait_for(timeout=30_000)
        _wait_for_text_count(page, "done in", 2)
        assert page.locator(f"{TIMELINE} g.transfer text").first.text_content().startswith("v ")
        rows = page.locator(f".ipyworkers-dashboard {TIMELINE} text.row-label").all_text_contents()
        assert rows[:3] == ["kernel", "worker 1", "worker 2"]
        _assert_only_the_live_dashboard(page)
    page.locator(".ipyworkers-dashboard").first.scroll_into_view_if_needed()
    _shot(frontend, page, "timeline")
    page.wait_for_timeout(1500)  # the picture follows the live drawing within a second
    _save(page, frontend)
    page.reload()
    with _failure_shot(frontend, page, "reloaded"):
        _wait_ready(page, frontend)
        page.wait_for_selector(f".ipyworkers-dashboard {TIMELINE} rect.task.done", timeout=30_000)
        _assert_only_the_live_dashboard(page)
    _shut_down_kernels(frontend)
    page.reload()
    with _failure_shot(frontend, page, "reopened"):
        _wait_ready(page, frontend)
        page.wait_for_timeout(2000)  # time for the widget renderer to give up on its model
        _shot(frontend, page, "reopened")
        for text in [*SHOWN_TEXTS, "done in"]:
            assert _shown(page, text).count(), f"{text!r} is not shown after reopening"
        bars = page.locator(f".ipyworkers-picture {TIMELINE} rect.task")
        assert bars.count() >= 3 and bars.first.is_visible(), "the timeline is not shown after reopening"
        assert not _visible_count(page, MODEL_NOT_FOUND), "a widget error shows instead of the output"
    _check_saved_outputs(frontend.root / "reopen.ipynb")


def _assert_only_the_live_dashboard(page) -> None:
    """The live widget shows, and its picture (in the page too) does not."""
    assert page.locator(".ipyworkers-dashboard").first.is_visible()
    assert page.locator(".ipyworkers-picture").count(), "the picture is not in the page"
    assert not page.locator(".ipyworkers-picture").filter(visible=True).count(), "two timelines show"


CANCEL_CELLS = [
    "%load_ext ipyworkers\n%workers start 1",
    "%%worker 1\nimport time\ntime.sleep(60)",
    "%%worker 1\nprint('never printed')",
]


def test_cancel_buttons_in_the_dashboard(frontend, open_notebook):
    """A button per task of a cell: the queued one is cancelled, the running sleep interrupted."""
    page = open_notebook("cancel.ipynb", CANCEL_CELLS)
    with _failure_shot(frontend, page, "cancel"):
        _run_all(page)
        buttons = page.locator("button.ipyworkers-cancel")
        page.wait_for_function("document.querySelectorAll('button.ipyworkers-cancel').length == 2", timeout=60_000)
        assert buttons.all_text_contents() == ["✕ In[2]", "✕ In[3]"]
        _shown(page, re.compile("running .* on worker 1")).first.wait_for(timeout=20_000)
        _shot(frontend, page, "cancel")
        buttons.filter(has_text="In[3]").click()
        _shown(page, "cancelled on worker 1").first.wait_for(timeout=20_000)
        assert _visible_count(page, re.compile("running .* on worker 1")), "the running task goes on"
        buttons.filter(has_text="In[2]").click()
        _shown(page, "interrupted on worker 1").first.wait_for(timeout=20_000)
        page.wait_for_function("!document.querySelectorAll('button.ipyworkers-cancel').length", timeout=20_000)
        queued_output = page.locator(".jp-Notebook .jp-Cell").nth(2).locator(".jp-OutputArea")
        assert "never printed" not in queued_output.inner_text()


def test_a_two_minute_old_session_shows_its_latest_run_readably(frontend, open_notebook):
    """Work two minutes back (its recorded times shifted, not waited for) does not shrink
    the latest run: the timeline shows that run, its 1 s task across most of the plot."""
    from test_dashboard import BACKDATE_EARLIER_WORK

    page = open_notebook("session.ipynb", ["%load_ext ipyworkers\n%workers start 2", "%%worker 1 --block\nx = 1",
                                           BACKDATE_EARLIER_WORK.format(seconds=120),
                                           "%%worker 2\nimport time\ntime.sleep(1)\nprint('latest', 'done')"])
    with _failure_shot(frontend, page, "session"):
        _run_all(page)
        _shown(page, "latest done").first.wait_for(timeout=60_000)
        page.wait_for_function(f"document.querySelectorAll('.ipyworkers-dashboard {TIMELINE} rect.task.done').length"
                               " >= 1", timeout=30_000)
        page.wait_for_timeout(500)
        _shot(frontend, page, "session")
        widths = page.evaluate(f"""() => [...document.querySelectorAll(
            '.ipyworkers-dashboard {TIMELINE} rect.task.done')]
            .map(r => [Number(r.dataset.task), parseFloat(r.getAttribute('width'))])""")
        latest = max(widths)
        assert latest[1] >= 50, f"the latest 1 s task takes {latest[1]:.1f}% of the plot (bars: {widths})"


NARROW = {"width": 560, "height": 900}


def test_dashboard_fits_a_narrow_pane(frontend, open_notebook):
    """In a pane some 500 px wide, the dashboard and its timeline are not clipped."""
    page = open_notebook("narrow.ipynb", ["%load_ext ipyworkers\n%workers start 2",
                                          "%%worker 1\nimport time\ntime.sleep(0.5)\nprint('narrow done')"],
                         viewport=NARROW)
    if frontend.name == "jupyterlab":
        page.evaluate("window.jupyterapp.commands.execute('application:toggle-left-area')")  # the file browser
    with _failure_shot(frontend, page, "narrow"):
        _run_all(page)
        page.wait_for_selector(f".ipyworkers-dashboard {TIMELINE} rect.task.done", timeout=60_000)
        _shown(page, "narrow done").first.wait_for(timeout=30_000)
        page.locator(".ipyworkers-dashboard").first.scroll_into_view_if_needed()
        _shot(frontend, page, "narrow")
        area = page.locator(".jp-OutputArea-output", has=page.locator(".ipyworkers-dashboard")).first.bounding_box()
        assert area["width"] <= 560, f"the output area is {area['width']} px wide: not a narrow pane"
        dashboard = page.locator(".ipyworkers-dashboard").first.bounding_box()
        assert _inside(dashboard, area), f"the dashboard {dashboard} overflows its output area {area}"
        svg = page.locator(f".ipyworkers-dashboard {TIMELINE}").first.bounding_box()
        assert _inside(svg, area), f"the timeline ({svg['width']:.0f} px) overflows its area ({area['width']:.0f} px)"


def _inside(box: dict, area: dict, slack: float = 1.0) -> bool:
    return box["x"] >= area["x"] - slack and box["x"] + box["width"] <= area["x"] + area["width"] + slack


def _check_saved_outputs(path: Path) -> None:
    """The saved file holds what each worker cell showed as ordinary outputs."""
    cells = nbformat.read(path, as_version=4).cells
    for cell in cells[1:]:
        kinds = {o["output_type"] for o in cell.outputs}
        assert kinds <= {"display_data", "stream", "error"}, kinds
        texts = [o.get("text") or o.get("data", {}).get("text/plain", "") for o in cell.outputs]
        assert any(t.strip() for t in texts), f"cell {cell.source[:30]!r} saved no text: {cell.outputs}"
    saved = "".join(json.dumps(o.get("data", {})) for c in cells for o in c.outputs)
    assert "worker 2 got 100000 items" in saved and "ValueError" in saved and "done in" in saved
    dashboard = [o for o in cells[0].outputs if "ipyworkers-timeline" in o.get("data", {}).get("text/html", "")]
    assert dashboard, "the dashboard's cell saved no timeline picture"
    assert 'class="task done"' in dashboard[-1]["data"]["text/html"]


# -- driving the page -----------------------------------------------------------------------------


def _wait_ready(page, frontend: Frontend) -> None:
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    _accept_kernel_dialog(page, frontend)
    page.wait_for_selector(".jp-Notebook .jp-Cell .jp-InputArea-editor", timeout=60_000)
    _wait_idle(page, frontend)
    news = page.locator(".jp-toast-button", has_text="No")  # JupyterLab asks about its news feed
    if news.count():
        news.first.click()


def _run_all(page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def _save(page, frontend: Frontend, timeout: float = 30.0) -> None:
    """Save through the frontend's own command, and wait until the file says so."""
    path = frontend.root / page.url.split("?")[0].rsplit("/", 1)[-1]
    before = path.stat().st_mtime_ns
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    deadline = time.monotonic() + timeout
    while path.stat().st_mtime_ns == before:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} was not saved within {timeout} s")
        page.wait_for_timeout(100)


def _shut_down_kernels(frontend: Frontend, timeout: float = 30.0) -> None:
    """Every kernel of the server, shut down politely (so each stops its workers)."""
    for kernel in frontend.api("GET", "kernels"):
        frontend.api("DELETE", f"kernels/{kernel['id']}")
    deadline = time.monotonic() + timeout
    while frontend.api("GET", "kernels"):
        if time.monotonic() > deadline:
            raise TimeoutError("the kernels did not shut down")
        time.sleep(0.1)


def _shown(page, text: str | re.Pattern):
    """The visible elements that hold ``text`` (not the hidden tooltips of the timeline)."""
    return page.get_by_text(text).filter(visible=True)


def _visible_count(page, text: str | re.Pattern) -> int:
    return _shown(page, text).count()


def _wait_for_text_count(page, text: str, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while _visible_count(page, re.compile(re.escape(text))) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} outputs say {text!r}")
        page.wait_for_timeout(200)


def _accept_kernel_dialog(page, frontend: Frontend, timeout: float = 60.0) -> None:
    """The frontend may ask which kernel to start (at once, or after showing the kernel as
    idle for a moment); take the notebook's own, and go on once a kernel is idle."""
    deadline = time.monotonic() + timeout
    idle_since = None
    while time.monotonic() < deadline:
        button = page.locator(".jp-Dialog button", has_text="Select")
        if button.count():
            button.first.click()
            idle_since = None
        elif not _idle(page, frontend):
            idle_since = None
        elif idle_since is None:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > 1.0:
            return
        page.wait_for_timeout(200)
    raise TimeoutError("no kernel became idle")


def _idle(page, frontend: Frontend) -> bool:
    """JupyterLab says so in its status bar; Notebook 7 in its kernel indicator."""
    if frontend.name == "jupyterlab":
        return bool(page.locator("text=Python 3 (ipykernel) | Idle").count())
    return bool(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count())


def _wait_idle(page, frontend: Frontend, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not _idle(page, frontend):
        if time.monotonic() > deadline:
            raise TimeoutError("the kernel never became idle")
        page.wait_for_timeout(200)
