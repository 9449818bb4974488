"""``@Orchestrator`` in a real JupyterLab with Jupyter AI: the chat runs a rehearsed workflow.

JupyterLab (with the ``jupyter-ai`` extra installed) is bound to 127.0.0.1 with a token on a
free port, in a temporary folder with its own Jupyter config, data and runtime folders. Headless
Chromium (Debian's, via Playwright) opens a chat, mentions the persona with a task, and sees
each step's text, the file diffs and the closing summary arrive. The screenshot is kept in
``build/test-artifacts/acp-jupyter-ai-chat.png``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from acp_helpers import descendants, require_clis

pytestmark = [pytest.mark.browser, pytest.mark.real_cli, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
JUPYTER = Path(sys.executable).with_name("jupyter")
TASK = "Write a small calculator module with tests."


def _require() -> None:
    missing = [
        m for m in ("jupyter_ai_acp_client", "playwright") if not importlib.util.find_spec(m)
    ]
    reason = ""
    if missing:
        reason = f"{', '.join(missing)} not installed: pip install -e '.[jupyter-ai,test]'"
    elif not Path(CHROMIUM).exists():
        reason = "chromium is not installed: apt-get install chromium"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def jupyterlab(root: Path) -> Iterator[tuple[str, str, int]]:
    """JupyterLab serving ``root``, every run rehearsed: yields (base URL, token, pid)."""
    port, token = _free_port(), secrets.token_hex(16)
    home = root.parent / "jupyter"
    settings = home / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    quiet = {"fetchNews": "false", "checkForUpdates": False}  # no toast over the chat
    (settings / "notification.jupyterlab-settings").write_text(json.dumps(quiet))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "ORCHESTRATOR_NB_ACP_ARGS": "--rehearse calculator",
        # Only our persona: the vendored ones would look for their own ACP adapters.
        "JUPYTER_AI_ACP_CLIENT_E2E_TESTING_ONLY": "1",
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
        "--ServerApp.terminals_enabled=False",
    ]
    if os.geteuid() == 0:
        argv.append("--ServerApp.allow_root=True")
    log_path = root.parent / "jupyterlab.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                request = urllib.request.Request(
                    f"{base}/api/status", headers={"Authorization": f"token {token}"}
                )
                urllib.request.urlopen(request, timeout=5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "JupyterLab did not start:\n" + log_path.read_text()
                    ) from None
                time.sleep(0.2)
        yield base, token, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_the_persona_is_registered_for_jupyter_ai_and_starts_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _require()
    from importlib.metadata import entry_points

    from jupyter_ai_acp_client.base_acp_persona import BaseAcpPersona

    (ep,) = [e for e in entry_points(group="jupyter_ai.personas") if e.name == "orchestrator-nb"]
    persona = ep.load()
    assert issubclass(persona, BaseAcpPersona)
    from orchestrator_nb.acpserver import persona as module

    monkeypatch.setenv(module.ARGS_ENV, "--rehearse 'my scenario.yaml' --workflow quick")
    assert module.executable() == [
        sys.executable,
        "-m",
        "orchestrator_nb.acpserver",
        "--rehearse",
        "my scenario.yaml",  # split like a command line, never run by a shell
        "--workflow",
        "quick",
    ]
    assert module.AVATAR.is_file()


def test_the_chat_persona_runs_a_rehearsed_workflow_and_shows_steps_and_diffs(
    tmp_path: Path,
) -> None:
    _require()
    require_clis()
    from playwright.sync_api import expect, sync_playwright

    root = tmp_path / "project"
    root.mkdir()
    # As the README says: the chat file is Jupyter AI's, written while the agents work.
    (root / ".gitignore").write_text("*.chat\n")
    shot = ARTIFACTS / "acp-jupyter-ai-chat.png"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with jupyterlab(root) as (base, token, server), sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab?token={token}")
            page.locator(".jp-LauncherCard", has_text="Chat").click(timeout=90_000)
            box = page.get_by_placeholder("Type a chat message, @ to mention...")
            # The persona is in the chat once its agent answered session/new with its commands.
            expect(page.get_by_text("Orchestrator").first).to_be_visible(timeout=60_000)
            box.click()
            page.keyboard.type("@Orchestrator ")
            page.keyboard.type(TASK)
            page.keyboard.press("Enter")

            chat = page.locator(".jp-chat-messages-container")
            expect(chat).to_contain_text("workflow default (rehearsal): completed", timeout=240_000)
            for label in ("[implement · codex]", "[review #1 · gemini]", "[refine #1 · claude]"):
                expect(chat).to_contain_text(label)
            # Each step's files arrive as a finished edit with its diffs shown.
            edit = page.locator(".jp-jupyter-ai-acp-client-tool-call-completed").filter(
                has_text="codex changed"
            )
            expect(edit.first).to_be_visible()
            diffs = edit.first.locator(".jp-jupyter-ai-acp-client-diff-container")
            expect(diffs).to_contain_text("calc.py")
            expect(diffs).to_contain_text("def div(a: float, b: float) -> float:")
            refined = page.locator(".jp-jupyter-ai-acp-client-tool-call-completed").filter(
                has_text="claude changed"
            )
            expect(refined.first).to_contain_text("ZeroDivisionError")
            expect(edit.first).to_contain_text("codex changed 2 files in implement")
            edit.first.locator("summary").first.click()  # open it for the screenshot
            expect(diffs.first).to_be_visible()
            edit.first.scroll_into_view_if_needed()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
        assert 'raise ZeroDivisionError("cannot divide by zero")' in (root / "calc.py").read_text()
        # The run is over: no agent CLI is left under the server (its ACP agent may idle).
        left = {
            pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            for pid in descendants(server)
            if Path(f"/proc/{pid}/cmdline").exists()
        }
        agents = [cmd for cmd in left.values() if any(c in cmd for c in (b"codex", b"gemini"))]
        assert agents == []
    assert shot.stat().st_size > 10_000
