"""Secrets said by the real agent CLIs (under rehearsal) are found in no file, view or message.

The scripted model says every planted secret with the rehearsal's 48-character deltas cutting
through them, and writes a file whose name holds one. Each of claude, codex, gemini and copilot
runs it: in a workflow from Python (with the live display), through the ``%%orchestrate`` magic
in a real kernel (every iopub message recorded, updates and widget messages included), from the
dashboard (every widget's state), in a batch and from the console script. Then every file the
project wrote, every export, every message and ``/metrics`` are searched for each secret and
any 12-character piece of it.

What is not searched, by design (README, Security): the file the agent wrote into the workspace
(the user's), and the records that let a run be reverted name that file (the revert journal and
the stat cache keep the user's paths; the object store keeps exact copies of the user's files).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from nbclient import NotebookClient
from nbformat import v4
from secrets_world import (
    ENV,
    MODEL,
    OPENAI,
    PASSWORD,
    SECRET_FILE,
    TOKEN,
    leaks,
    leaks_in,
    scenario,
)

import orchestrator_nb
from orchestrator_nb.agents.registry import agents_bin_dirs
from orchestrator_nb.config import Settings, load_settings
from orchestrator_nb.notebook.export import export_session
from orchestrator_nb.notebook.live import LiveDisplay
from orchestrator_nb.observe.metrics import get_metrics
from orchestrator_nb.sessions import Session
from orchestrator_nb.workflow import arun
from orchestrator_nb.workflow.models import Workflow

pytestmark = [pytest.mark.real_cli, pytest.mark.timeout(300)]

CLIS = ("claude", "codex", "gemini", "copilot")
REPO = Path(__file__).resolve().parents[2]
# Records that name the user's own files so a run can be reverted (see the module docstring):
# the only secret they may hold is the one in the written file's name.
USER_PATH_RECORDS = ("journal.jsonl", "stat-tree.json", "stat-git.json")
FOUR = """
steps:
  - {id: s_claude, agent: claude, prompt: "{{ task }}"}
  - {id: s_codex, agent: codex, prompt: "{{ task }}"}
  - {id: s_gemini, agent: gemini, prompt: "{{ task }}"}
  - {id: s_copilot, agent: copilot, prompt: "{{ task }}"}
"""


def need_clis() -> None:
    missing = [c for c in CLIS if not any((d / c).exists() for d in agents_bin_dirs())]
    if missing:
        reason = f"agent CLIs not installed ({', '.join(missing)}): run `make agents`"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    need_clis()
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CODEX_MODEL_NAME", MODEL)
    orchestrator_nb.secrets.add(MODEL)
    path = scenario(tmp_path / "secrets.yaml")
    body = json.loads(path.read_text())
    body["settings"] = {"models": {"codex": MODEL}}  # the model name is a secret too
    path.write_text(json.dumps(body))
    yield path


def settings_for(workspace: Path) -> Settings:
    s = load_settings(cwd=workspace)
    wf = Workflow.model_validate(yaml.safe_load(FOUR))
    return s.model_copy(update={"workflows": {**s.workflows, "four": wf}})


def file_leaks(*folders: Path) -> dict[str, list[str]]:
    """Leaks in every file below the folders (names included), the user's own files excepted."""
    found: dict[str, list[str]] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            parts = rel.split("/")
            if path.name == SECRET_FILE:
                continue  # the agent's own file (also in a batch's copy): the user's
            if "objects" in parts or not path.is_file():
                continue  # exact copies of the user's files
            hit = leaks(rel + "\n" + path.read_bytes().decode("utf-8", "replace"))
            if path.name in USER_PATH_RECORDS and hit == [TOKEN]:
                text = path.read_text(encoding="utf-8", errors="replace")
                if text.count(TOKEN) == text.count(SECRET_FILE):
                    continue  # only the user's file name, needed to revert it
            if hit:
                found[f"{folder.name}/{rel}"] = hit
    return found


class Sink:
    live = True

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []

    def show(self, display_id: str, bundle: dict[str, str]) -> None:
        self.messages.append(dict(bundle))

    def update(self, display_id: str, bundle: dict[str, str]) -> None:
        self.messages.append(dict(bundle))


