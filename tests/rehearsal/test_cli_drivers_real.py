"""The four real CLIs under rehearsal, through the project's own drivers.

Each case goes through ``arun_agent`` (the driver builds the argv, the parser decides the
verdict) and, for the failure modes, through a one-step workflow run by ``arun``: a 429 storm
ends ``rate_limit`` with its attempts recorded in bounded time; a hang ends ``timeout``; a
cancel mid-stream ends ``cancelled``; and none of them leaves a process behind (copilot runs
a native child, and an agent's tools run children of their own, so the check is the process
table: no process working in the workspace or living in the rehearsal's HOME). A native resume
carries the earlier turn to the model: the rehearsal server's recorded request shows it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from orchestrator_nb.agents.registry import agents_bin_dirs
from orchestrator_nb.api import arun_agent
from orchestrator_nb.rehearsal import Rehearsal, rehearsal
from orchestrator_nb.workflow.api import arun

pytestmark = [pytest.mark.real_cli, pytest.mark.slow]

AGENTS = ("claude", "codex", "gemini", "copilot")
# One rate-limited attempt: start-up (gemini ~3-5 s on 2 cores) plus the CLI's one bounded retry;
# generous, because a loaded machine is slow, yet far below the CLIs' own default back-offs.
RATE_LIMIT_BUDGET_S = 60.0


def need(agent: str) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the agent CLIs need Node.js")
    if not any((d / agent).exists() for d in agents_bin_dirs()):
        pytest.skip(f"{agent} is not installed: run `make agents` (needs npm)")


def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "README.md").write_text("# scratch\n")
    return ws


def left_behind(ws: Path, r: Rehearsal) -> list[str]:
    """Live processes working in ``ws`` or running with the rehearsal's HOME."""
    home = f"HOME={r.home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat[stat.rfind(")") + 2 :].startswith("Z"):
                continue
            cwd = os.readlink(entry / "cwd")
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd == str(ws) or cwd.startswith(f"{ws}/") or home in environ:
            found.append(f"{entry.name}: {cmd[:120]}")
    return found


async def no_process_left(ws: Path, r: Rehearsal) -> None:
    # A killed group's members are gone at once; give the kernel a moment to reap them.
    deadline = time.monotonic() + 10
    while left_behind(ws, r) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not left_behind(ws, r)


def one_step(tmp_path: Path, agent: str, **options: object) -> Path:
    config = {
        "agents": {agent: options},
        "workflows": {"one": {"steps": [{"id": "only", "agent": agent, "prompt": "{{ task }}"}]}},
    }
    path = tmp_path / "one-step.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def until_hanging(r: Rehearsal, agent: str, task: asyncio.Task[object]) -> None:
    """Until the CLI's request is held by the server (the CLI is mid-stream, waiting)."""
    deadline = time.monotonic() + 90
    while not any(q.fault == "hang" for q in r.requests_for(agent=agent)):
        assert not task.done(), f"{agent} finished before reaching the model: {task.result()}"
        assert time.monotonic() < deadline, f"{agent} never reached the model"
        await asyncio.sleep(0.1)


# -- through run_agent ---------------------------------------------------------------------


@pytest.mark.parametrize("agent", AGENTS)
async def test_a_429_storm_ends_rate_limit_with_its_attempts(agent: str, tmp_path: Path) -> None:
    need(agent)
    ws = workspace(tmp_path)
    with rehearsal("rate-limit") as r:
        started = time.monotonic()
        result = await arun_agent(
            agent, "Create hello.txt containing hi", workspace=ws, rehearsal=r,
            retries=1, retry_wait=0, timeout=120,
        )  # fmt: skip
        seconds = time.monotonic() - started
        refused = [q for q in r.requests_for(agent=agent, kind="turn") if q.status == 429]
        await no_process_left(ws, r)
    assert result.error_kind == "rate_limit", (result.error, result.stderr_tail[-2000:])
    assert [a.error_kind for a in result.attempts] == ["rate_limit", "rate_limit"]
    assert seconds < 2 * RATE_LIMIT_BUDGET_S
    assert len(refused) >= 2  # each attempt reached the model
    assert not (ws / "hello.txt").exists()


@pytest.mark.parametrize("agent", AGENTS)
async def test_a_hang_ends_timeout_and_leaves_no_process(agent: str, tmp_path: Path) -> None:
    need(agent)
    ws = workspace(tmp_path)
    with rehearsal("hang") as r:
        result = await arun_agent(
            agent, "Create hello.txt containing hi", workspace=ws, rehearsal=r,
            timeout=25, retries=0,
        )  # fmt: skip
        assert any(q.fault == "hang" for q in r.requests_for(agent=agent)), result.stderr_tail
        await no_process_left(ws, r)
    assert result.error_kind == "timeout", (result.error, result.stderr_tail[-2000:])
    assert len(result.attempts) == 1 and not result.ok


