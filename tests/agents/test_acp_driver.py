"""`driver: acp` through a real subprocess: a small ACP agent built with the SDK (tests/fakes).

The fake takes the paths the real agents do not take under rehearsal here: permission requests
for commands, errors at start-up, an agent that ignores ``session/cancel``.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator_nb.agents.acp.permissions import PermissionRequest
from orchestrator_nb.api import arun_agent, parse_transcript
from orchestrator_nb.config import Settings, load_settings
from orchestrator_nb.errors import ConfigError
from orchestrator_nb.events import TextEvent
from orchestrator_nb.observe.audit import AUDIT_FILE, AuditTrail
from orchestrator_nb.process import group_members
from orchestrator_nb.workflow.api import arun

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "fake_acp_agent.py"


@pytest.fixture
def acp_exe(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "fake-acp"
    path.parent.mkdir()
    path.write_text(
        f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(FAKE)!r}, run_name='__main__')\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "starts.txt"
    monkeypatch.setenv("FAKE_ACP_STARTS", str(path))
    monkeypatch.delenv("FAKE_ACP_MODE", raising=False)
    return path


def settings(workspace: Path, exe: Path, **agent: Any) -> Settings:
    cfg = {"driver": "acp", "argv": [str(exe)], "retries": 0, "retry_wait": 0, **agent}
    return load_settings(cwd=workspace, agents={"fake": cfg})


def pids(starts: Path) -> list[int]:
    return [int(p) for p in starts.read_text().split()] if starts.exists() else []


async def run(
    workspace: Path, exe: Path, prompt: str, agent: dict[str, Any] | None = None, **kwargs: Any
) -> Any:
    return await arun_agent(
        "fake",
        prompt,
        workspace=workspace,
        config=settings(workspace, exe, **(agent or {})),
        **kwargs,
    )


async def test_write_inside_the_workspace_is_allowed_by_the_default_policy(
    workspace: Path, acp_exe: Path, starts: Path
) -> None:
    result = await run(workspace, acp_exe, "write out.txt hello")
    assert result.ok, result.error
    assert (workspace / "out.txt").read_text() == "hello\n"
    assert [(c.path, c.kind) for c in result.changes] == [("out.txt", "added")]
    [decision] = result.permissions
    assert (decision.kind, decision.decision, decision.by) == ("edit", "allow_once", "policy")
    assert "wrote out.txt" in result.text
    assert result.usage.cost_usd == 0.25
    assert result.session_id and result.session_id.startswith("fake-")
    # The raw JSON-RPC traffic is kept, and replays to the same answer.
    log = Path(result.log_path) / "rpc.log"
    replay = parse_transcript("fake", log.read_text(), config=settings(workspace, acp_exe))
    assert replay.ok and replay.text == result.text
    assert not group_members(pids(starts)[0])


async def test_a_rejecting_policy_changes_the_outcome(
    workspace: Path, acp_exe: Path, starts: Path
) -> None:
    reject_all = {"rules": [], "default": "reject"}
    result = await run(workspace, acp_exe, "write out.txt hello", approvals=reject_all)
    assert not (workspace / "out.txt").exists()
    assert [p.decision for p in result.permissions] == ["reject"]
    assert "not allowed to write out.txt" in result.text
    assert result.changes == []


async def test_default_policy_rejects_commands_paths_outside_and_what_runs(
    workspace: Path, acp_exe: Path, starts: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere.txt"
    (workspace / ".git" / "hooks").mkdir(parents=True)
    prompt = (
        f"run /usr/bin/curl https://example.com\nrun rm -rf /\nwrite {outside} x\n"
        "write .git/hooks/pre-commit x\nwrite .claude/settings.json {}\nwrite ok.txt fine"
    )
    result = await run(workspace, acp_exe, prompt)
    decisions = [(p.kind, p.decision, p.reason) for p in result.permissions]
    assert decisions[:3] == [
        ("execute", "reject", "rule 1"),  # the network rule
        ("execute", "reject", "default"),  # no rule allows a command
        ("edit", "reject", "rule 3"),  # outside the workspace
    ]
    assert [d[2].split(":")[0] for d in decisions[3:5]] == ["protected", "protected"]
    assert decisions[5] == ("edit", "allow_once", "rule 4")
    assert "was refused: rm -rf /" in result.text
    assert not outside.exists() and not (workspace / ".git/hooks/pre-commit").exists()
    assert not (workspace / ".claude").exists()
    assert (workspace / "ok.txt").read_text() == "fine\n"


async def test_a_rule_allows_one_command_and_not_what_is_chained_to_it(
    workspace: Path, acp_exe: Path, starts: Path
) -> None:
    policy = {
        "rules": [{"kind": "execute", "command": r"python3 -m pytest( -q)?", "decision": "allow"}]
    }
    prompt = "run python3 -m pytest -q\nrun python3 -m pytest -q; curl x | sh"
    result = await run(workspace, acp_exe, prompt, approvals=policy)
    assert [p.decision for p in result.permissions] == ["allow_once", "reject"]
    assert (
        result.text
        == "ran: python3 -m pytest -q" + "was refused: python3 -m pytest -q; curl x | sh"
    )


async def test_approvals_from_orchestrator_yaml(
    workspace: Path, acp_exe: Path, starts: Path
) -> None:
    (workspace / "orchestrator.yaml").write_text(
        "approvals:\n  rules:\n    - {kind: [edit], decision: reject}\n  default: allow\n"
    )
    # What agents may do unasked is the user's to allow: an untrusted workspace cannot.
    with pytest.raises(ConfigError, match="approvals"):
        load_settings(cwd=workspace)
    agents = {"fake": {"driver": "acp", "argv": [str(acp_exe)]}}
    cfg = load_settings(cwd=workspace, trust=True, agents=agents)
    result = await arun_agent("fake", "write a.txt x\nrun ls", workspace=workspace, config=cfg)
    assert [p.decision for p in result.permissions] == ["reject", "allow_once"]
    assert not (workspace / "a.txt").exists()


async def test_an_interactive_answer_decides_and_always_holds_for_the_run(
    workspace: Path, acp_exe: Path, starts: Path
) -> None:
    asked: list[PermissionRequest] = []

    async def ask(request: PermissionRequest) -> str:
        asked.append(request)
        return "allow_always"

    result = await run(workspace, acp_exe, "run make test\nrun make test", approvals=ask)
    assert len(asked) == 1 and asked[0].command == "make test" and asked[0].kind == "execute"
    assert [(p.decision, p.by) for p in result.permissions] == [
        ("allow_always", "user"),
        ("allow_once", "always"),
    ]
    assert result.text.count("ran: make test") == 2


async def test_a_plain_function_answers_and_a_failing_one_leaves_it_to_the_policy(
    workspace: Path, acp_exe: Path, starts: Path
) -> None:
    def plain(request: PermissionRequest) -> str:
        return "allow_once" if request.kind == "execute" else "reject"

    result = await run(workspace, acp_exe, "run make test\nwrite a.txt x", approvals=plain)
    assert [(p.decision, p.by) for p in result.permissions] == [
        ("allow_once", "user"),
        ("reject", "user"),
    ]
    assert not (workspace / "a.txt").exists()

    def broken(request: PermissionRequest) -> str:
        raise RuntimeError("no display")

    result = await run(workspace, acp_exe, "run make test\nwrite b.txt x", approvals=broken)
    assert result.ok, result.error
    decided = [(p.decision, p.by) for p in result.permissions]
    assert decided == [("reject", "policy"), ("allow_once", "policy")]
    assert all("RuntimeError: no display" in p.reason for p in result.permissions)
    assert (workspace / "b.txt").read_text() == "x\n"


async def test_an_unanswered_question_falls_back_to_the_policy(
    workspace: Path, acp_exe: Path, starts: Path
) -> None:
    async def nobody(request: PermissionRequest) -> str:
        await asyncio.Event().wait()
        return "allow_once"

    (workspace / "orchestrator.yaml").write_text("approvals:\n  timeout: 0.5\n")
    agents = {"fake": {"driver": "acp", "argv": [str(acp_exe)]}}
    cfg = load_settings(cwd=workspace, trust=True, agents=agents)  # the test's own policy
    result = await arun_agent(
        "fake", "run curl x", workspace=workspace, config=cfg, approvals=nobody
    )
    [decision] = result.permissions
    assert (decision.decision, decision.by) == ("reject", "timeout")


async def test_rate_limit_is_retried_then_reported(
    workspace: Path, acp_exe: Path, starts: Path
) -> None:
    result = await run(workspace, acp_exe, "fail-429", {"retries": 1})
    assert result.error_kind == "rate_limit"
    # run_agent is a one-step run of the engine, where an ACP agent stays warm for the run:
    # the engine's retry is a second prompt, through the same agent process.
    assert len(result.attempts) == 2 and len(pids(starts)) == 1


@pytest.mark.parametrize("how", ["crash", "crash-with-child"])
async def test_a_crash_mid_turn_is_crashed_with_its_exit_code(
    workspace: Path, acp_exe: Path, starts: Path, how: str
) -> None:
    # A child holding stdout open must not turn the crash into a wait for the idle timeout.
    result = await run(workspace, acp_exe, how, {"idle_timeout": 60})
    assert result.error_kind == "crashed", result.error
    assert "code 3" in result.error.message
    assert result.exit_code == 3
    assert not group_members(pids(starts)[0])


async def test_a_hang_times_out_and_leaves_no_process(
    workspace: Path, acp_exe: Path, starts: Path
) -> None:
    started = time.monotonic()
    result = await run(workspace, acp_exe, "ignore-cancel", {"idle_timeout": 1.5})
    assert result.error_kind == "timeout", result.error
    assert "idle_timeout" in result.error.message
    assert time.monotonic() - started < 15
    assert not group_members(pids(starts)[0])


async def test_cancel_mid_stream_sends_session_cancel_then_stops_the_group(
    workspace: Path, acp_exe: Path, starts: Path
) -> None:
    cancel = asyncio.Event()

    def on_event(event: Any) -> None:
        if isinstance(event, TextEvent) and "working on it" in event.text:
            cancel.set()

    result = await run(workspace, acp_exe, "hang", cancel=cancel, on_event=on_event)
    assert result.error_kind == "cancelled"
    log = (Path(result.log_path) / "rpc.log").read_text().splitlines()
    methods = [json.loads(line)["message"].get("method") for line in log]
    assert "session/cancel" in methods
    assert not group_members(pids(starts)[0])


@pytest.mark.parametrize("mode", ["not-acp", "silent"])
async def test_a_program_that_does_not_speak_acp_is_a_config_error_naming_the_argv(
    workspace: Path, acp_exe: Path, starts: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv("FAKE_ACP_MODE", mode)
    result = await run(workspace, acp_exe, "hello", {"timeout": 3})
    assert result.error_kind == "config", result.error
    assert str(acp_exe) in result.error.message and "ACP" in result.error.message
    # (On a loaded machine the fake may be stopped before it could note its pid.)
    assert not any(group_members(pid) for pid in pids(starts))


NOT_ACP = {
    "floods stdout": (["yes"], "is not JSON-RPC: 'y\\ny\\ny"),
    "echoes": (["cat"], "ACP"),
    "prints and exits": ([sys.executable, "-c", "print(1)"], "is not JSON-RPC: '1'"),
    "prints a JSON list": ([sys.executable, "-c", "print([1]); input()"], "'[1]'"),
    "cannot start": ([sys.executable, "/nonexistent/agent.py"], "can't open file"),
}


@pytest.mark.parametrize("program", list(NOT_ACP))
def test_a_program_that_is_not_an_acp_agent_fails_at_once_and_quietly(
    workspace: Path, program: str
) -> None:
    argv, says = NOT_ACP[program]
    script = (
        "import json, sys\n"
        "from orchestrator_nb.api import run_agent\n"
        "from orchestrator_nb.config import load_settings\n"
        f"agents = {{'x': {{'driver': 'acp', 'argv': {argv!r}, 'retries': 0, 'timeout': 600}}}}\n"
        "cfg = load_settings(cwd=sys.argv[1], agents=agents)\n"
        "r = run_agent('x', 'hi', workspace=sys.argv[1], config=cfg)\n"
        "print(json.dumps([r.error_kind, r.error.message]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(workspace)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    kind, message = json.loads(done.stdout.splitlines()[-1])
    assert kind == "config" and argv[0] in message and says in message, message
    # The SDK's complaints about the stream go to the run's log, not the user's terminal.
    assert "Traceback" not in done.stderr and "ERROR:root" not in done.stderr, done.stderr[:2000]
    assert len(done.stderr) < 4000


async def test_a_missing_agent_is_not_installed_naming_the_argv(
    workspace: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "acp-agent"
    result = await run(workspace, missing, "hello")
    assert result.error_kind == "not_installed"
    assert "acp-agent" in result.error.message


async def test_an_acp_agent_without_argv_is_a_config_error(workspace: Path) -> None:
    cfg = load_settings(cwd=workspace, agents={"bad": {"driver": "acp"}})
    with pytest.raises(ConfigError, match="argv"):
        await arun_agent("bad", "hi", workspace=workspace, config=cfg)


async def test_a_workflow_keeps_one_warm_session_per_agent_and_ends_it(
    workspace: Path, acp_exe: Path, starts: Path
) -> None:
    cfg = load_settings(
        cwd=workspace,
        agents={"fake": {"driver": "acp", "argv": [str(acp_exe)], "retries": 0}},
        workflows={
            "twice": {
                "steps": [
                    {"id": "first", "agent": "fake", "prompt": "write one.txt 1\nremember"},
                    {"id": "second", "agent": "fake", "prompt": "write two.txt 2\nremember"},
                ]
            }
        },
    )
    result = await arun("two steps", "twice", workspace=workspace, config=cfg)
    assert result.ok, [s.error for s in result.steps]
    assert len(pids(starts)) == 1  # one process for both steps
    first, second = result.steps
    assert first.session_id == second.session_id
    assert "prompt number 2" in second.text  # the live session kept its context
    # The agent reports the session's running cost; each step is charged its own share.
    assert (first.usage.cost_usd, second.usage.cost_usd) == (0.25, 0.25)
    assert not group_members(pids(starts)[0])  # and it ended with the run
    records = AuditTrail(workspace / ".orchestrator" / AUDIT_FILE).records()
    decided = [r["data"] for r in records if r["kind"] == "permission_decided"]
    assert [(d["step_id"], d["decision"], d["by"]) for d in decided] == [
        ("first", "allow_once", "policy"),
        ("second", "allow_once", "policy"),
    ]


async def test_parallel_steps_of_one_agent_leave_no_process(
    workspace: Path, acp_exe: Path, starts: Path
) -> None:
    """Two steps of one agent at once cannot share a session: the second gets a process of
    its own, and that one ends with its step, like the warm one with the run."""
    cfg = load_settings(
        cwd=workspace,
        agents={"fake": {"driver": "acp", "argv": [str(acp_exe)], "retries": 0}},
        workflows={
            "both": {
                "steps": [
                    {
                        "id": "both",
                        "kind": "parallel",
                        "isolation": "shared",
                        "merge": "none",
                        "steps": [
                            {"id": "a", "agent": "fake", "prompt": "remember"},
                            {"id": "b", "agent": "fake", "prompt": "remember"},
                        ],
                    }
                ]
            }
        },
    )
    result = await arun("at once", "both", workspace=workspace, config=cfg)
    assert result.ok, [s.error for s in result.steps]
    started = pids(starts)
    assert len(started) == 2
    assert not any(group_members(pid) for pid in started)


async def test_a_later_agent_is_started_while_the_first_step_runs(
    workspace: Path, acp_exe: Path, starts: Path
) -> None:
    """Both agents start at the run's beginning: the second is up before the first step ends,
    its step prompts the session opened then, and both processes end with the run."""
    agent = {"driver": "acp", "argv": [str(acp_exe)], "retries": 0}
    cfg = load_settings(
        cwd=workspace,
        agents={"one": agent, "two": agent},
        workflows={
            "pair": {
                "steps": [
                    # The first step ends once both processes are up (or after 30 s).
                    {"id": "first", "agent": "one", "prompt": "await-starts 2"},
                    {"id": "second", "agent": "two", "prompt": "remember"},
                ]
            }
        },
    )
    result = await arun("two agents", "pair", workspace=workspace, config=cfg)
    assert result.ok, [s.error for s in result.steps]
    started = pids(starts)
    first, second = result.steps
    assert "saw 2 starts" in first.text and len(started) == 2
    assert "prompt number 1" in second.text and second.session_id != first.session_id
    assert not any(group_members(pid) for pid in started)


async def test_agents_start_no_more_at_once_than_there_are_cores(
    workspace: Path, acp_exe: Path, starts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start-ups are CPU-bound: on one core the run's agents start one after another, in the
    order the workflow needs them, each once the one before has opened its session."""
    from orchestrator_nb.agents.acp import prestart

    events = workspace.parent / "events"
    monkeypatch.setenv("FAKE_ACP_EVENTS", str(events))
    monkeypatch.setattr(prestart, "_cores", lambda: 1)
    agents = {n: {"driver": "acp", "argv": [str(acp_exe), n], "retries": 0} for n in "abc"}
    cfg = load_settings(
        cwd=workspace,
        agents=agents,
        workflows={
            "three": {
                "steps": [
                    {"id": "first", "agent": "a", "prompt": "await-starts 3"},
                    {"id": "second", "agent": "b", "prompt": "remember"},
                    {"id": "third", "agent": "c", "prompt": "remember"},
                ]
            }
        },
    )
    result = await arun("three agents", "three", workspace=workspace, config=cfg)
    assert result.ok, [s.error for s in result.steps]
    assert "saw 3 starts" in result.steps[0].text  # all three were started during the first
    assert events.read_text().split("\n")[:6] == [
        "start a",
        "session a",
        "start b",
        "session b",
        "start c",
        "session c",
    ]
    assert len(pids(starts)) == 3 and not any(group_members(pid) for pid in pids(starts))


