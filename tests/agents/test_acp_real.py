"""The four shipped ACP agents, real binaries from .agents/, under rehearsal.

claude-acp and codex-acp are the npm adapters (which run Claude Code / Codex underneath);
gemini-acp and copilot-acp are the CLIs' own ``--acp`` mode. Each writes a file, resumes its
session, hits a 429, hangs into a timeout and is cancelled mid-turn; afterwards no process
started for the rehearsal is left (checked in the process table by the rehearsal's HOME).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from orchestrator_nb.api import arun_agent
from orchestrator_nb.config import load_settings
from orchestrator_nb.rehearsal import Rehearsal, rehearsal
from orchestrator_nb.workflow.api import arun

pytestmark = pytest.mark.real_cli

BIN = Path(__file__).resolve().parents[2] / ".agents" / "node_modules" / ".bin"
AGENTS = {
    "claude-acp": "claude-agent-acp",
    "codex-acp": "codex-acp",
    "gemini-acp": "gemini",
    "copilot-acp": "copilot",
}


def need(agent: str) -> None:
    reason = None
    if shutil.which("node") is None:
        reason = "node is not installed: the ACP agents need Node.js 20+"
    elif not (BIN / AGENTS[agent]).exists():
        reason = f"{AGENTS[agent]} is not installed in {BIN}: run `make agents`"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)


def processes_of(r: Rehearsal) -> list[int]:
    """Live processes whose environment holds this rehearsal's HOME (its agents, any depth)."""
    marker = f"HOME={r.home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in environ.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


def steps_workflow(workspace: Path, name: str, *steps: tuple[str, str, str]) -> Any:
    """Settings with one workflow of agent steps, each (id, agent, prompt)."""
    rows = [{"id": i, "agent": a, "prompt": p} for i, a, p in steps]
    return load_settings(cwd=workspace, workflows={name: {"steps": rows}})


@pytest.fixture(params=list(AGENTS))
def agent(request: pytest.FixtureRequest) -> str:
    need(request.param)
    return str(request.param)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path


async def test_writes_a_file_and_resumes(agent: str, workspace: Path) -> None:
    with rehearsal("write-file") as r:
        first = await arun_agent(agent, "Create hello.txt", workspace=workspace, rehearsal=r)
        assert first.ok, (first.error, first.stderr_tail[-2000:])
        assert (workspace / "hello.txt").read_text() == "hi\n"
        assert "hello.txt" in [c.path for c in first.changes]
        assert first.session_id
        if agent != "codex-acp":  # codex writes in its sandbox unasked (workspace-write mode)
            # Each of the others asked, in its shipped session mode, and the policy allowed it.
            decided = [(p.kind, p.decision, p.by) for p in first.permissions]
            assert decided[:1] == [("edit", "allow_once", "policy")], decided
        again = await arun_agent(
            agent, "Say it again", workspace=workspace, rehearsal=r, resume=first.session_id
        )
        assert again.ok, again.error
        assert "Done again" in again.text
        assert processes_of(r) == []


async def test_a_429_is_a_rate_limit(agent: str, workspace: Path) -> None:
    with rehearsal("rate-limit") as r:
        result = await arun_agent(
            agent, "Create hello.txt", workspace=workspace, rehearsal=r, retries=0, timeout=120
        )
        assert result.error_kind == "rate_limit", (result.error, result.text)
        assert r.requests_for(kind="turn") or r.requests
        assert processes_of(r) == []


async def test_a_hang_times_out_and_leaves_no_process(agent: str, workspace: Path) -> None:
    with rehearsal("hang") as r:
        result = await arun_agent(
            agent,
            "Create hello.txt",
            workspace=workspace,
            rehearsal=r,
            retries=0,
            timeout=120,
            idle_timeout=6,
        )
        assert result.error_kind == "timeout", (result.error, result.text)
        assert processes_of(r) == []


async def test_cancel_mid_turn_leaves_no_process(agent: str, workspace: Path) -> None:
    with rehearsal("hang") as r:
        cancel = asyncio.Event()

        async def cancel_once_the_model_is_asked() -> None:
            while not r.requests_for(kind="turn"):
                await asyncio.sleep(0.1)
            cancel.set()

        watcher = asyncio.ensure_future(cancel_once_the_model_is_asked())
        try:
            result = await arun_agent(
                agent,
                "Create hello.txt",
                workspace=workspace,
                rehearsal=r,
                retries=0,
                timeout=120,
                cancel=cancel,
            )
        finally:
            watcher.cancel()
        assert result.error_kind == "cancelled", (result.error, result.text)
        assert processes_of(r) == []


