"""Notebook test fixtures: a workspace whose orchestrator.yaml defines fake command agents."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from orchestrator_nb import trust

FAKE_CLI = Path(__file__).with_name("nb_fake_cli.py")

WORKFLOWS = """
workflows:
  pair:
    description: one writes, the other checks
    steps:
      - id: write
        agent: fake
        prompt: "{{ task }}"
      - id: check
        agent: fake2
        prompt: "check the work on: {{ task }}"
  gated:
    steps:
      - id: ask
        kind: gate
        message: "Run it?"
        policy: approve
      - id: write
        agent: fake
        prompt: "{{ task }}"
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    argv = json.dumps([sys.executable, str(FAKE_CLI), "{prompt}"])
    agents = "agents:\n" + "".join(
        f"  {name}:\n    driver: command\n    argv: {argv}\n    retries: 0\n    timeout: 60\n"
        for name in ("fake", "fake2")
    )
    (ws / "orchestrator.yaml").write_text(agents + WORKFLOWS)
    trust(ws)  # its agents are this test's own programs
    return ws