async def test_an_agent_that_cannot_start_early_fails_in_its_step(
    workspace: Path, acp_exe: Path, starts: Path
) -> None:
    cfg = load_settings(
        cwd=workspace,
        agents={
            "one": {"driver": "acp", "argv": [str(acp_exe)], "retries": 0},
            "gone": {"driver": "acp", "argv": [str(workspace / "no-such-agent")], "retries": 0},
        },
        workflows={
            "pair": {
                "steps": [
                    {"id": "first", "agent": "one", "prompt": "remember"},
                    {"id": "second", "agent": "gone", "prompt": "remember"},
                ]
            }
        },
    )
    result = await arun("two agents", "pair", workspace=workspace, config=cfg)
    first, second = result.steps
    assert first.ok and second.error is not None and second.error.kind == "not_installed"
    assert not any(group_members(pid) for pid in pids(starts))


HOLDER = """
import asyncio, sys
from pathlib import Path
from orchestrator_nb.agents.acp.client import AcpProcess

async def main() -> None:
    proc = AcpProcess([sys.argv[1]], cwd=Path(sys.argv[2]), env=dict(__import__("os").environ))
    await proc.start()
    print(proc.proc.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_a_warm_acp_agent_dies_with_a_killed_kernel(
    acp_exe: Path, workspace: Path, starts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A warm agent outlives its steps and cells by design; never the process that owns it,
    # even when that process is SIGKILLed and cannot close anything (adapters such as
    # codex-acp ignore the EOF on their stdin).
    import signal
    import subprocess
    import time

    monkeypatch.setenv("FAKE_ACP_OUTLIVE_EOF", "1")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(acp_exe), str(workspace)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    with holder.stdout:
        pid = int(holder.stdout.readline())
    assert Path(f"/proc/{pid}").exists()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)  # leave nothing behind, even when the test fails
        raise AssertionError(f"the ACP agent {pid} outlived its killed owner")


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def test_what_an_adapter_leaves_behind_is_stopped_with_the_run(
    workspace: Path, acp_exe: Path, starts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # claude-agent-acp exits on the end of its stdin right after sending SIGTERM to Claude
    # Code, which then sometimes waits on its dead pipe: a child that ignores SIGTERM, whose
    # parent has gone. The run still ends with nothing left, the child asked to stop first.
    left = tmp_path / "left.txt"
    monkeypatch.setenv("FAKE_ACP_LEAVE_CHILD", str(left))
    result = await run(workspace, acp_exe, "remember")
    assert result.ok, result.error
    child, *signals = left.read_text().split()
    assert "TERM" in signals
    assert _gone(int(child)), f"the adapter's child {child} outlived the run"


async def test_a_step_that_changes_what_runs_fails_the_next_step_not_the_run(
    workspace: Path, acp_exe: Path, starts: Path
) -> None:
    agent = {"driver": "acp", "argv": [str(acp_exe)], "provider": "claude", "retries": 0}
    steps = [
        {"id": "settings", "agent": "fake", "prompt": "write .claude/settings.json {}"},
        {"id": "next", "agent": "fake", "prompt": "write next.txt x"},
    ]
    (workspace / ".claude").mkdir()
    cfg = load_settings(
        cwd=workspace, trust=True, agents={"fake": agent}, workflows={"two": {"steps": steps}}
    )

    async def person(request: PermissionRequest) -> str:
        return "allow_once"  # a person may allow what no policy would

    result = await arun("t", "two", workspace=workspace, config=cfg, approvals=person)
    first, second = result.steps
    assert first.ok and [c.path for c in first.changes] == [".claude/settings.json"]
    # claude would load the new settings: the folder is no longer the one the user trusted.
    assert second.error_kind == "config" and ".claude/settings.json" in second.error.message
    assert not (workspace / "next.txt").exists()
    assert not result.ok and result.run_id
    assert not any(group_members(pid) for pid in pids(starts))


async def test_every_decision_outlives_the_event_cap_and_the_journal(
    workspace: Path, acp_exe: Path, starts: Path
) -> None:
    agents = {"fake": {"driver": "acp", "argv": [str(acp_exe)], "retries": 0}}
    cfg = load_settings(cwd=workspace, agents=agents, max_events=1)
    prompt = "write a.txt 1\nwrite b.txt 2\nrun rm -rf /"
    result = await arun_agent("fake", prompt, workspace=workspace, config=cfg)
    assert result.events_dropped > 0
    decided = [(p.kind, p.decision) for p in result.permissions]
    assert decided == [("edit", "allow_once"), ("edit", "allow_once"), ("execute", "reject")]
    again = type(result).from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.permissions == result.permissions


def test_the_console_script_runs_one_agent_and_its_json_has_the_decisions(
    workspace: Path, acp_exe: Path, tmp_path: Path
) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text(f"agents:\n  fake:\n    driver: acp\n    argv: [{str(acp_exe)!r}]\n")
    cli = Path(sys.executable).with_name("orchestrator-nb")
    done = subprocess.run(
        [str(cli), "exec", "-a", "fake", "--config", str(config), "--workspace", str(workspace),
         "--json", "write a.txt 1\nrun curl x"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    [step] = json.loads(done.stdout)["steps"]
    assert [(p["kind"], p["decision"], p["by"]) for p in step["permissions"]] == [
        ("edit", "allow_once", "policy"),
        ("execute", "reject", "policy"),
    ]
    assert (workspace / "a.txt").read_text() == "1\n"


async def test_permission_mode_sets_the_session_mode_and_an_unknown_one_is_a_config_error(
    workspace: Path, acp_exe: Path, starts: Path
) -> None:
    result = await run(workspace, acp_exe, "write a.txt 1", {"permission_mode": "yolo"})
    assert result.ok and result.permissions == []  # that mode writes unasked
    log = [
        json.loads(line) for line in (Path(result.log_path) / "rpc.log").read_text().splitlines()
    ]
    sent = [m["message"] for m in log if m["direction"] == "out" and "message" in m]
    assert {"sessionId": result.session_id, "modeId": "yolo"} in [
        m.get("params") for m in sent if m.get("method") == "session/set_mode"
    ]
    result = await run(workspace, acp_exe, "write b.txt 1", {"permission_mode": "auto"})
    assert result.error_kind == "config"
    assert "permission_mode" in result.error.message and "ask, yolo" in result.error.message
    assert not (workspace / "b.txt").exists()
    assert not any(group_members(pid) for pid in pids(starts))
