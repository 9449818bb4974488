"""One permission question clicked in a real JupyterLab (headless Chromium, via Playwright).

A background cell runs a one-step workflow on a fake ACP agent (a real subprocess speaking ACP)
that asks to write ``out.txt``; the question appears in the cell with its diff and "waiting for
you"; a click on Allow once lets the agent write the file. JupyterLab comes from the dashboard's
browser test (a free port, its own folders, stopped with its kernels in a ``finally``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dashboard"))
from dash_helpers import require
from test_dash_browser import CHROMIUM, CHROMIUM_ARGS, JUPYTER, jupyterlab

from orchestrator_nb import trust

pytestmark = [pytest.mark.browser, pytest.mark.kernel, pytest.mark.slow]

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "fake_acp_agent.py"
YAML = """
agents:
  fake: {{driver: acp, argv: {argv}, retries: 0, timeout: 120}}
approvals:
  timeout: 120
workflows:
  one:
    steps:
      - {{id: write, agent: fake, prompt: "{{{{ task }}}}"}}
"""
CELL = """\
from orchestrator_nb.notebook.background import start

run = start("write out.txt hi", "one", workspace="ws")"""


def test_allow_once_clicked_in_jupyterlab_lets_the_agent_write(tmp_path: Path) -> None:
    require(Path(CHROMIUM).is_file(), "chromium (or chromium-browser) is missing: `make browser`")
    require(JUPYTER.is_file(), "jupyter is not installed in the venv: run `make venv`")
    from playwright.sync_api import expect, sync_playwright

    root = tmp_path / "lab"
    ws = root / "ws"
    ws.mkdir(parents=True)
    (ws / "orchestrator.yaml").write_text(YAML.format(argv=json.dumps([sys.executable, str(FAKE)])))
    trust(ws)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "ask.ipynb")

    with jupyterlab(root) as (base, token), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{base}/lab/tree/ask.ipynb?token={token}")
            page.locator(".jp-Notebook .jp-Cell .cm-content").first.click(timeout=60_000)
            page.keyboard.press("Shift+Enter")

            out = page.locator(".jp-OutputArea-output")
            allow = out.locator(".widget-button").filter(has_text=re.compile(r"^\s*Allow once\s*$"))
            expect(allow).to_be_enabled(timeout=60_000)
            expect(out.get_by_text("waiting for you").first).to_be_visible()
            expect(out.locator("pre").filter(has_text=re.compile(r"\+hi"))).to_be_visible()
            assert not (ws / "out.txt").exists()  # nothing happens before the click
            allow.click()
            expect(out.get_by_text("allowed once by you")).to_be_visible(timeout=30_000)
            expect(allow).to_be_disabled()
            for _ in range(300):
                if (ws / "out.txt").exists():
                    break
                page.wait_for_timeout(100)
            assert (ws / "out.txt").read_text() == "hi\n"
        finally:
            browser.close()
