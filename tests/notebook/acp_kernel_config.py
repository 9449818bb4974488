"""The workspace configuration of the kernel tests whose agent asks permission (the fake ACP
agent): one place for the approval and the busy-cell click tests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

FAKE_ACP = Path(__file__).resolve().parents[1] / "fakes" / "fake_acp_agent.py"

_AGENT = """
agents:
  fake:
    driver: acp
    argv: {argv}
    retries: 0
    timeout: 60
approvals:
  timeout: 120
workflows:
  one:
    steps:
      - id: write
        agent: fake
        prompt: "{{{{ task }}}}"
"""

_GATED = """
  gated:
    steps:
      - id: ok
        kind: gate
        message: write it?
        policy: reject
      - id: write
        agent: fake
        prompt: "{{{{ task }}}}"
"""


def acp_config(*, gated: bool = False) -> str:
    """``orchestrator.yaml`` for the fake ACP agent; ``gated`` adds a workflow whose gate's
    policy rejects."""
    text = _AGENT + (_GATED if gated else "")
    return text.format(argv=json.dumps([sys.executable, str(FAKE_ACP)]))
