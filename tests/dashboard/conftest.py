"""Dashboard fixtures: an empty workspace, and one with a fake `command` agent."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from orchestrator_nb import trust

FAKE_CLI = Path(__file__).with_name("dash_fake_cli.py")
FAKE_CONFIG = """
workflows:
  solo:
    description: the fake agent alone
    steps:
      - id: write
        agent: fake
        prompt: "{{ task }}"
  pair:
    description: the fake agent writes one.txt, then its twin does the task
    steps:
      - {id: first, agent: fake, prompt: "write one.txt saying one"}
      - {id: second, agent: twin, prompt: "{{ task }}"}
  fallback:
    description: an agent that is not installed, then the fake one
    roles:
      writer: [absent, fake]
    steps:
      - {id: write, role: writer, prompt: "{{ task }}"}
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty folder for real-CLI runs."""
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def fake_workspace(tmp_path: Path) -> Path:
    """A folder whose orchestrator.yaml adds two fake `command` agents (fake, twin), one that is
    not installed (absent), and the workflows solo, pair and fallback."""
    ws = tmp_path / "fake-ws"
    ws.mkdir()
    argv = json.dumps([sys.executable, str(FAKE_CLI), "{prompt}"])
    agents = "agents:\n" + "".join(
        f"  {name}:\n    driver: command\n    argv: {argv}\n    retries: 0\n"
        for name in ("fake", "twin")
    )
    agents += f"  absent:\n    driver: claude\n    path: {tmp_path / 'no' / 'claude'}\n"
    (ws / "orchestrator.yaml").write_text(agents + FAKE_CONFIG)
    trust(ws)  # its agent is this test's own program
    return ws
