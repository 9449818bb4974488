"""What a dead run left running is stopped by the next run and by the kernel's next start, and a
reused pid is never signalled. Real processes: a helper process runs an agent and is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator_nb.orphans import dead_runs, stop_leftovers
from orchestrator_nb.proctree import proc_start, token_members
from orchestrator_nb.sessions import Session

HELPER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from orchestrator_nb.orphans import track_run
    from orchestrator_nb.process import base_env, run_process
    from orchestrator_nb.sessions import Session

    ws, exe = Path(sys.argv[1]), sys.argv[2]
    session = Session.create("s")
    turn = session.begin_turn("task", workflow="flow", workspace=ws)
    turn.run_id = "dead-run"
    session.autosave()

    async def main():
        with track_run(ws / ".orchestrator", "dead-run"):
            await run_process([exe], cwd=ws, env=base_env(), on_line=lambda _l: None)

    asyncio.run(main())
    """
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _crash_a_run(ws: Path, exe: Path, pidfile: Path) -> tuple[str, int]:
    """Start an agent whose escaped child holds on, then SIGKILL its orchestrator."""
    helper = subprocess.Popen([sys.executable, "-c", HELPER, str(ws), str(exe)])
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    escaped = int(pidfile.read_text())
    agents = ws / ".orchestrator" / "runs" / "dead-run" / "agents.jsonl"
    token = json.loads(agents.read_text().splitlines()[0])["token"]
    helper.send_signal(signal.SIGKILL)
    helper.wait()
    assert _alive(escaped)  # PDEATHSIG reaches the CLI, not what escaped its group
    return token, escaped


@pytest.fixture
def crashed(
    tmp_path: Path, fake_exe: Callable[[str], Path], fake_env: Callable[..., None]
) -> tuple[Path, str, int]:
    ws = tmp_path / "ws"
    (ws / ".orchestrator").mkdir(parents=True)
    pidfile = tmp_path / "escaped.pid"
    fake_env(mode="escape", pidfile=pidfile)
    token, escaped = _crash_a_run(ws, fake_exe("x"), pidfile)
    yield ws, token, escaped
    for pid in token_members(token):  # never leave the machine dirty if an assertion failed
        os.kill(pid, signal.SIGKILL)


def test_the_kernels_next_start_stops_leftovers(
    crashed: tuple[Path, str, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from orchestrator_nb.notebook import load_ipython_extension, unload_ipython_extension

    ws, token, escaped = crashed
    assert [p.name for p in dead_runs(ws / ".orchestrator")] == ["dead-run"]
    monkeypatch.chdir(ws)
    shell = InteractiveShell.instance()
    try:
        load_ipython_extension(shell)
    finally:
        unload_ipython_extension(shell)
        InteractiveShell.clear_instance()
    out = capsys.readouterr().out
    assert "run dead-run died with its kernel; stopped 1 leftover process" in out
    assert "its turn is marked interrupted" in out
    deadline = time.monotonic() + 5
    while _alive(escaped) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(escaped) and token_members(token) == []
    session = Session.load(next((ws / ".orchestrator" / "sessions").glob("*.json")))
    assert [t.outcome for t in session.turns] == ["interrupted"]
    assert dead_runs(ws / ".orchestrator") == []  # handled once, not at every start


def test_the_next_run_stops_leftovers(crashed: tuple[Path, str, int]) -> None:
    from orchestrator_nb.workspace import Workspace
    from orchestrator_nb.workspace.lock import run_seat

    ws, token, _escaped = crashed
    notes: list[str] = []

    async def enter() -> None:
        async with run_seat(Workspace(ws), notes=notes):
            assert token_members(token) == []  # before the run does anything

    import asyncio

    asyncio.run(enter())
    assert notes == ["stopped 1 leftover process of dead run dead-run; its turn marked interrupted"]


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    run_dir = ws / ".orchestrator" / "runs" / "old"
    run_dir.mkdir(parents=True)
    # Its own group leader, as an agent is: a killpg on the recorded pid would reach it.
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        start = proc_start(bystander.pid)
        assert start is not None
        import socket

        owner = {"run_id": "old", "pid": 1, "start": -1, "host": socket.gethostname()}
        (run_dir / "owner.json").write_text(json.dumps({**owner, "state": "running"}))
        # The dead run's agent had this pid, but started at another time: the pid was reused.
        entry = {"event": "start", "pid": bystander.pid, "start": start - 1, "token": "0" * 24}
        (run_dir / "agents.jsonl").write_text(json.dumps(entry) + "\n")
        found = stop_leftovers(ws)
        assert [(f.run_id, f.stopped) for f in found] == [("old", [])]
        time.sleep(0.2)
        assert bystander.poll() is None  # still running
    finally:
        bystander.kill()
        bystander.wait()