@pytest.mark.parametrize("name", ["gemini-acp", "copilot-acp"])
async def test_a_rejecting_policy_keeps_a_real_agent_from_writing(
    name: str, workspace: Path
) -> None:
    need(name)
    with rehearsal("write-file") as r:
        result = await arun_agent(
            name,
            "Create hello.txt",
            workspace=workspace,
            rehearsal=r,
            approvals={"rules": [], "default": "reject"},
        )
        assert [(p.kind, p.decision, p.by) for p in result.permissions][:1] == [
            ("edit", "reject", "policy")
        ]
        assert not (workspace / "hello.txt").exists()
        assert processes_of(r) == []


async def test_a_workflow_reuses_one_warm_process_per_agent(workspace: Path) -> None:
    need("gemini-acp")
    need("codex-acp")
    cfg = steps_workflow(
        workspace,
        "warm",
        ("write", "gemini-acp", "Create hello.txt"),
        ("check", "codex-acp", "Say it again"),
        ("again", "gemini-acp", "Say it again"),
        ("more", "codex-acp", "Say it again"),
    )
    with rehearsal("write-file") as r:
        result = await arun("warm run", "warm", workspace=workspace, config=cfg, rehearsal=r)
        assert result.ok, [s.error for s in result.steps]
        write, check, again, more = result.steps
        assert write.session_id == again.session_id and check.session_id == more.session_id
        assert "Done again" in again.text and "Done again" in more.text
        # A warm process keeps the environment of the step that started it: every request of
        # each agent reached the server under its first step, i.e. one process per agent.
        turns = r.requests_for(kind="turn")
        assert {q.step for q in turns if q.agent == "gemini"} == {"write"}
        assert {q.step for q in turns if q.agent == "codex"} == {"check"}
        assert processes_of(r) == []  # the run ended them


def _command_lines(r: Rehearsal) -> dict[int, tuple[list[str], dict[str, str]]]:
    """pid -> (argv, environment) of this rehearsal's live processes."""
    found: dict[int, tuple[list[str], dict[str, str]]] = {}
    for pid in processes_of(r):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        env = dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)
        found[pid] = ([a.decode(errors="replace") for a in argv if a], env)
    return found


async def test_an_acp_agent_runs_with_its_own_clis_environment(workspace: Path) -> None:
    """gemini --acp runs in the process started for it (no launcher starting it again), and the
    claude adapter runs Claude Code as the claude driver does: no update check, and no paid
    predicted-next-prompt request after each turn, which nothing here would show."""
    need("gemini-acp")
    need("claude-acp")
    cfg = steps_workflow(
        workspace,
        "two",
        ("write", "gemini-acp", "Create hello.txt"),
        ("check", "claude-acp", "Say it again"),
        ("again", "gemini-acp", "Say it again"),
    )
    seen: dict[int, tuple[list[str], dict[str, str]]] = {}
    with rehearsal("write-file") as r:
        run = asyncio.ensure_future(
            arun("two agents", "two", workspace=workspace, config=cfg, rehearsal=r)
        )
        while not run.done():  # the processes as they live, until the run ends them
            seen.update(_command_lines(r))
            await asyncio.sleep(0.02)
        result = run.result()
        assert result.ok, [s.error for s in result.steps]
        prompts = [q.prompt for q in r.requests]
    gemini = [env for argv, env in seen.values() if any(a.endswith("/gemini") for a in argv)]
    assert gemini, "gemini was not seen running"
    # The launcher would start the CLI again in a child (to raise its heap limit), passing
    # this variable only to that child: where every gemini process has it, none relaunched.
    # (Counting processes would also count a fork on its way to exec'ing a tool.)
    assert all(env.get("GEMINI_CLI_NO_RELAUNCH") == "true" for env in gemini)
    claude = [env for argv, env in seen.values() if any("claude" in a for a in argv[:2])]
    assert claude, "the claude adapter was not seen running"
    for env in claude:
        assert env.get("DISABLE_AUTOUPDATER") == "1"
        assert env.get("CLAUDE_CODE_ENABLE_PROMPT_SUGGESTION") == "false"
    assert not any("SUGGESTION MODE" in p for p in prompts)
