"""The subprocess runner, exercised with fake agent executables (no mocks)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator_nb.fsio import StatePathError
from orchestrator_nb.process import Grace, base_env, group_members, run_process

FAST = Grace(after_sigint=0.5, after_sigterm=0.5)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def _run(exe: Path, tmp_path: Path, **kw: object) -> tuple[list[str], object]:
    lines: list[str] = []
    result = await run_process(
        [str(exe)],
        cwd=tmp_path,
        env=base_env(),
        on_line=lines.append,
        **kw,  # type: ignore[arg-type]
    )
    return lines, result


async def test_replays_lines_and_exit_code(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    script = tmp_path / "t.jsonl"
    script.write_text('{"a":1}\n\n{"b":2}\n')
    fake_env(mode="replay", script=script, exit=3)
    lines, result = await _run(fake_exe("x"), tmp_path, log_dir=tmp_path / "logs")
    assert lines == ['{"a":1}', "", '{"b":2}']
    assert result.exit_code == 3  # type: ignore[attr-defined]
    assert (tmp_path / "logs" / "stdout.log").read_bytes() == script.read_bytes()


async def test_raw_log_never_writes_through_a_planted_link(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    victim = tmp_path / "outside.txt"
    victim.write_text("keep me\n")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "stdout.log").symlink_to(victim)
    script = tmp_path / "t.jsonl"
    script.write_text('{"a":1}\n')
    fake_env(mode="replay", script=script)
    with pytest.raises(StatePathError, match="symlink"):
        await _run(fake_exe("x"), tmp_path, log_dir=logs)
    assert victim.read_text() == "keep me\n"


async def test_garbage_and_invalid_utf8_never_crash(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    fake_env(mode="garbage")
    lines, result = await _run(fake_exe("x"), tmp_path)
    assert result.exit_code == 0  # type: ignore[attr-defined]
    assert "\ufffd" in lines[0]
    assert any(len(line) == 200_000 for line in lines)


async def test_overlong_line_is_capped_not_buffered_whole(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    fake_env(mode="garbage")
    lines, result = await _run(fake_exe("x"), tmp_path, max_line_bytes=1000)
    assert max(len(line) for line in lines) <= 1000
    assert result.truncated_lines == 1  # type: ignore[attr-defined]


async def test_fifty_megabytes_with_bounded_memory(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    fake_env(mode="flood", mb=50)
    count = 0

    def on_line(_line: str) -> None:
        nonlocal count
        count += 1  # keep nothing: what the runner holds is what we measure

    result = await run_process(
        [str(fake_exe("x"))],
        cwd=tmp_path,
        env=base_env(),
        on_line=on_line,
        log_dir=tmp_path / "logs",
        stderr_tail_bytes=4096,
    )
    assert result.exit_code == 0
    assert result.stdout_bytes >= 50 * 1024 * 1024
    assert count == result.lines > 50_000
    assert len(result.stderr_tail) == 4096  # only the tail of 2 MB of stderr is kept
    assert (tmp_path / "logs" / "stderr.log").stat().st_size == 2_000_000


async def test_prompt_on_stdin_is_written_and_closed(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    fake_env(mode="echo-stdin")
    prompt = 'any $(characters) `at` all; "quoted" \n and a newline ✓'
    lines, _ = await _run(fake_exe("x"), tmp_path, stdin_data=prompt.encode())
    assert json.loads(lines[0]) == {"stdin": prompt}


async def test_stdin_is_devnull_without_prompt(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    fake_env(mode="echo-stdin")
    started = time.monotonic()
    lines, _ = await _run(fake_exe("x"), tmp_path, total_timeout=10)
    assert lines == ['{"stdin": ""}']  # EOF at once, not a hang on an open pipe
    assert time.monotonic() - started < 5


async def test_idle_timeout_is_reported_and_kills_group(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    fake_env(mode="hang")
    lines, result = await _run(fake_exe("x"), tmp_path, idle_timeout=0.5, grace=FAST)
    assert result.timed_out == "idle"  # type: ignore[attr-defined]
    assert result.exit_code is None  # type: ignore[attr-defined]
    assert lines == []


async def test_total_timeout_despite_steady_output(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    fake_env(mode="slow-lines")
    lines, result = await _run(
        fake_exe("x"), tmp_path, idle_timeout=5, total_timeout=1.0, grace=FAST
    )
    assert result.timed_out == "total"  # type: ignore[attr-defined]
    assert 3 <= len(lines) <= 20


async def test_cancel_kills_grandchild_that_ignores_sigint(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    fake_env(mode="grandchild", pidfile=pidfile)
    cancel = asyncio.Event()
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)

    task = asyncio.ensure_future(
        run_process(
            [str(fake_exe("x"))],
            cwd=tmp_path,
            env=base_env(),
            on_line=on_line,
            cancel=cancel,
            grace=FAST,
        )
    )
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text() and seen):
        assert time.monotonic() < deadline, "not ready within 60 s"
        await asyncio.sleep(0.05)
    grandchild = int(pidfile.read_text())
    assert _alive(grandchild)
    pgid = os.getpgid(grandchild)
    cancel.set()
    result = await task
    assert result.cancelled
    assert not _alive(grandchild)
    assert group_members(pgid) == []


async def test_task_cancellation_cleans_up_then_propagates(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    fake_env(mode="grandchild", pidfile=pidfile)
    task = asyncio.ensure_future(
        run_process(
            [str(fake_exe("x"))],
            cwd=tmp_path,
            env=base_env(),
            on_line=lambda _l: None,
            grace=FAST,
        )
    )
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text()):
        assert time.monotonic() < deadline, "not ready within 60 s"
        await asyncio.sleep(0.05)
    grandchild = int(pidfile.read_text())
    pgid = os.getpgid(grandchild)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert group_members(pgid) == []


async def test_crash_leaves_no_process(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    script = tmp_path / "t.jsonl"
    script.write_text("".join(f'{{"n":{i}}}\n' for i in range(10)))
    fake_env(mode="crash", script=script)
    lines, result = await _run(fake_exe("x"), tmp_path)
    assert result.exit_code is None  # type: ignore[attr-defined]
    assert result.returncode < 0  # type: ignore[attr-defined]
    assert lines == [f'{{"n":{i}}}' for i in range(5)]


async def test_missing_executable_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await run_process(
            [str(tmp_path / "nope")], cwd=tmp_path, env=base_env(), on_line=lambda _l: None
        )


def test_base_env_turns_colour_off_and_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("SECRET_TOKEN", "x")
    env = base_env({"A": "b"}, drop=frozenset({"SECRET_TOKEN"}))
    assert env["NO_COLOR"] == "1" and env["A"] == "b"
    assert "FORCE_COLOR" not in env and "SECRET_TOKEN" not in env


# -- stop means stop: a descendant that escaped the group and holds stdout --------------------


async def _pid_from(pidfile: Path, task: asyncio.Future[object]) -> int:
    for _ in range(400):
        if pidfile.exists() and pidfile.read_text():
            return int(pidfile.read_text())
        assert not task.done(), "the fake agent ended before its child started"
        await asyncio.sleep(0.05)
    raise AssertionError("the escaped child never wrote its pid")


def _gone_soon(pid: int) -> bool:
    """The escaped child is re-parented to init, which reaps it; give it a moment to vanish."""
    deadline = time.monotonic() + 2.0
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


async def test_timeout_returns_fast_with_an_escaped_child_holding_stdout(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    pidfile = tmp_path / "escaped.pid"
    fake_env(mode="escape", pidfile=pidfile)
    last_line = [0.0]

    def on_line(_line: str) -> None:
        last_line[0] = time.monotonic()  # the idle timeout counts from here

    task = asyncio.ensure_future(
        run_process(
            [str(fake_exe("x"))],
            cwd=tmp_path,
            env=base_env(),
            on_line=on_line,
            idle_timeout=2.0,
            grace=FAST,
        )
    )
    escaped = await _pid_from(pidfile, task)
    assert os.getsid(escaped) != os.getsid(0)  # it really left the agent's session
    result = await task
    returned = time.monotonic()
    assert result.timed_out == "idle"
    # Idle for 2 s, then FAST's 0.5 + 0.5 s of escalation, then back well within 3 s: not when
    # the escaped child would close the pipe (never).
    assert last_line[0] > 0 and returned - last_line[0] < 2.0 + 1.0 + 3.0
    assert result.survivors == []
    assert _gone_soon(escaped)


async def test_cancel_returns_fast_with_an_escaped_child_holding_stdout(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    pidfile = tmp_path / "escaped.pid"
    fake_env(mode="escape", pidfile=pidfile)
    cancel = asyncio.Event()
    task = asyncio.ensure_future(_run(fake_exe("x"), tmp_path, cancel=cancel, grace=FAST))
    escaped = await _pid_from(pidfile, task)
    cancel.set()
    asked = time.monotonic()
    _lines, result = await task
    assert time.monotonic() - asked < 3.0
    assert result.cancelled  # type: ignore[attr-defined]
    assert _gone_soon(escaped)


async def test_task_stop_returns_fast_with_an_escaped_child_holding_stdout(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    # What the dashboard's Stop and Ctrl-C do when the awaiting task itself is cancelled.
    pidfile = tmp_path / "escaped.pid"
    fake_env(mode="escape", pidfile=pidfile)
    task = asyncio.ensure_future(_run(fake_exe("x"), tmp_path, grace=FAST))
    escaped = await _pid_from(pidfile, task)
    task.cancel()
    asked = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - asked < 3.0
    assert _gone_soon(escaped)


def test_stop_from_another_thread_returns_fast(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    # The dashboard's Stop button: Run.cancel() from the UI thread sets the run's cancel event.
    from orchestrator_nb.notebook.background import launch

    pidfile = tmp_path / "escaped.pid"
    fake_env(mode="escape", pidfile=pidfile)
    exe = fake_exe("x")

    async def body(cancel: asyncio.Event) -> object:
        return await run_process(
            [str(exe)], cwd=tmp_path, env=base_env(), on_line=lambda _l: None, cancel=cancel,
            grace=FAST,
        )  # fmt: skip

    run = launch(body, "escape")  # type: ignore[arg-type]
    deadline = time.monotonic() + 20
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    escaped = int(pidfile.read_text())
    assert run.cancel()
    asked = time.monotonic()
    result = run.result(timeout=10)
    assert time.monotonic() - asked < 3.0
    assert result.cancelled  # type: ignore[attr-defined]
    assert _gone_soon(escaped)


async def test_exit_zero_with_a_background_child_holding_stdout_is_ok(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    pidfile = tmp_path / "escaped.pid"
    fake_env(mode="exit-leaving-child", pidfile=pidfile)
    lines: list[str] = []
    seen_at = [0.0]

    def on_line(line: str) -> None:
        lines.append(line)
        seen_at[0] = time.monotonic()

    result = await run_process(
        [str(fake_exe("x"))], cwd=tmp_path, env=base_env(), on_line=on_line,
        idle_timeout=30, drain_after_exit=0.5,
    )  # fmt: skip
    assert result.exit_code == 0 and result.timed_out is None
    assert lines == ['{"type":"started"}']
    # Judged after a short drain (0.5 s) and a stop of the child (about 1 s), not the 30 s idle.
    assert time.monotonic() - seen_at[0] < 10
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert _gone_soon(int(pidfile.read_text()))


async def test_agent_dies_with_the_thread_that_started_it(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    # PR_SET_PDEATHSIG: a helper process starts the agent and is killed with SIGKILL.
    import signal
    import subprocess
    import sys

    fake_env(mode="hang")
    pidfile = tmp_path / "agent.pid"
    script = (
        "import asyncio, sys\n"
        "from orchestrator_nb.process import base_env, run_process\n"
        "async def main():\n"
        "    def on_line(_l): pass\n"
        "    t = asyncio.ensure_future(run_process([sys.argv[1]], cwd='.', env=base_env(),"
        " on_line=on_line))\n"
        "    await asyncio.sleep(0)\n"
        "    await t\n"
        "asyncio.run(main())\n"
    )
    helper = subprocess.Popen([sys.executable, "-c", script, str(fake_exe("x"))], cwd=tmp_path)
    agent = None
    deadline = time.monotonic() + 20
    while agent is None and time.monotonic() < deadline:
        kids = Path(f"/proc/{helper.pid}/task/{helper.pid}/children")
        found = kids.read_text().split() if kids.exists() else []
        agent = int(found[0]) if found else None
        time.sleep(0.05)
    assert agent is not None and _alive(agent)
    pidfile.write_text(str(agent))
    helper.send_signal(signal.SIGKILL)
    helper.wait()
    assert _gone_soon(agent)


# -- a crashed orchestrator: a real CLI under rehearsal, the orchestrator killed by SIGKILL ------

CRASHING_RUN = """
import asyncio, sys
from orchestrator_nb.notebook.runner import SessionRecorder
from orchestrator_nb.sessions import Session
from orchestrator_nb.workflow.api import arun