def test_four_clis_in_a_workflow(planted: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    sink = Sink()
    live = LiveDisplay(sink)
    task = f"check the service with {TOKEN} and {OPENAI}"
    result = asyncio.run(
        arun(
            task,
            "four",
            workspace=ws,
            config=settings_for(ws),
            rehearsal=planted,
            subscribers=[live],
        )
    )
    live.close()
    assert result.ok, result.error
    for step in result.steps:  # the secrets really went through every CLI
        assert {OPENAI, TOKEN, PASSWORD} <= {s for s in (OPENAI, TOKEN, PASSWORD) if s in step.text}
    assert (ws / SECRET_FILE).is_file()

    out = tmp_path / "exports"
    session = Session.create("s")
    turn = session.begin_turn(task, workflow="four", workspace=ws)
    for step in result.steps:
        session.record_step(turn, step)
    session.finish_turn(turn, "ok", run_id=result.run_id)
    for fmt in ("json", "md", "ipynb"):
        export_session(session, out / f"session.{fmt}")

    assert not file_leaks(ws, out)
    assert len(sink.messages) > 4 and not leaks_in(sink.messages)
    assert not leaks(str(result)) and not leaks_in(result._repr_mimebundle_())
    metrics = get_metrics().exposition().decode()
    assert "orchestrator_agent_calls" in metrics and not leaks(metrics)


class RecordingClient(NotebookClient):
    """Keeps every iopub message: display data, updates, streams, widget comm messages."""

    messages: list[dict[str, Any]]

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        self.messages.append({"type": msg["msg_type"], "content": msg["content"]})
        return super().process_message(msg, cell, cell_index)


def test_the_magic_in_a_real_kernel(planted: Path, tmp_path: Path) -> None:
    body = json.loads(planted.read_text())
    body["turns"][0]["fault"] = {"kind": "delay", "seconds": 1.5}  # the areas show "running" first
    planted.write_text(json.dumps(body))
    ws = tmp_path / "ws"
    ws.mkdir()
    out = tmp_path / "exports"
    nb = v4.new_notebook(
        cells=[
            v4.new_code_cell(s)
            for s in (
                "%load_ext orchestrator_nb.notebook",
                "import os, orchestrator_nb\n"
                "from orchestrator_nb.notebook.gates import ENV_INTERACTIVE\n"
                "os.environ[ENV_INTERACTIVE] = '1'  # as in JupyterLab: live step areas\n"
                "orchestrator_nb.secrets.add_names('CODEX_MODEL_NAME')\n"
                "secret = os.environ['MY_SERVICE_TOKEN']",
                f"%%orchestrate --rehearse {planted} --workspace {ws} -a gemini\n"
                "check the service with {{ secret }}",
                f"%%orchestrate --rehearse {planted} --workspace {ws} -a codex\n"
                "now with {{ secret }} again",
                # The shipped default workflow (codex, gemini, claude) over the same scenario.
                f"%%orchestrate --rehearse {planted} --workspace {ws} --new --max-iterations 1\n"
                "review the service that uses {{ secret }}",
                "%orchestrate history",
                "%orchestrate session show",
                f"%orchestrate session export {out / 's.json'}\n",
                f"%orchestrate session export {out / 's.md'}",
                f"%orchestrate session export {out / 's.ipynb'}",
                "from orchestrator_nb.observe.metrics import get_metrics\n"
                "print(get_metrics().exposition().decode())",
            )
        ]
    )
    client = RecordingClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.messages = []
    client.execute()
    saved = tmp_path / "executed.ipynb"
    nbformat.write(nb, saved)

    kinds = {m["type"] for m in client.messages}
    assert {"display_data", "update_display_data", "stream"} <= kinds, [
        (m["type"], str(m["content"])[:300]) for m in client.messages if m["type"] != "status"
    ]
    errors = [m for m in client.messages if m["type"] == "error"]
    assert not errors, errors
    results = [
        m["content"]["data"]["text/plain"] for m in client.messages if m["type"] == "execute_result"
    ]
    ran = [
        r.split(":", 1)[0].removesuffix(" (rehearsal)")
        for r in results
        if r.startswith("workflow ")
    ]
    assert ran == ["workflow agent", "workflow agent", "workflow default"], results
    assert all(": completed" in r for r in results if r.startswith("workflow ")), results
    # The secret really reached the agents: the session on disk shows where it was masked.
    assert "[REDACTED:MY_SERVICE_TOKEN]" in (out / "s.md").read_text()
    assert not leaks_in(client.messages)
    assert not file_leaks(ws, out, tmp_path / ".orchestrator")
    assert not leaks(saved.read_text())


def test_the_dashboard(planted: Path, tmp_path: Path) -> None:
    from orchestrator_nb.dashboard import dashboard
    from orchestrator_nb.dashboard.dispatch import walk
    from orchestrator_nb.sessions import SessionStore

    ws = tmp_path / "ws"
    ws.mkdir()
    d = dashboard(
        workspace=ws,
        config=settings_for(ws),
        store=SessionStore(),
        workflow="four",
        rehearsal=str(planted),
        check_agents=False,
        task=f"check the service with {TOKEN}",
    )
    assert d.run_clicked() is not None
    result = d.join(240)
    assert result is not None and result.ok, d.error
    assert any(TOKEN in s.text for s in result.steps)
    # The task box holds what the user typed, as typed: it is their input, not our output.
    typed = (d.controls.task, d.controls.followup)
    assert TOKEN in d.controls.task.value
    states = [w.get_state() for w in walk(d.widget) if w not in typed]
    assert len(states) > 10
    assert not leaks_in(states)
    assert not leaks_in(d.state())
    assert not [a for a in ("claude", "gemini") if leaks(d.agent_text(a))]
    assert not file_leaks(ws)


def test_a_batch_and_the_console_script(planted: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "orchestrator.yaml").write_text(
        "workflows:\n  one:\n    steps:\n      - {id: s, agent: gemini, prompt: '{{ task }}'}\n"
    )
    tasks = tmp_path / "tasks.txt"  # the user's input, outside the workspace (copies take it)
    tasks.write_text(f"check {TOKEN}\ncheck {OPENAI} too\n")
    exe = Path(sys.executable).with_name("orchestrator-nb")
    common = ["--workspace", str(ws), "--rehearse", str(planted), "-w", "one"]
    env = {**os.environ}
    done = [
        subprocess.run(
            [str(exe), "exec", f"check the service with {TOKEN}", *common],
            capture_output=True, text=True, env=env, timeout=240, cwd=ws,
        ),
        subprocess.run(
            [str(exe), "exec", f"check {PASSWORD}", *common, "--json"],
            capture_output=True, text=True, env=env, timeout=240, cwd=ws,
        ),
        subprocess.run(
            [str(exe), "batch", str(tasks), *common, "-j", "1", "--isolation", "copy",
             "--json", str(ws / "b.json")],
            capture_output=True, text=True, env=env, timeout=240, cwd=ws,
        ),
    ]  # fmt: skip
    for proc in done:
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert not leaks(proc.stdout + proc.stderr), (proc.args, proc.stdout[-500:])
    assert "[REDACTED:" in done[1].stdout  # the secrets were there, masked
    assert not file_leaks(ws)


def test_the_executed_notebook_and_its_html(planted: Path, tmp_path: Path) -> None:
    # `orchestrator-nb run` (papermill, what `make demo` uses): every output of every cell,
    # a user's own print included, is redacted in the executed notebook and its HTML.
    source = tmp_path / "nb.ipynb"
    nbformat.write(
        v4.new_notebook(
            cells=[v4.new_code_cell("import os\nprint('token:', os.environ['MY_SERVICE_TOKEN'])")]
        ),
        source,
    )
    exe = Path(sys.executable).with_name("orchestrator-nb")
    target = tmp_path / "out" / "nb.out.ipynb"
    target.parent.mkdir()
    proc = subprocess.run(
        [str(exe), "run", str(source), "-o", str(target), "--html", "--kernel", "python3"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    executed = target.read_text()
    assert "token: [REDACTED:MY_SERVICE_TOKEN]" in executed
    assert not leaks(executed) and not leaks(target.with_suffix(".html").read_text())
    assert not leaks(proc.stdout + proc.stderr)
