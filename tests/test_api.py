"""run_agent / arun_agent through the real runner, with fake CLIs replaying real transcripts."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator_nb import parse_transcript, run_agent
from orchestrator_nb.agents.availability import status
from orchestrator_nb.api import arun_agent
from orchestrator_nb.config import AgentConfig, Settings, load_settings
from orchestrator_nb.errors import ConfigError, WorkspaceError
from orchestrator_nb.process import group_members

TRANSCRIPTS = Path(__file__).parent / "fixtures" / "transcripts"
VERSIONS = {
    "claude": "2.1.197 (Claude Code)",
    "codex": "codex-cli 0.169.0",
    "gemini": "0.61.0",
    "copilot": "GitHub Copilot CLI 1.0.102.",
}


def _settings(agent: str, exe: Path, **extra: object) -> Settings:
    cfg = AgentConfig(driver=agent, path=str(exe), retry_wait=0, **extra)  # type: ignore[arg-type]
    return Settings(agents={agent: cfg})


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.mark.parametrize(
    ("agent", "transcript", "text", "session"),
    [
        (
            "claude",
            "claude_tool_write_acceptEdits.jsonl",
            "Done. I created hello.txt containing hi.",
            "9e656b52-4cb5-4b9a-a613-ce5805dc7d02",
        ),
        (
            "codex",
            "codex_tool_exec_command.jsonl",
            "Done. I created hello.txt containing hi.",
            "01a20b39-d914-75c1-baeb-3cb67640a9de",
        ),
        (
            "gemini",
            "gemini_tool_write_file.jsonl",
            "Done. I created hello.txt containing hi.",
            "1e171958-f999-4b5d-8a98-abd38a0b2f94",
        ),
        (
            "copilot",
            "copilot_tool_create.jsonl",
            "Done. I created hello.txt containing hi.",
            "09e3f288-11a2-4099-8633-3aac419bc767",
        ),
    ],
)
def test_replayed_success_through_runner(
    agent: str,
    transcript: str,
    text: str,
    session: str,
    fake_exe: Callable[[str], Path],
    fake_env: Callable[..., None],
    workspace: Path,
    tmp_path: Path,
) -> None:
    argv_out = tmp_path / "argv.json"
    fake_env(
        mode="replay", script=TRANSCRIPTS / transcript, version=VERSIONS[agent], argv_out=argv_out
    )
    prompt = 'Create hello.txt; $(rm -rf /) `x` "quoted" \n second line'
    result = run_agent(agent, prompt, workspace=workspace, config=_settings(agent, fake_exe(agent)))
    assert result.ok, result.error
    assert result.text == text
    assert result.session_id == session
    assert len(result.attempts) == 1
    called = json.loads(argv_out.read_text())
    # One argv element, untouched (prompts are data); `--prompt=` keeps a leading "-" a prompt.
    assert prompt in called["argv"] or f"--prompt={prompt}" in called["argv"]
    assert called["cwd"] == str(workspace)
    assert (
        Path(result.log_path or "", "stdout.log").read_bytes()
        == (TRANSCRIPTS / transcript).read_bytes()
    )


def test_rate_limit_is_retried_then_reported(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], workspace: Path
) -> None:
    fake_env(
        mode="replay",
        script=TRANSCRIPTS / "gemini_rate_limit_429_exit173.jsonl",
        exit=173,
        version=VERSIONS["gemini"],
    )
    result = run_agent(
        "gemini",
        "hi",
        workspace=workspace,
        config=_settings("gemini", fake_exe("gemini"), retries=2),
    )
    assert not result.ok
    assert result.error_kind == "rate_limit"
    assert [a.error_kind for a in result.attempts] == ["rate_limit"] * 3
    assert result.exit_code == 173


def test_auth_failure_is_not_retried(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], workspace: Path
) -> None:
    fake_env(
        mode="replay",
        script=TRANSCRIPTS / "claude_not_logged_in.jsonl",
        exit=1,
        version=VERSIONS["claude"],
    )
    result = run_agent(
        "claude",
        "hi",
        workspace=workspace,
        config=_settings("claude", fake_exe("claude"), retries=3),
    )
    assert result.error_kind == "auth"
    assert len(result.attempts) == 1
    assert result.error is not None and result.error.hint


def test_hang_times_out_and_leaves_no_process(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], workspace: Path
) -> None:
    fake_env(mode="hang", version=VERSIONS["codex"])
    result = run_agent(
        "codex",
        "hi",
        workspace=workspace,
        config=_settings("codex", fake_exe("codex"), idle_timeout=0.5, retries=0),
    )
    assert result.error_kind == "timeout"
    assert "idle_timeout" in str(result.error)
    assert all("fakebin/codex" not in " ".join(_cmdline(p)) for p in _all_pids())


def test_crash_mid_stream_is_crashed(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], workspace: Path
) -> None:
    fake_env(
        mode="crash",
        script=TRANSCRIPTS / "claude_tool_write_acceptEdits.jsonl",
        version=VERSIONS["claude"],
    )
    result = run_agent(
        "claude",
        "hi",
        workspace=workspace,
        config=_settings("claude", fake_exe("claude"), retries=0),
    )
    assert result.error_kind == "crashed"


async def test_cancel_stops_the_agent(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], workspace: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "gc.pid"
    fake_env(mode="grandchild", pidfile=pidfile, version=VERSIONS["copilot"])
    cancel = asyncio.Event()
    task = asyncio.ensure_future(
        arun_agent(
            "copilot",
            "hi",
            workspace=workspace,
            cancel=cancel,
            config=_settings("copilot", fake_exe("copilot"), retries=2),
        )
    )
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text()):
        assert time.monotonic() < deadline, "not ready within 60 s"
        await asyncio.sleep(0.05)
    pgid = os.getpgid(int(pidfile.read_text()))
    cancel.set()
    result = await asyncio.wait_for(task, 10)
    assert result.error_kind == "cancelled"
    assert len(result.attempts) == 1  # a cancel is never retried
    assert group_members(pgid) == []


async def test_sync_form_works_inside_a_running_loop(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], workspace: Path
) -> None:
    # This is the situation of a notebook cell: the kernel's loop is already running.
    fake_env(mode="replay", script=TRANSCRIPTS / "gemini_resume.jsonl", version=VERSIONS["gemini"])
    result = run_agent(
        "gemini",
        "say done again",
        workspace=workspace,
        config=_settings("gemini", fake_exe("gemini")),
    )
    assert result.ok and result.text == "Done. I created hello.txt containing hi."


def test_events_are_capped(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], workspace: Path
) -> None:
    fake_env(
        mode="replay", script=TRANSCRIPTS / "copilot_tool_create.jsonl", version=VERSIONS["copilot"]
    )
    settings = _settings("copilot", fake_exe("copilot"))
    settings.max_events = 3
    result = run_agent("copilot", "x", workspace=workspace, config=settings)
    assert result.ok
    assert len(result.events) == 3 and result.events_dropped > 0


def test_missing_cli_says_how_to_install(workspace: Path, tmp_path: Path) -> None:
    settings = Settings(agents={"codex": AgentConfig(driver="codex", path=str(tmp_path / "nope"))})
    result = run_agent("codex", "hi", workspace=workspace, config=settings)
    assert result.error_kind == "not_installed"
    assert "agents.codex.path" in str(result.error)


def test_bad_input_raises_typed_errors(workspace: Path) -> None:
    with pytest.raises(WorkspaceError, match="not an existing folder"):
        run_agent("claude", "hi", workspace=workspace / "missing")
    with pytest.raises(ConfigError, match="prompt is empty"):
        run_agent("claude", "  ", workspace=workspace)
    with pytest.raises(ConfigError, match="unknown agent 'nobody'"):
        run_agent("nobody", "hi", workspace=workspace)
    with pytest.raises(ConfigError, match="unknown option"):
        run_agent("claude", "hi", workspace=workspace, colour="blue")


def test_a_session_is_named_or_given_and_anything_else_is_a_typed_error(workspace: Path) -> None:
    from orchestrator_nb import run
    from orchestrator_nb.sessions import default_store

    plan = run("add a pow function", session="s-by-name", dry_run=True, workspace=workspace)
    assert plan.ok and default_store().find("s-by-name") is not None
    with pytest.raises(ConfigError, match="session must be a Session or a session's name"):
        run("add a pow function", session=42, dry_run=True, workspace=workspace)
    with pytest.raises(ConfigError, match="invalid session name"):
        run("add a pow function", session="../x", dry_run=True, workspace=workspace)


def test_impostor_copilot_on_path_is_not_the_agent(
    fake_exe: Callable[[str], Path],
    fake_env: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    impostor = fake_exe("copilot")
    fake_env(version="copilot version: v1.32.0")  # what AWS Copilot prints
    monkeypatch.setenv("PATH", f"{impostor.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ORCHESTRATOR_NB_AGENTS_DIR", str(impostor.parent / "no-agents-here"))
    monkeypatch.chdir(impostor.parent)
    settings = Settings(agents={"copilot": AgentConfig(driver="copilot")})
    row = status(settings)[0]
    assert not row.found
    assert "not this agent" in (row.problem or "")
    assert "@github/copilot" in row.install_hint


def test_parse_transcript_gives_the_same_verdict() -> None:
    lines = (TRANSCRIPTS / "claude_error_max_turns.jsonl").read_text().splitlines()
    result = parse_transcript("claude", lines, exit_code=1)
    assert not result.ok and result.error_kind == "failed"
    assert result.session_id == "6f7c85b6-7be6-4482-93f8-bffc1641c810"


def test_status_lists_every_configured_agent() -> None:
    table = status(load_settings(cwd="/nonexistent-folder"))
    cli = ["claude", "codex", "gemini", "copilot"]
    assert [row.name for row in table] == cli + [f"{name}-acp" for name in cli]
    assert "agent" in str(table) and "<table>" in table._repr_mimebundle_()["text/html"]


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def test_codex_resume_counts_only_this_run(
    fake_exe: Callable[[str], Path], fake_env: Callable[..., None], workspace: Path
) -> None:
    # codex reports the thread's running total after a resume; the earlier run's usage is known.
    from orchestrator_nb import Usage

    fake_env(mode="replay", script=TRANSCRIPTS / "codex_resume.jsonl", version=VERSIONS["codex"])
    result = run_agent(
        "codex",
        "say done again",
        workspace=workspace,
        resume="01a20b39",
        previous_usage=Usage(2400, 68, 400),
        config=_settings("codex", fake_exe("codex")),
    )
    assert (result.usage.input_tokens, result.usage.output_tokens) == (1200, 34)
    assert result.usage.cached_tokens == 200
