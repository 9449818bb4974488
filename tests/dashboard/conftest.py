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
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty folder for real-CLI runs."""
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def fake_workspace(tmp_path: Path) -> Path:
    """A folder whose orchestrator.yaml adds a fake `command` agent and the `solo` workflow."""
    ws = tmp_path / "fake-ws"
    ws.mkdir()
    argv = json.dumps([sys.executable, str(FAKE_CLI), "{prompt}"])
    agents = f"agents:\n  fake:\n    driver: command\n    argv: {argv}\n    retries: 0\n"
    (ws / "orchestrator.yaml").write_text(agents + FAKE_CONFIG)
    trust(ws)  # its agent is this test's own program
    return ws
