"""A notebook executed by nbclient (a real kernel) keeps the finished run in its widget state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from dash_helpers import require_clis
from nbclient import NotebookClient

pytestmark = [pytest.mark.kernel, pytest.mark.real_cli, pytest.mark.slow]

SHOW = """\
from orchestrator_nb.dashboard import dashboard
from orchestrator_nb.sessions import SessionStore

d = dashboard(workspace={ws!r}, store=SessionStore(), workflow="quick",
              rehearsal="write-file", task="Create hello.txt saying hi")
d"""
RUN = """\
run = d.run_clicked()
print("started:", d.status)"""
WAIT = """\
result = await d.wait(90)
print("finished:", result.outcome, [c["path"] for c in d.state()["changes"]])"""


def _states(nb: Any) -> dict[str, dict[str, Any]]:
    saved = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]
    return {k: v["state"] for k, v in saved["state"].items()}


def _text(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("text", "") for o in outputs)


async def test_saved_widget_state_shows_the_finished_run(workspace: Path) -> None:
    require_clis("codex")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(SHOW.format(ws=str(workspace))),
        nbformat.v4.new_code_cell(RUN),
        nbformat.v4.new_code_cell(WAIT),
    ]
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(workspace)}},
    )
    await client.async_execute()

    assert "started: running" in _text(nb.cells[1].outputs)  # Run returned at once
    assert "finished: completed ['hello.txt']" in _text(nb.cells[2].outputs)
    assert (workspace / "hello.txt").read_text() == "hi\n"

    states = _states(nb)
    view = nb.cells[0].outputs[0]["data"]["application/vnd.jupyter.widget-view+json"]
    root = states[view["model_id"]]
    assert root["_model_name"] == "VBoxModel"
    # Every widget the panel shows is in the saved state, so the view renders offline.
    pending = [view["model_id"]]
    seen: set[str] = set()
    while pending:
        model_id = pending.pop()
        seen.add(model_id)
        for child in states[model_id].get("children", []):
            pending.append(child.removeprefix("IPY_MODEL_"))
    html_values = [s.get("value", "") for k, s in states.items() if k in seen]
    dumped = json.dumps([states[k] for k in seen])
    assert any(">completed</b>" in v for v in html_values if isinstance(v, str))
    assert any("hello.txt" in v and "+hi" in v for v in html_values if isinstance(v, str))
    tabs = [states[k] for k in seen if states[k]["_model_name"] == "TabModel"]
    assert tabs and tabs[0]["titles"] == ["codex"]
    assert "Done. I created hello.txt" in dumped  # the codex tab's output
    assert "Create hello.txt saying hi" in dumped  # the history table
