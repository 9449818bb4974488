"""The dashboard in a real JupyterLab, clicked in headless Chromium (Debian's, via Playwright).

JupyterLab is bound to 127.0.0.1 with a token on a free port, in a temporary folder with its
own Jupyter config, data and runtime folders; it is stopped (kernels first) in a ``finally``.
Screenshots land in ``build/test-artifacts/``: ``dashboard-diff.png`` after the first run,
``dashboard-narrow.png`` at about 1000 px wide, ``dashboard.png`` after the stopped one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from dash_helpers import agent_processes, require, require_clis

pytestmark = [pytest.mark.browser, pytest.mark.kernel, pytest.mark.real_cli, pytest.mark.slow]

# Found the way the Makefile finds it: Debian names it chromium, Ubuntu chromium-browser.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
JUPYTER = Path(sys.executable).with_name("jupyter")
CELL = """\
from orchestrator_nb.dashboard import dashboard

d = dashboard(workspace="ws", workflow="quick", rehearsal="write-file",
              task="Create hello.txt saying hi")
d"""
# No news, no update checks: the server must not reach out, and no toast may cover the panel.
NOTIFICATION_SETTINGS = {"fetchNews": "false", "checkForUpdates": False}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (kernels run in their own session, so not in its group)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        frontier += kids
    return found


def _api(base: str, token: str, path: str, method: str = "GET") -> Any:
    request = urllib.request.Request(
        f"{base}{path}", method=method, headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
    return json.loads(body) if body else None


@contextlib.contextmanager
def jupyterlab(root: Path) -> Iterator[tuple[str, str]]:
    """A JupyterLab server on 127.0.0.1 serving ``root``: yields (base URL, token)."""
    port, token = _free_port(), secrets.token_hex(16)
    home = root.parent / "jupyter"
    settings = home / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps(NOTIFICATION_SETTINGS))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
    }
    argv = [
        str(JUPYTER),
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--ServerApp.terminals_enabled=False",
    ]
    if os.geteuid() == 0:  # containers often run as root; Jupyter refuses that unless told
        argv.append("--ServerApp.allow_root=True")
    log = (root.parent / "jupyterlab.log").open("wb")
    proc = subprocess.Popen(
        argv, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _api(base, token, "/api/status")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "JupyterLab did not start:\n" + (root.parent / "jupyterlab.log").read_text()
                    ) from None
                time.sleep(0.2)
        yield base, token
    finally:
        started = _children(proc.pid)
        with contextlib.suppress(OSError, ValueError):
            for kernel in _api(base, token, "/api/kernels"):
                _api(base, token, f"/api/kernels/{kernel['id']}", "DELETE")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        for pid in started + _children(proc.pid):  # anything it left behind, by id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        log.close()


def _requirements() -> None:
    require(Path(CHROMIUM).is_file(), "chromium (or chromium-browser) is missing: `make browser`")
    require(JUPYTER.is_file(), "jupyter is not installed in the venv: run `make venv`")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require(False, "playwright (python) is not installed: run `make venv`")
    require_clis("codex")


def test_dashboard_runs_shows_a_diff_and_stops_in_jupyterlab(tmp_path: Path) -> None:
    _requirements()
    from playwright.sync_api import expect, sync_playwright

    root = tmp_path / "lab"
    (root / "ws").mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "dash.ipynb")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ws = root / "ws"

    with jupyterlab(root) as (base, token), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.goto(f"{base}/lab/tree/dash.ipynb?token={token}")
            page.locator(".jp-Notebook .jp-Cell .cm-content").first.click(timeout=60_000)
            page.keyboard.press("Shift+Enter")  # run the cell, as a user would

            out = page.locator(".jp-OutputArea-output")
            run = out.locator(".widget-button").filter(has_text=re.compile(r"^\s*Run\s*$"))
            stop = out.locator(".widget-button").filter(has_text=re.compile(r"^\s*Stop\s*$"))
            expect(run).to_be_enabled(timeout=60_000)
            run.click()
            # The diff of the file the agent wrote, in the page.
            expect(out.locator("pre span").filter(has_text=re.compile(r"^\+hi$"))).to_be_visible(
                timeout=60_000
            )
            expect(out.locator("summary code").filter(has_text="hello.txt").first).to_be_visible()
            expect(out.locator("b").filter(has_text=re.compile(r"^completed$"))).to_be_visible()
            expect(out.get_by_text("Done. I created hello.txt").first).to_be_visible()
            assert (ws / "hello.txt").read_text() == "hi\n"
            page.screenshot(path=str(ARTIFACTS / "dashboard-diff.png"), full_page=True)

            # No horizontal scrollbar, with the diff and tables filled in, also at about 1000 px
            # wide where the notebook leaves the panel some 750 px beside the file browser.
            panel = out.locator(".orchestrator-dashboard").first
            cell = out.filter(has=page.locator(".orchestrator-dashboard")).first
            for width in (1400, 1000):
                page.set_viewport_size({"width": width, "height": 1500})
                page.wait_for_timeout(300)  # the layout settles after the resize
                for box in (panel, cell):
                    overflow = box.evaluate("el => el.scrollWidth - el.clientWidth")
                    assert overflow <= 0, f"the dashboard overflows by {overflow}px at {width}px"
            page.screenshot(path=str(ARTIFACTS / "dashboard-narrow.png"), full_page=True)
            page.set_viewport_size({"width": 1400, "height": 1500})

            # A second run that hangs, stopped from the page.
            rehearsal = out.locator(".widget-dropdown").filter(has_text="Rehearsal")
            rehearsal.locator("select").select_option(label="hang")
            run.click()
            expect(stop).to_be_enabled(timeout=10_000)
            deadline = time.monotonic() + 30
            while not agent_processes(ws) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert agent_processes(ws), "the hanging agent never started"
            clicked = time.monotonic()
            stop.click()
            expect(out.locator("b").filter(has_text=re.compile(r"^cancelled$"))).to_be_visible(
                timeout=5_000
            )
            while agent_processes(ws) and time.monotonic() < clicked + 2:
                time.sleep(0.05)
            assert agent_processes(ws) == [], "Stop left an agent running"
            assert time.monotonic() - clicked < 5  # 2 s to stop, plus the page round trip
            expect(run).to_be_enabled()
            # The status lights have filled in (a --version per CLI, in threads).
            light = out.locator(".widget-html").filter(has_text=re.compile(r"codex\s+\d+\.\d+"))
            expect(light.first).to_be_visible(timeout=30_000)
            expect(out.get_by_text("checking…")).to_have_count(0, timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
