"""The magic in a real kernel (nbclient): -a runs through the service like any other run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from nbclient import NotebookClient
from nbformat import v4

pytestmark = [pytest.mark.kernel, pytest.mark.real_cli, pytest.mark.timeout(300)]

BIN = Path(__file__).resolve().parents[2] / ".agents" / "node_modules" / ".bin"


def need(agent: str) -> None:
    if shutil.which("node") is None or not (BIN / agent).exists():
        reason = f"node or {agent} missing in {BIN}: run `make agents`"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def test_magic_new_task_and_followup_and_revert_of_an_agent_run(tmp_path: Path) -> None:
    need("claude")
    ws = tmp_path / "ws"
    ws.mkdir()
    head = f"%%orchestrate --rehearse write-file --workspace {ws} -a claude"
    report = tmp_path / "report.json"
    cells = [
        "%load_ext orchestrator_nb.notebook",
        f"{head} -o first\nPlease create hello.txt",
        f"{head} --new -o new\nsay done again",
        f"{head} --followup -o again\nsay done again",
        f"{head} -o more\nnow say done again",
        "import json\n"
        "from orchestrator_nb.sessions import default_store\n"
        "runs = [first, new, again, more]\n"
        "turns = default_store().current.turns\n"
        "data = {\n"
        "  'ids': [r.steps[0].session_id for r in runs],\n"
        "  'run_ids': [r.run_id for r in runs],\n"
        "  'ok': [r.ok for r in runs],\n"
        "  'usage': [[r.usage.input_tokens, r.usage.output_tokens] for r in runs],\n"
        "  'followup': [t.followup for t in turns],\n"
        "  'workflow': [r.workflow for r in runs],\n"
        "}\n"
        "undone = first.revert()\n"
        f"data['hello_after_revert'] = __import__('os').path.exists({str(ws / 'hello.txt')!r})\n"
        f"open({str(report)!r}, 'w').write(json.dumps(data))",
    ]
    nb = v4.new_notebook(cells=[v4.new_code_cell(c) for c in cells])
    NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    said = ["".join(o.get("text", "") for o in c.outputs) for c in nb.cells]
    assert "● new task (--new)" in said[2]
    assert "↪ follow-up of turn 2 (--followup)" in said[3]
    assert "↪ follow-up of turn 3" in said[4]
    data = json.loads(report.read_text())
    assert all(data["ok"]), data
    assert data["workflow"] == ["agent:claude"] * 4
    first, new, again, more = data["ids"]
    assert first != new and new == again == more  # --new starts afresh; follow-ups continue
    assert data["followup"] == [False, False, True, True]
    assert data["usage"][1:] == [[1400, 12]] * 3  # the same scripted step, the same usage
    assert data["hello_after_revert"] is False  # the -a result reverted
    state = ws / ".orchestrator"
    for run_id in data["run_ids"]:
        assert (state / "runs" / run_id / "outcome.json").is_file()
        assert run_id in (state / "audit.jsonl").read_text()