@pytest.mark.parametrize("agent", AGENTS)
async def test_a_cancel_mid_stream_leaves_no_process(agent: str, tmp_path: Path) -> None:
    need(agent)
    ws = workspace(tmp_path)
    cancel = asyncio.Event()
    with rehearsal("hang") as r:
        task = asyncio.ensure_future(
            arun_agent(
                agent, "Create hello.txt containing hi", workspace=ws, rehearsal=r,
                cancel=cancel, timeout=300,
            )
        )  # fmt: skip
        await until_hanging(r, agent, task)
        cancel.set()
        result = await asyncio.wait_for(task, 60)
        await no_process_left(ws, r)
    assert result.error_kind == "cancelled", (result.error, result.stderr_tail[-2000:])
    assert len(result.attempts) == 1  # a cancel is never retried


@pytest.mark.parametrize("agent", AGENTS)
async def test_a_native_resume_carries_the_earlier_turn(agent: str, tmp_path: Path) -> None:
    need(agent)
    ws = workspace(tmp_path)
    with rehearsal("write-file") as r:
        first = await arun_agent(
            agent, "Create hello.txt containing hi", workspace=ws, rehearsal=r, step="write"
        )
        assert first.ok, (first.error, first.stderr_tail[-2000:])
        assert (ws / "hello.txt").read_text() == "hi\n"
        assert [(c.path, c.kind) for c in first.changes] == [("hello.txt", "added")]
        assert first.session_id and "Done. I created hello.txt" in first.text
        if agent in ("claude", "codex"):  # 2 responses of 1200 in (200 cached), 34 out
            usage = first.usage
            assert (usage.input_tokens, usage.cached_tokens, usage.output_tokens) == (2400, 400, 68)
        resumed = await arun_agent(
            agent, "Now say done again", workspace=ws, rehearsal=r, step="resume",
            resume=first.session_id, previous_usage=first.usage,
        )  # fmt: skip
        assert resumed.ok, (resumed.error, resumed.stderr_tail[-2000:])
        assert "Done again" in resumed.text
        again = r.requests_for(agent=agent, step="resume", kind="turn")
        assert again and again[-1].prompt == "Now say done again"
        assert any("Done. I created hello.txt" in line for line in again[-1].messages)
        assert not [q for q in r.requests if q.kind == "unknown"]
        await no_process_left(ws, r)


# -- through a one-step workflow -----------------------------------------------------------


@pytest.mark.parametrize("agent", AGENTS)
async def test_a_workflow_step_under_a_429_storm_ends_rate_limit(
    agent: str, tmp_path: Path
) -> None:
    need(agent)
    ws = workspace(tmp_path)
    config = one_step(tmp_path, agent, retries=1, retry_wait=0, timeout=120)
    with rehearsal("rate-limit") as r:
        started = time.monotonic()
        result = await arun("Create hello.txt containing hi", "one", workspace=ws,
                            config=config, rehearsal=r)  # fmt: skip
        seconds = time.monotonic() - started
        await no_process_left(ws, r)
    step = result.steps[-1]
    assert not result.ok and step.error_kind == "rate_limit", (step.error, step.stderr_tail)
    assert [a.error_kind for a in step.attempts] == ["rate_limit", "rate_limit"]
    assert seconds < 2 * RATE_LIMIT_BUDGET_S


@pytest.mark.parametrize("agent", AGENTS)
async def test_a_workflow_step_that_hangs_times_out(agent: str, tmp_path: Path) -> None:
    need(agent)
    ws = workspace(tmp_path)
    config = one_step(tmp_path, agent, timeout=25, retries=0)
    with rehearsal("hang") as r:
        result = await arun("Create hello.txt containing hi", "one", workspace=ws,
                            config=config, rehearsal=r)  # fmt: skip
        await no_process_left(ws, r)
    step = result.steps[-1]
    assert not result.ok and step.error_kind == "timeout", (step.error, step.stderr_tail)


@pytest.mark.parametrize("agent", AGENTS)
async def test_a_cancelled_workflow_leaves_no_process(agent: str, tmp_path: Path) -> None:
    need(agent)
    ws = workspace(tmp_path)
    config = one_step(tmp_path, agent, timeout=300)
    cancel = asyncio.Event()
    with rehearsal("hang") as r:
        task = asyncio.ensure_future(
            arun("Create hello.txt containing hi", "one", workspace=ws, config=config,
                 rehearsal=r, cancel=cancel)
        )  # fmt: skip
        await until_hanging(r, agent, task)
        cancel.set()
        result = await asyncio.wait_for(task, 60)
        await no_process_left(ws, r)
    assert not result.ok
    assert result.outcome == "cancelled", result


async def test_a_node_cli_keeps_its_compiled_code_between_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gemini compiles its bundle on every start; Node's compile cache in the user's cache
    folder keeps that work for the next start (see agents/_npm.py)."""
    need("gemini")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("NODE_COMPILE_CACHE", raising=False)
    ws = workspace(tmp_path)
    with rehearsal("write-file") as r:
        result = await arun_agent("gemini", "Create hello.txt", workspace=ws, rehearsal=r)
    assert result.ok, result.error
    cache = tmp_path / "cache" / "orchestrator-nb" / "node-compile-cache"
    assert [p for p in cache.rglob("*") if p.is_file()], f"nothing compiled was kept in {cache}"