ws, config = sys.argv[1], sys.argv[2]
session = Session.create("crash")
turn = session.begin_turn("Create hello.txt containing hi", workflow="solo", workspace=ws)
asyncio.run(
    arun("Create hello.txt containing hi", "solo", workspace=ws, config=config,
         rehearsal="hang", subscribers=[SessionRecorder(session, turn)])
)
"""


def _require_codex() -> None:
    from orchestrator_nb.agents.registry import agents_bin_dirs

    if not any((d / "codex").exists() for d in agents_bin_dirs()):
        reason = "codex is not installed: run `make agents`"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.mark.real_cli
@pytest.mark.slow
async def test_sigkill_mid_step_then_resume_leaves_one_agent_and_no_process(
    tmp_path: Path,
) -> None:
    import signal
    import subprocess
    import sys

    from orchestrator_nb.lifecycle import LifecycleEvent, StepStarted
    from orchestrator_nb.proctree import token_members
    from orchestrator_nb.sessions import Session
    from orchestrator_nb.workflow.api import aresume

    _require_codex()
    ws = tmp_path / "ws"
    ws.mkdir()
    config = tmp_path / "orchestrator.yaml"
    config.write_text(
        "workflows:\n  solo:\n    steps:\n      - {id: impl, agent: codex, prompt: '{{ task }}'}\n"
    )
    child = subprocess.Popen([sys.executable, "-c", CRASHING_RUN, str(ws), str(config)])
    runs = ws / ".orchestrator" / "runs"
    agents: list[dict[str, object]] = []
    deadline = time.monotonic() + 120
    while not agents and time.monotonic() < deadline:
        for file in runs.glob("*/agents.jsonl") if runs.is_dir() else []:
            agents = [json.loads(x) for x in file.read_text().splitlines()]
        await asyncio.sleep(0.1)
    assert agents, "the codex step never started"
    run_id = next(runs.glob("*/agents.jsonl")).parent.name
    token = str(agents[0]["token"])
    # The CLI is running (the hang scenario never answers); give it time to start its children.
    while len(token_members(token)) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    before = token_members(token)
    assert int(str(agents[0]["pid"])) in before
    child.send_signal(signal.SIGKILL)  # the kernel is killed mid-step
    child.wait()
    # PR_SET_PDEATHSIG took the CLI's own process with its starter at once.
    assert _gone_soon(int(str(agents[0]["pid"])))
    # Its own children (codex's native binary behind the node launcher) outlive it: these are
    # the leftovers the resume has to stop before it starts a new agent.
    left = token_members(token)

    seen_at_start: list[list[int]] = []

    def on_event(event: LifecycleEvent) -> None:
        if isinstance(event, StepStarted):
            seen_at_start.append(token_members(token))

    result = await aresume(
        run_id, workspace=ws, config=config, rehearsal="write-file", subscribers=[on_event]
    )
    assert result.ok, result.error
    assert seen_at_start == [[]]  # nothing of the first agent lived when the second started
    assert (ws / "hello.txt").read_text() == "hi\n"
    assert token_members(token) == []
    for file in runs.glob("*/agents.jsonl"):
        for entry in (json.loads(x) for x in file.read_text().splitlines()):
            if entry.get("token"):
                assert token_members(str(entry["token"])) == []
    sessions = list((ws / ".orchestrator" / "sessions").glob("*.json"))
    turns = [t for s in sessions for t in Session.load(s).turns]
    assert [(t.run_id, t.outcome) for t in turns] == [(run_id, "interrupted")]
    # Leftovers may also end on their own between the kill and the resume (they notice their
    # parent is gone): the resume says how many it stopped, never more than were left.
    said = [
        re.match(rf"stopped (\d+) leftover process\S* of dead run {run_id}", n)
        for n in result.notes
    ]
    counts = [int(m.group(1)) for m in said if m]
    assert counts and counts[0] <= len(left), result.notes


async def test_budget_stop_returns_fast_with_an_escaped_child(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], tmp_path: Path
) -> None:
    # The engine's wall-clock budget sets the run's cancel event: the same bounded stop.
    from orchestrator_nb.config import AgentConfig, Settings, load_settings
    from orchestrator_nb.workflow.api import arun
    from orchestrator_nb.workflow.models import Workflow

    pidfile = tmp_path / "escaped.pid"
    fake_env(mode="escape", pidfile=pidfile)
    ws = tmp_path / "ws"
    ws.mkdir()
    argv = [str(fake_exe("x")), "{prompt}"]
    agent = AgentConfig(driver="command", argv=argv, retries=0, retry_wait=0)
    flow = Workflow.model_validate(
        {"budget": {"max_wall_s": 5.0}, "steps": [{"id": "s", "agent": "a", "prompt": "go"}]}
    )
    settings = Settings(
        agents={"a": agent}, workflows={"flow": flow}, limits=load_settings(cwd=ws).limits
    )
    result = await arun("go", "flow", workspace=ws, config=settings)
    assert result.outcome == "budget_exceeded"
    # 5 s budget (the agent and its escaped child start well within it), then the default
    # escalation (2 s after SIGINT, 2 s after SIGTERM), then SIGKILL; back within 3 s of that.
    assert result.duration_s < 5.0 + 4.0 + 3.0
    assert _gone_soon(int(pidfile.read_text()))
