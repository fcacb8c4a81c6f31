"""End to end in a real browser: JupyterLab serves explore.ipynb, headless Chromium runs it, flips
toggles, trains at smoke size, and checks the loss plot and that no error output appears.

Needs a Chromium on PATH (Debian: ``apt-get install chromium``; `.ci/run` installs it) and
Playwright's Python package; skipped with the reason otherwise. Playwright's own browser
downloads are never used.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore.ipynb"
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
STARTUP_S = 60
STEP_MS = 90_000  # upper bound for one wait in the page (kernel start, imports, the smoke run)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found on PATH "
                                "(install Debian's `chromium` package: apt-get install -y chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM lets the server shut its kernels down; the whole process group is killed if it hangs."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on 127.0.0.1 whose root holds a copy of explore.ipynb; yields its notebook URL."""
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    news = tmp_path / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "get notified about news?" toast over the screenshot
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    log = (tmp_path / "jupyter.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert server.poll() is None, f"jupyter lab exited; see {log.name}"
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"jupyter lab did not start in {STARTUP_S} s; see {log.name}"
                time.sleep(0.2)
        yield f"{base}/lab/tree/{NOTEBOOK.name}?token={token}"
    finally:
        _stop(server)
        log.close()


@pytest.mark.slow
def test_explorer_trains_in_jupyterlab(lab, tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    shot = tmp_path / "explorer.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.set_default_timeout(STEP_MS)
            page.goto(lab)
            page.wait_for_selector(".jp-Notebook .jp-Cell")
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                   " && window.jupyterapp.shell.currentWidget.sessionContext?.session?.kernel")
            page.evaluate("async () => { const c = window.jupyterapp.commands;"
                          " await c.execute('application:toggle-left-area');"
                          " await c.execute('notebook:run-all-cells'); }")

            loss_traces = page.locator(".cpikan-loss-plot .scatterlayer .trace")
            page.wait_for_selector(".cpikan-train:not([disabled])")
            page.wait_for_selector(".cpikan-loss-plot .main-svg")
            assert loss_traces.count() == 0

            # flip toggles: a dropdown that grows a parameter sub-form, and a number field
            page.locator(".widget-tab .lm-TabBar-tab", has_text="train").click()
            page.select_option(".cpikan-train-scheduler select", "cosine")
            page.wait_for_selector(".cpikan-train-scheduler-params-eta-min input")
            page.fill(".cpikan-train-grad-clip input", "1.0")
            page.press(".cpikan-train-grad-clip input", "Enter")

            page.click(".cpikan-train")
            page.wait_for_selector(".cpikan-message:has-text('done')")
            page.wait_for_function("() => document.querySelectorAll("
                                   "'.cpikan-loss-plot .scatterlayer .trace path.js-line').length >= 3")
            legend = page.locator(".cpikan-loss-plot .legendtext").all_text_contents()
            assert {"loss", "loss_pde", "loss_bc"} <= set(legend)
            lines = page.locator(".cpikan-loss-plot .scatterlayer .trace path.js-line")
            assert all(len(d or "") > 20 for d in (lines.nth(i).get_attribute("d") for i in range(lines.count())))
            page.wait_for_selector(".cpikan-field-plot .scatterlayer .trace path.js-line")

            page.click(".cpikan-save")
            page.wait_for_selector(".cpikan-command:has-text('--set train.scheduler=cosine')")
            assert "--set train.grad_clip=1.0" in page.inner_text(".cpikan-command")

            assert "⚠" not in page.inner_text(".cpikan-message")
            errors = page.locator(".jp-OutputArea-output[data-mime-type*='stderr'],"
                                  " .jp-OutputArea-output[data-mime-type*='error']")
            assert errors.count() == 0, errors.all_inner_texts()
            text = page.inner_text(".jp-Notebook")
            assert "Error displaying widget" not in text and "Failed to load model class" not in text
            page.evaluate("() => document.querySelector('.cpikan-train').closest('.jp-Cell').scrollIntoView()")
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    print(f"screenshot: {shot}")
