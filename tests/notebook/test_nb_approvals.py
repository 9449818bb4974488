"""Permission questions as widgets: a click decides what a real ACP agent process may do."""

from __future__ import annotations

import asyncio
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator_nb.api import arun_agent
from orchestrator_nb.config import load_settings
from orchestrator_nb.notebook.approvals import WidgetApprover

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "fake_acp_agent.py"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Any]:
    exe = tmp_path / "fake-acp"
    exe.write_text(
        f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(FAKE)!r}, run_name='__main__')\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "orchestrator.yaml").write_text("approvals:\n  timeout: 1\n")
    cfg = load_settings(
        cwd=ws, agents={"fake": {"driver": "acp", "argv": [str(exe)], "retries": 0}}
    )
    return ws, cfg


@pytest.mark.parametrize(("click", "written"), [("allow_once", True), ("reject", False)])
async def test_the_clicked_answer_decides(
    setup: tuple[Path, Any], click: str, written: bool
) -> None:
    ws, cfg = setup
    shown: list[Any] = []
    approver = WidgetApprover(shown.append)

    def on_show(widget: Any) -> None:
        shown.append(widget)
        panel = approver.panels[-1]
        assert "waiting for you" in panel.status.value and "out.txt" in panel.message.value
        # The click arrives a moment later, as it would from the browser.
        asyncio.get_running_loop().call_later(0.05, getattr(panel, click))

    approver._add = on_show
    result = await arun_agent(
        "fake", "write out.txt hi", workspace=ws, config=cfg, approvals=approver
    )
    assert (ws / "out.txt").exists() is written
    [decision] = result.permissions
    assert (decision.decision, decision.by) == (click, "user")
    panel = approver.panels[0]
    assert all(b.disabled for b in panel.buttons.values()) and "by you" in panel.status.value


async def test_no_click_lets_the_policy_decide_and_says_so(setup: tuple[Path, Any]) -> None:
    ws, cfg = setup
    approver = WidgetApprover(lambda widget: None)
    result = await arun_agent(
        "fake", "run curl http://x", workspace=ws, config=cfg, approvals=approver
    )
    [decision] = result.permissions
    assert (decision.decision, decision.by) == ("reject", "timeout")
    assert "policy decided" in approver.panels[0].status.value
