"""JupyterLab 4 and Notebook 7 in headless Chromium: the dashboard shows bars for tasks and
a transfer arrow. The screenshots are kept in test-artifacts/timeline-<frontend>.png."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
CELLS = [
    "%load_ext ipyworkers\n%workers start 2",
    "%%worker 1\nimport time\ntime.sleep(1)\nv = list(range(100_000))",
    "%%worker 2\nprint('worker 2 got', len(v), 'items')",
    "%wait",
    "%workers stop",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"Chromium is not installed at {CHROMIUM} (make test installs it with apt-get)"
)


FRONTENDS = {
    "jupyterlab": ("jupyterlab", "lab/tree/timeline.ipynb"),
    "notebook7": ("notebook", "notebooks/timeline.ipynb"),
}


@pytest.fixture(params=sorted(FRONTENDS))
def lab(request, tmp_path):
    """JupyterLab or Notebook 7 on a free local port, with a private config, serving tmp_path."""
    module, page = FRONTENDS[request.param]
    pytest.importorskip(module)
    playwright = pytest.importorskip("playwright.sync_api")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "timeline.ipynb")
    token = secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    log_path = tmp_path / "lab.log"
    log = open(log_path, "w")
    server = subprocess.Popen(
        [sys.executable, "-m", module, "--no-browser", "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--allow-root", "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    try:
        url = _server_url(log_path, server)
        yield playwright, f"{url}{page}?token={token}", request.param
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _server_url(log_path: Path, server: subprocess.Popen, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", log_path.read_text())
        if match:
            return match.group(1)
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited:\n{log_path.read_text()}")
        time.sleep(0.2)
    raise TimeoutError(f"JupyterLab did not start:\n{log_path.read_text()}")


def test_dashboard_shows_task_bars_and_a_transfer_arrow(lab):
    playwright_api, url, frontend = lab
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(url)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            _accept_kernel_dialog(page, frontend)
            page.wait_for_selector(".jp-Notebook .jp-Cell .jp-InputArea-editor", timeout=60_000)
            _wait_idle(page, frontend)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            timeline = "svg.ipyworkers-timeline"
            try:
                page.wait_for_selector(f"{timeline} g.transfer", timeout=60_000)
                page.wait_for_function(
                    "document.querySelectorAll('svg.ipyworkers-timeline rect.task.done').length >= 2",
                    timeout=60_000,
                )
                page.wait_for_selector("text=worker 2 got 100000 items", timeout=30_000)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / f"timeline-{frontend}-failure.png"), full_page=True)
                raise
            page.locator(".ipyworkers-dashboard").first.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / f"timeline-{frontend}.png"), full_page=True)
            arrow_label = page.locator(f"{timeline} g.transfer text").first.text_content()
            assert arrow_label.startswith("v ")
            rows = page.locator(f"{timeline} text.row-label").all_text_contents()
            assert rows == ["kernel", "worker 1", "worker 2"]
            page.wait_for_selector("text=workers stopped", timeout=30_000)
        finally:
            browser.close()


def _accept_kernel_dialog(page, frontend: str, timeout: float = 10.0) -> None:
    """JupyterLab may ask which kernel to start; take the notebook's own."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        button = page.locator(".jp-Dialog button", has_text="Select")
        if button.count():
            button.first.click()
            return
        if _idle(page, frontend):
            return
        page.wait_for_timeout(200)


def _idle(page, frontend: str) -> bool:
    """JupyterLab says so in its status bar; Notebook 7 in its kernel indicator."""
    if frontend == "jupyterlab":
        return bool(page.locator("text=Python 3 (ipykernel) | Idle").count())
    return bool(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count())


def _wait_idle(page, frontend: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not _idle(page, frontend):
        if time.monotonic() > deadline:
            raise TimeoutError("the kernel never became idle")
        page.wait_for_timeout(200)
