"""The magics on a bare InteractiveShell, with fake command agents through the real engine."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets.config import Config

from orchestrator_nb.config import load_settings
from orchestrator_nb.notebook.commands import Commands
from orchestrator_nb.notebook.magics import OrchestratorMagics
from orchestrator_nb.notebook.render import workflow_bundle
from orchestrator_nb.sessions import SessionStore
from orchestrator_nb.workflow.result import WorkflowResult

FAKE_CLI = Path(__file__).with_name("nb_fake_cli.py")


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    config = Config()
    config.HistoryManager.enabled = False
    sh = InteractiveShell.instance(config=config)
    yield sh
    InteractiveShell.clear_instance()


@pytest.fixture
def store(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> SessionStore:
    monkeypatch.delenv("ORCHESTRATOR_NB_INTERACTIVE", raising=False)
    store = SessionStore()
    shell.register_magics(OrchestratorMagics(shell, store=store))
    return store


def run(shell: InteractiveShell, line: str, body: str) -> Any:
    return shell.run_cell_magic("orchestrate", line, body)


def sub(shell: InteractiveShell, line: str) -> Any:
    return shell.run_line_magic("orchestrate", line)


def test_load_ext_registers_the_magic_and_the_renderer(shell: InteractiveShell) -> None:
    shell.run_line_magic("load_ext", "orchestrator_nb.notebook")
    try:
        assert "orchestrate" in shell.magics_manager.magics["cell"]
        assert "orchestrate" in shell.magics_manager.magics["line"]
        doc = shell.magics_manager.magics["cell"]["orchestrate"].__doc__
        for option in ("--max-iterations N", "--budget USD", "--timeout S", "--rehearse SCENARIO"):
            assert option in doc  # %%orchestrate? documents every option
        result = WorkflowResult("r", "w", "t", "completed")
        data, _ = shell.display_formatter.format(result)
        assert data["text/html"] == workflow_bundle(result)["text/html"]
    finally:
        shell.run_line_magic("unload_ext", "orchestrator_nb.notebook")
    assert "orchestrate" not in shell.magics_manager.magics["cell"]


@pytest.mark.parametrize(
    ("line", "body", "message"),
    [
        ("--budget -3", "x", "expected a number above 0, got '-3'"),
        ("--max-iterations x", "x", "expected a whole number of at least 1"),
        ("--timeout 0", "x", "expected a number above 0"),
        ("--frob", "x", "accepted options: -w/--workflow"),
        ("-w nope", "x", "unknown workflow 'nope'; known: best-of-n, default"),
        ("-a nope", "x", "unknown agent 'nope'; known: claude, claude-acp, codex, codex-acp"),
        (
            "--rehearse nope",
            "x",
            "shipped: best-of-n, calculator, flaky, hang, parallel-review, rate-limit, write-file",
        ),
        ("--followup --new", "x", "contradict"),
        ("-a fake -w pair", "x", "either -w/--workflow or -a/--agent"),
        ("-a fake --budget 1", "x", "apply to workflows"),
        ("-o 1x", "x", "needs a Python variable name"),
        ("", "  \n ", "the cell body is the task and it is empty"),
    ],
)
def test_mistakes_raise_usage_errors_with_accepted_values(
    shell: InteractiveShell,
    store: SessionStore,
    workspace: Path,
    line: str,
    body: str,
    message: str,
) -> None:
    with pytest.raises(UsageError, match=_escaped(message)):
        run(shell, f"{line} --workspace {workspace}", body)
    assert store.current.turns == []


def _escaped(text: str) -> str:
    import re

    return re.escape(text)


def test_missing_workspace_is_a_usage_error(shell: InteractiveShell, store: SessionStore) -> None:
    with pytest.raises(UsageError, match="its parent folder '/no/such' does not exist either"):
        run(shell, "--workspace /no/such/folder", "x")


def test_workspace_is_created_when_its_parent_exists(
    shell: InteractiveShell,
    store: SessionStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run(shell, "--dry-run --workspace ./calc", "Write a calculator")
    made = tmp_path / "calc"
    assert made.is_dir() and result.outcome == "completed"
    assert f"created the folder {made} (--workspace ./calc)" in capsys.readouterr().out
    run(shell, "--dry-run --workspace ./calc", "Write a calculator")  # exists now: no word
    assert "created" not in capsys.readouterr().out
    run(shell, '--dry-run --workspace "./my calc"', "x")  # IPython keeps the quotes: not us
    assert (tmp_path / "my calc").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="'file' is a file, not a folder"):
        run(shell, "--dry-run --workspace file", "x")


def test_an_empty_body_gets_the_projects_message_not_ipythons(
    shell: InteractiveShell, store: SessionStore, workspace: Path
) -> None:
    for cell in (
        f"%%orchestrate --workspace {workspace}",
        f"%%orchestrate --workspace {workspace}\n",
    ):
        outcome = shell.run_cell(cell)
        error = outcome.error_in_exec
        assert isinstance(error, UsageError), error
        assert str(error).startswith("the cell body is the task and it is empty")
        assert "Did you mean" not in str(error)
    assert store.current.turns == []


@pytest.mark.parametrize(
    ("line", "meant"),
    [
        ("-workspace ./x", "--workspace"),
        ("-rehearse calculator", "--rehearse"),
        ("-followup", "--followup"),
        ("-dry-run", "--dry-run"),
        ("-max-iter=2", "--max-iterations"),
    ],
)
def test_a_long_option_with_one_dash_names_the_option_meant(
    shell: InteractiveShell, store: SessionStore, line: str, meant: str
) -> None:
    with pytest.raises(UsageError, match=f"has one dash: long options take two, as in {meant}$"):
        run(shell, line, "x")
    assert store.current.turns == []


def test_an_unknown_notebook_variable_lists_the_ones_it_can_use(
    shell: InteractiveShell, store: SessionStore, workspace: Path
) -> None:
    shell.user_ns.update(fname="v.txt", count=3, helper=len, _private=1)
    with pytest.raises(UsageError) as caught:
        run(shell, f"-a fake --workspace {workspace}", "write {{ fnam }} and {{ fnam }}")
    message = str(caught.value)
    assert message.startswith("{{ fnam }} in the cell body: no notebook variable of that name")
    listed = message.split("variables it can use: ")[1].split(", ")
    assert "fname" in listed and "count" in listed
    assert "helper" not in listed and "_private" not in listed and "In" not in listed
    assert store.current.turns == []


def test_usage_of_the_cell_magic_reads_as_plain_text(shell: InteractiveShell) -> None:
    magics = OrchestratorMagics(shell, store=SessionStore())
    doc = magics.orchestrate.__doc__ or ""
    assert doc.startswith("usage: %%orchestrate [-w NAME] [-a NAME] [--workspace PATH]")
    assert "::" not in doc and "``" not in doc
    assert "--quiet" in doc.split("\n\n")[0]  # the whole usage line, before the description


def test_one_agent_run_live_then_result(
    shell: InteractiveShell, store: SessionStore, workspace: Path
) -> None:
    with capture_output() as cap:
        result = run(shell, f"-a fake --workspace {workspace}", "write a.txt saying hi")
    assert isinstance(result, WorkflowResult) and result.ok
    assert (workspace / "a.txt").read_text() == "hi\n"
    assert [c.path for c in result.changes] == ["a.txt"] and "+hi" in result.diff
    assert "did: write a.txt saying hi" in result.text
    assert result.summary().startswith("workflow agent:fake: completed — 1 step(s)")
    areas = [o for o in cap.outputs if o.transient]
    assert areas[0].update is False and "**fake**" in areas[0].data["text/markdown"]
    assert areas[-1].update is True and areas[-1].data == {"text/plain": ""}  # replaced
    turn = store.current.turns[0]
    assert (turn.agent, turn.outcome, turn.steps[0].text) == ("fake", "completed", result.text)
    saved = workspace / ".orchestrator" / "sessions" / f"{store.current.id}.json"
    assert saved.is_file()


def test_workflow_run_followup_and_new(
    shell: InteractiveShell,
    store: SessionStore,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = run(shell, f"-w pair --workspace {workspace}", "write a.txt saying hi")
    assert [s.step_id for s in first.steps] == ["write", "check"]
    assert "follow-up" not in capsys.readouterr().out  # a first turn needs no decision line
    second = run(shell, f"-w pair --workspace {workspace}", "now write b.txt saying yo")
    out = capsys.readouterr().out
    assert "↪ follow-up of turn 1 (short message with 'now') — use --new" in out
    assert "first line: Context: this continues the previous request" in second.steps[0].text
    third = run(shell, f"-w pair --new --workspace {workspace}", "now write c.txt saying ok")
    assert "● new task (--new)" in capsys.readouterr().out
    assert "first line: now write c.txt saying ok" in third.steps[0].text
    turns = store.current.turns
    assert [(t.number, t.followup, len(t.steps)) for t in turns] == [
        (1, False, 2),
        (2, True, 2),
        (3, False, 2),
    ]
    assert turns[1].task == "now write b.txt saying yo"  # the task as written


def test_notebook_variables_in_the_body(
    shell: InteractiveShell, store: SessionStore, workspace: Path
) -> None:
    shell.user_ns["fname"] = "v.txt"
    result = run(
        shell, f"-a fake --workspace {workspace}", "x {{ a.b }} {x}: write {{ fname }} saying hi"
    )
    assert (workspace / "v.txt").is_file()
    assert "did: x {{ a.b }} {x}: write v.txt saying hi" in result.text


def test_out_quiet_and_dry_run(
    shell: InteractiveShell, store: SessionStore, workspace: Path
) -> None:
    with capture_output() as cap:
        assert run(shell, f"-a fake -o res --quiet --workspace {workspace}", "say hi") is None
    assert cap.outputs == [] and cap.stdout == ""
    assert isinstance(shell.user_ns["res"], WorkflowResult)
    plan = run(shell, f"-w pair --dry-run --workspace {workspace}", "write z.txt saying no")
    assert "plan of workflow pair (dry run):" in str(plan) and "[fake2]" in str(plan)
    agent_plan = run(shell, f"-a fake --dry-run --workspace {workspace}", "write z.txt saying no")
    assert agent_plan.plan[0].agent == "fake"
    assert not (workspace / "z.txt").exists() and len(store.current.turns) == 1


def test_failures_and_timeouts_end_in_the_result(
    shell: InteractiveShell, store: SessionStore, workspace: Path
) -> None:
    failed = run(shell, f"-a fake --workspace {workspace}", "fail now")
    assert failed.outcome == "failed" and failed.error is not None
    assert failed.error.kind == "failed" and "fake" in failed.error.message
    # --timeout is the run's own limit: its own outcome, with a hint naming --timeout.
    slow = run(shell, f"-a fake --timeout 0.5 --workspace {workspace}", "sleep 5")
    assert slow.outcome == "timeout" and slow.error is not None
    assert slow.error.kind == "timeout" and "--timeout" in (slow.error.hint or "")
    walled = run(shell, f"-w pair --timeout 0.5 --workspace {workspace}", "sleep 5")
    assert walled.outcome == "timeout" and "max_wall_s" not in str(walled.error)
    assert [t.outcome for t in store.current.turns] == ["failed", "timeout", "timeout"]


def test_gate_in_a_blocking_cell_uses_the_policy_and_says_why(
    shell: InteractiveShell, store: SessionStore, workspace: Path
) -> None:
    with capture_output() as cap:
        result = run(shell, f"-w gated --workspace {workspace}", "write g.txt saying ok")
    assert "gate ask: approve by policy" in result.notes
    notes = [o.data["text/plain"] for o in cap.outputs if "gate ask" in o.data["text/plain"]]
    assert "no one can click a button here, so the gate policy decides" in notes[-1]


def test_interrupt_ends_with_one_line_and_keeps_the_session(
    shell: InteractiveShell,
    store: SessionStore,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run(shell, f"-a fake --workspace {workspace}", "write a.txt saying hi")
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    try:
        assert (
            run(shell, f"-a fake --workspace {workspace}", "write b.txt saying no sleep 30") is None
        )
    finally:
        timer.cancel()
    assert time.monotonic() - started < 15
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == (
        "⏹ interrupted: agent fake cancelled after 0 finished step(s); its agents were stopped. "
        "Session 'default' keeps 2 turn(s)."
    )
    assert [t.outcome for t in store.current.turns] == ["completed", "cancelled"]
    assert _fake_cli_processes(workspace) == []


def _fake_cli_processes(workspace: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if str(FAKE_CLI) in cmdline and cwd == str(workspace.resolve()):
            found.append(int(entry.name))
    return found


def test_background_interactive_returns_a_run(
    shell: InteractiveShell, store: SessionStore, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_NB_INTERACTIVE", "1")
    handle = run(
        shell, f"-a fake --background -o h --workspace {workspace}", "sleep 1 write c.txt saying hi"
    )
    assert shell.user_ns["h"] is handle and not handle.done()
    assert "background run of agent fake: running" in handle._repr_mimebundle_()["text/plain"]
    result = handle.result(timeout=30)
    assert result.ok and (workspace / "c.txt").is_file() and handle.status() == "completed"
    assert store.current.turns[-1].outcome == "completed"
    stopped = run(shell, f"-a fake --background --workspace {workspace}", "sleep 30")
    assert stopped.cancel() is True
    assert stopped.result(timeout=15).outcome == "cancelled"
    assert store.current.turns[-1].outcome == "cancelled" and not stopped.cancel()


def test_background_in_batch_runs_in_the_cell(
    shell: InteractiveShell,
    store: SessionStore,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = run(shell, f"-a fake --background --workspace {workspace}", "write d.txt saying hi")
    assert isinstance(result, WorkflowResult) and result.ok
    assert "batch execution keeps only the output of the running cell" in capsys.readouterr().out


def test_start_from_python_is_awaited_at_the_end_of_a_batch_cell(
    shell: InteractiveShell, store: SessionStore, workspace: Path
) -> None:
    shell.user_ns["ws"] = str(workspace)
    cell = "from orchestrator_nb.notebook import start\n"
    cell += "r = start('write e.txt saying hi', 'pair', workspace=ws)"
    with capture_output():
        shell.run_cell(cell)
    handle = shell.user_ns["r"]
    assert handle.done() and handle.result().ok and (workspace / "e.txt").is_file()


def test_line_subcommands(
    shell: InteractiveShell,
    store: SessionStore,
    workspace: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run(shell, f"-a fake --workspace {workspace}", "write a.txt saying hi")
    assert "fake" in str(sub(shell, "agents"))
    assert "pair" in str(sub(shell, "workflows"))
    assert "write (agent) [fake]" in str(sub(shell, "show pair"))
    assert "1  agent fake  completed" in str(sub(shell, "history"))
    assert "fake: driver=command" in str(sub(shell, "config"))
    sub(shell, "metrics")
    assert "session new [NAME]" in str(sub(shell, "help"))
    with pytest.raises(UsageError, match="unknown subcommand 'frob'; known: agents, workflows"):
        sub(shell, "frob")
    with pytest.raises(UsageError, match="unknown session action 'frob'; known: new, list"):
        sub(shell, "session frob")
    with pytest.raises(UsageError, match="invalid choice: 'yaml'"):
        sub(shell, f"session export --format yaml {tmp_path / 'x'}")
    with pytest.raises(UsageError, match="no session 'nope'"):
        sub(shell, "session switch nope")


def test_dashboard_subcommand(store: SessionStore, workspace: Path, capsys: Any) -> None:
    commands = Commands(store, load_settings, find_dashboard=lambda: None)
    assert commands("dashboard") is None
    assert "the dashboard is not available yet" in capsys.readouterr().out
    store.current.workspace = str(workspace)
    made = Commands(store, load_settings, find_dashboard=lambda: dict)("dashboard")
    assert made == {"store": store, "workspace": str(workspace)}


def test_session_subcommands_round_trip(
    shell: InteractiveShell, store: SessionStore, workspace: Path, tmp_path: Path
) -> None:
    run(shell, f"-a fake --workspace {workspace}", "write a.txt saying hi")
    first = store.current
    sub(shell, "session new other --conversation")
    assert store.current.name == "other" and store.current.conversation
    sub(shell, "session conversation off")
    assert not store.current.conversation
    assert "*  other" in str(sub(shell, "session list"))
    sub(shell, "session switch default")
    assert "turn 1 task: write a.txt saying hi" in str(sub(shell, "session show"))
    for name in ("s.json", "s.md", "s.ipynb"):
        sub(shell, f"session export {tmp_path / name}")
    sub(shell, f"session export --format md {tmp_path / 'plain.txt'}")
    assert (tmp_path / "plain.txt").read_text().startswith("# Session default")
    sub(shell, "session reset")
    assert first.turns == []
    sub(shell, f"session import {tmp_path / 's.json'}")
    assert store.current.id == first.id and len(store.current.turns) == 1
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UsageError, match="not valid JSON"):
        sub(shell, f"session import {tmp_path / 'bad.json'}")


def test_session_option_records_in_a_named_session(
    shell: InteractiveShell, store: SessionStore, workspace: Path
) -> None:
    run(shell, f"-a fake -s feature --workspace {workspace}", "write a.txt saying hi")
    assert store.current.name == "feature" and len(store.current.turns) == 1


def test_notebook_package_exports_resolve() -> None:
    import orchestrator_nb.notebook as notebook

    for name in notebook.__all__:
        assert getattr(notebook, name) is not None, name
    with pytest.raises(AttributeError):
        _ = notebook.nothing_here


def test_metrics_served_on_loopback_from_the_kernel(
    shell: InteractiveShell, store: SessionStore
) -> None:
    import urllib.request

    from orchestrator_nb.notebook import commands

    with capture_output() as cap:
        shell.run_line_magic("orchestrate", "metrics --serve 0")
    url = cap.stdout.split("serving metrics at ")[1].split()[0]
    try:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert b"orchestrator_tasks_total" in reply.read()
    finally:
        commands._METRICS_SERVER.stop()
        commands._METRICS_SERVER = None
    with pytest.raises(UsageError, match=r"metrics \[--raw \| --serve PORT\]"):
        shell.run_line_magic("orchestrate", "metrics --serve everywhere")
    raw = shell.run_line_magic("orchestrate", "metrics --raw")
    assert "# TYPE orchestrator_tasks_total counter" in str(raw)


def test_a_workflow_with_an_unknown_agent_is_refused_before_the_cell_starts(
    shell: InteractiveShell, store: SessionStore, workspace: Path
) -> None:
    run(shell, f"-a fake --workspace {workspace}", "write a.txt saying hi")
    config = workspace / "orchestrator.yaml"
    config.write_text(
        config.read_text() + "  broken:\n    steps:\n      - {id: go, agent: nobody}\n"
    )
    from orchestrator_nb import trust

    trust(workspace)
    with pytest.raises(UsageError, match="workflow 'broken', step 'go': unknown agent 'nobody'"):
        run(shell, f"-w pair --workspace {workspace}", "now also write b.txt")
    assert len(store.current.turns) == 1  # refused: no turn, nothing to follow up


def test_a_failed_run_is_never_the_turn_a_followup_continues(
    shell: InteractiveShell, store: SessionStore, workspace: Path
) -> None:
    run(shell, f"-a fake --workspace {workspace}", "write a.txt saying hi")
    failed = run(shell, f"-a fake --workspace {workspace}", "now fail please")
    assert not failed.ok and store.current.turns[-1].outcome == "failed"
    with capture_output() as cap:
        run(shell, f"-a fake --workspace {workspace}", "now write b.txt saying yo")
    assert "↪ follow-up of turn 1" in cap.stdout
    third = store.current.turns[-1]
    assert third.followup and third.decision.startswith("↪ follow-up of turn 1")
