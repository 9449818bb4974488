"""The subprocess runner, exercised with fake agent executables (no mocks)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

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
