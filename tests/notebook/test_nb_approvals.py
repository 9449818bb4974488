"""Permission questions as widgets: a click decides what a real ACP agent process may do."""

from __future__ import annotations

import asyncio
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from acp_kernel_config import FAKE_ACP, acp_config

from orchestrator_nb.api import arun_agent
from orchestrator_nb.config import load_settings
from orchestrator_nb.notebook.approvals import WidgetApprover

FAKE = FAKE_ACP


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
    cfg = load_settings(  # the approval policy is the user's to set: this test's own
        cwd=ws, trust=True, agents={"fake": {"driver": "acp", "argv": [str(exe)], "retries": 0}}
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


def test_setup_offers_buttons_only_where_a_click_can_arrive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from orchestrator_nb.notebook.approvals import BATCH_REASON, BUSY_REASON, approvals_setup

    monkeypatch.delenv("ORCHESTRATOR_NB_INTERACTIVE", raising=False)
    lab = SimpleNamespace(kernel=SimpleNamespace(_allow_stdin=True))
    nbclient = SimpleNamespace(kernel=SimpleNamespace(_allow_stdin=False))
    assert approvals_setup(nbclient, background=True, add_widget=print) == (None, BATCH_REASON)
    assert approvals_setup(lab, background=False, add_widget=print) == (None, BUSY_REASON)
    ask, why = approvals_setup(lab, background=True, add_widget=print)
    assert isinstance(ask, WidgetApprover) and why is None


async def test_the_question_shows_the_diff_and_who_waits(setup: tuple[Path, Any]) -> None:
    from orchestrator_nb.notebook.approvals import pending

    ws, cfg = setup
    notes: list[str] = []
    approver = WidgetApprover(lambda w: None, notes.append)

    async def answer_when_shown() -> None:
        while not pending():
            await asyncio.sleep(0.01)
        question = pending()[0]
        assert "+hi" in question.message.value  # the diff of the edit it asks for
        question.reject()

    clicker = asyncio.ensure_future(answer_when_shown())
    result = await arun_agent(
        "fake", "write out.txt hi", workspace=ws, config=cfg, approvals=approver
    )
    await clicker
    assert not (ws / "out.txt").exists() and not pending()
    assert [d.decision for d in result.permissions] == ["reject"]
    assert "waiting for you" in notes[0] and "out.txt" in notes[0]
    assert notes[1:] == ["fake: Write out.txt: rejected by you"]


async def test_a_person_is_warned_before_allowing_a_change_to_what_runs(
    setup: tuple[Path, Any],
) -> None:
    from orchestrator_nb.notebook.approvals import pending

    ws, cfg = setup
    (ws / ".git" / "hooks").mkdir(parents=True)
    approver = WidgetApprover(lambda w: None)

    async def allow_when_shown() -> str:
        while not pending():
            await asyncio.sleep(0.01)
        question = pending()[0]
        question.allow_once()
        return str(question.message.value)

    clicker = asyncio.ensure_future(allow_when_shown())
    result = await arun_agent(
        "fake", "write .git/hooks/pre-commit x", workspace=ws, config=cfg, approvals=approver
    )
    shown = await clicker
    assert "this changes what runs" in shown and "inside .git/" in shown
    # No policy would allow it; the person did, and that is what happened.
    assert [(d.decision, d.by) for d in result.permissions] == [("allow_once", "user")]
    assert (ws / ".git/hooks/pre-commit").read_text() == "x\n"


@pytest.mark.kernel
@pytest.mark.timeout(240)
@pytest.mark.parametrize(("button", "written"), [("allow_once", True), ("reject", False)])
def test_a_background_cell_asks_and_the_click_decides(
    tmp_path: Path, button: str, written: bool
) -> None:
    """A real kernel: a background ``start`` shows the question in its cell; a click on the
    question's button (made by kernel code in the next cell, as the comm would) decides."""

    import nbformat  # noqa: F401  (the kernel tests' dependency)
    from nbclient import NotebookClient
    from nbformat import v4

    from orchestrator_nb import trust

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "orchestrator.yaml").write_text(acp_config())
    trust(ws)
    cells = [
        "import os\nos.environ['ORCHESTRATOR_NB_INTERACTIVE'] = '1'\n"
        "from orchestrator_nb.notebook.background import start\n"
        f"run = start('write out.txt hi', 'one', workspace={str(ws)!r})",
        "import time\nfrom orchestrator_nb.notebook.approvals import pending\n"
        "deadline = time.monotonic() + 60\n"
        "while not pending() and time.monotonic() < deadline:\n    time.sleep(0.02)\n"
        "q = pending()[0]\n"
        "print('ASKED', q.request.agent, q.request.kind, q.status.value)\n"
        f"q.buttons[{button!r}].click()\n"
        "result = run.result(timeout=60)\n"
        "print('DONE', result.outcome, [p.decision + '/' + p.by for p in "
        "result.steps[0].permissions])",
    ]
    nb = v4.new_notebook(cells=[v4.new_code_cell(s) for s in cells])
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    out = "".join(o.get("text", "") for o in nb.cells[1].outputs if o.output_type == "stream")
    assert "ASKED fake edit" in out and "waiting for you" in out
    assert f"[{button!r}/'user']".replace("'", "") in out.replace("'", "")
    assert (ws / "out.txt").exists() is written
    # The cell kept the question, answered: its widget is in the run's output box.
    assert any(o.output_type == "display_data" for o in nb.cells[0].outputs)


def test_a_dashboard_run_asks_in_the_dashboard(tmp_path: Path) -> None:
    """The same question appears in the dashboard's area for a run started there."""
    import time

    from orchestrator_nb import trust
    from orchestrator_nb.dashboard.panel import Dashboard

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "orchestrator.yaml").write_text(acp_config())
    trust(ws)
    dash = Dashboard(workspace=ws, task="write out.txt hi", workflow="one", check_agents=False)
    run = dash.run_clicked()
    assert run is not None
    deadline = time.monotonic() + 60
    while not dash.approvals.box.children and time.monotonic() < deadline:
        time.sleep(0.02)
    approver = dash.approvals.approver
    assert approver is not None
    [panel] = approver.panels
    assert dash.approvals.box.children == (panel.widget,)
    assert "waiting for you" in dash._status_html()  # the status line says who waits
    panel.buttons["allow_always"].click()
    result = run.result(timeout=60)
    assert (ws / "out.txt").read_text() == "hi\n"
    assert [(p.decision, p.by) for p in result.steps[0].permissions] == [("allow_always", "user")]
