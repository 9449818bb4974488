"""Two runs in one workspace: they take turns (or one works in its own worktree), each keeps its
own changes, and reverting one never touches the other's files. Real processes, real files."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator_nb.cli import StepPrinter
from orchestrator_nb.config import AgentConfig, Settings, load_settings
from orchestrator_nb.errors import WorkspaceError
from orchestrator_nb.lifecycle import LifecycleEvent, WorkspaceWaiting
from orchestrator_nb.notebook.live import LiveDisplay
from orchestrator_nb.workflow.api import arun, revert
from orchestrator_nb.workflow.models import Workflow
from orchestrator_nb.workspace.lock import WorkspaceLock

SCRIPTED = Path(__file__).parents[1] / "fakes" / "scripted_cli.py"
FLOW = """
flow:
  steps:
    - {id: work, agent: a, prompt: "{{ task }}"}
"""


def _git(ws: Path) -> None:
    for args in (["init", "-q"], ["config", "user.email", "t@e"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=ws, check=True)
    (ws / "README.md").write_text("# ws\n")
    subprocess.run(["git", "add", "-A"], cwd=ws, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=ws, check=True)


def _settings(ws: Path, rules: list[dict[str, Any]], tmp_path: Path) -> Settings:
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps(rules))
    argv = [sys.executable, str(SCRIPTED), str(rules_file), "{prompt}"]
    agent = AgentConfig(driver="command", argv=argv, retries=0, retry_wait=0, timeout=60)
    flows = {k: Workflow.model_validate(v) for k, v in yaml.safe_load(FLOW).items()}
    return Settings(agents={"a": agent}, workflows=flows, limits=load_settings(cwd=ws).limits)


def _calls(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def _until(check: Any, what: str, seconds: float = 60) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "calls.jsonl"
    monkeypatch.setenv("CALLS_LOG", str(path))
    return path


@pytest.mark.parametrize("git", [False, True])
async def test_second_run_waits_and_each_keeps_its_own_changes(
    tmp_path: Path, calls: Path, git: bool
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    if git:
        _git(ws)
    go = tmp_path / "go"
    settings = _settings(
        ws,
        [
            {"match": "FIRST", "wait_file": str(go), "write": {"a.txt": "from A\n"}},
            {"match": "SECOND", "write": {"b.txt": "from B\n"}},
        ],
        tmp_path,
    )
    first_events: list[LifecycleEvent] = []
    second_events: list[LifecycleEvent] = []

    def on_second(event: LifecycleEvent) -> None:
        second_events.append(event)
        if isinstance(event, WorkspaceWaiting):
            go.write_text("")  # the first run may finish only once the second is seen waiting

    first = asyncio.ensure_future(
        arun("FIRST", "flow", workspace=ws, config=settings, subscribers=[first_events.append])
    )
    await _until(lambda: _calls(calls), "the first run's agent to start")
    second = asyncio.ensure_future(
        arun("SECOND", "flow", workspace=ws, config=settings, subscribers=[on_second])
    )
    a, b = await asyncio.gather(first, second)
    assert a.ok and b.ok, (a.error, b.error)
    waiting = [e for e in second_events if isinstance(e, WorkspaceWaiting)]
    assert len(waiting) == 1
    assert waiting[0].message == f"waiting for run {a.run_id} in this workspace"
    # The second agent started only after the first one had finished.
    log = _calls(calls)
    ends = {x["end_of"]: x["end"] for x in log if x["rule"] == -1}
    starts = {x["rule"]: x["start"] for x in log if x["rule"] >= 0}
    assert starts[1] >= ends[0]
    assert [c.path for c in a.changes] == ["a.txt"]
    assert [c.path for c in b.changes] == ["b.txt"]
    revert(a.run_id, workspace=ws)
    assert not (ws / "a.txt").exists()
    assert (ws / "b.txt").read_text() == "from B\n"


async def test_isolated_run_works_aside_and_applies_its_own_changes(
    tmp_path: Path, calls: Path
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    _git(ws)
    go = tmp_path / "go"
    settings = _settings(
        ws,
        [
            {"match": "ISOLATED", "wait_file": str(go), "write": {"a.txt": "from A\n"}},
            {"match": "SHARED", "write": {"b.txt": "from B\n"}},
        ],
        tmp_path,
    )
    shared_events: list[LifecycleEvent] = []
    isolated = asyncio.ensure_future(
        arun("ISOLATED", "flow", workspace=ws, config=settings, isolation="worktree")
    )
    await _until(lambda: _calls(calls), "the isolated run's agent to start")
    # While the isolated run works, a shared run goes ahead without waiting.
    b = await arun(
        "SHARED", "flow", workspace=ws, config=settings, subscribers=[shared_events.append]
    )
    go.write_text("")
    a = await isolated
    assert a.ok and b.ok, (a.error, b.error)
    assert not any(isinstance(e, WorkspaceWaiting) for e in shared_events)
    isolated_cwd = Path(_calls(calls)[0]["cwd"])
    assert isolated_cwd != ws.resolve()
    assert not isolated_cwd.exists()  # the worktree is gone after the run
    assert (ws / "a.txt").read_text() == "from A\n"
    assert [c.path for c in a.changes] == ["a.txt"]
    assert [c.path for c in b.changes] == ["b.txt"]
    assert a.workspace == str(ws.resolve())
    revert(a.run_id, workspace=ws)
    assert not (ws / "a.txt").exists() and (ws / "b.txt").exists()
    revert(b.run_id, workspace=ws)
    assert not (ws / "b.txt").exists()


async def test_isolation_needs_git(tmp_path: Path, calls: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    settings = _settings(ws, [{"match": "X"}], tmp_path)
    with pytest.raises(WorkspaceError, match="needs a git workspace"):
        await arun("X", "flow", workspace=ws, config=settings, isolation="worktree")


async def test_a_crashed_holder_releases_the_lock(tmp_path: Path, calls: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    settings = _settings(ws, [{"match": "RUN", "write": {"x.txt": "x\n"}}], tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from orchestrator_nb.workspace.lock import WorkspaceLock
                lock = WorkspaceLock(Path({str(ws / ".orchestrator")!r}))
                assert lock.try_acquire("crashed-run")
                print("held", flush=True)
                time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"

        def on_event(event: LifecycleEvent) -> None:
            if isinstance(event, WorkspaceWaiting):
                seen.append(event.message)
                holder.send_signal(signal.SIGKILL)  # a kernel killed while holding the lock

        seen: list[str] = []
        result = await arun("RUN", "flow", workspace=ws, config=settings, subscribers=[on_event])
        assert result.ok, result.error
        assert seen == ["waiting for run crashed-run in this workspace"]
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


async def test_revert_is_refused_while_a_run_writes(tmp_path: Path, calls: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    go = tmp_path / "go"
    settings = _settings(
        ws,
        [
            {"match": "FIRST", "write": {"a.txt": "a\n"}},
            {"match": "SECOND", "wait_file": str(go), "write": {"b.txt": "b\n"}},
        ],
        tmp_path,
    )
    a = await arun("FIRST", "flow", workspace=ws, config=settings)
    second = asyncio.ensure_future(arun("SECOND", "flow", workspace=ws, config=settings))
    await _until(lambda: len(_calls(calls)) >= 3, "the second run's agent to start")
    with pytest.raises(WorkspaceError, match=r"run .* is writing in this workspace"):
        revert(a.run_id, workspace=ws)
    go.write_text("")
    assert (await second).ok
    revert(a.run_id, workspace=ws)
    assert not (ws / "a.txt").exists() and (ws / "b.txt").exists()


def test_the_console_and_the_cell_show_the_wait(tmp_path: Path) -> None:
    event = WorkspaceWaiting("r2", "run r1", str(tmp_path))
    out = io.StringIO()
    StepPrinter(out)(event)
    assert out.getvalue() == "waiting for run r1 in this workspace\n"

    class Sink:
        live = False

        def __init__(self) -> None:
            self.shown: list[dict[str, str]] = []

        def show(self, display_id: str, bundle: dict[str, str]) -> None:
            self.shown.append(bundle)

        def update(self, display_id: str, bundle: dict[str, str]) -> None:
            self.shown.append(bundle)

    sink = Sink()
    LiveDisplay(sink)(event)
    assert sink.shown == [{"text/plain": "waiting for run r1 in this workspace"}]


def test_holder_is_named_only_while_held(tmp_path: Path) -> None:
    state = tmp_path / ".orchestrator"
    lock = WorkspaceLock(state)
    other = WorkspaceLock(state)
    assert lock.try_acquire("r1")
    assert not other.try_acquire("r2")
    assert other.holder() == "run r1"
    lock.release()
    assert other.try_acquire("r2")
    other.release()


async def test_a_waiting_run_can_be_stopped(tmp_path: Path, calls: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    go = tmp_path / "go"
    settings = _settings(
        ws,
        [
            {"match": "FIRST", "wait_file": str(go), "write": {"a.txt": "a\n"}},
            {"match": "SECOND", "write": {"b.txt": "b\n"}},
        ],
        tmp_path,
    )
    first = asyncio.ensure_future(arun("FIRST", "flow", workspace=ws, config=settings))
    await _until(lambda: _calls(calls), "the first run's agent to start")
    stop = asyncio.Event()

    def on_event(event: LifecycleEvent) -> None:
        if isinstance(event, WorkspaceWaiting):
            stop.set()  # the dashboard's Stop while the run waits

    b = await arun(
        "SECOND", "flow", workspace=ws, config=settings, cancel=stop, subscribers=[on_event]
    )
    assert b.outcome == "cancelled" and b.steps == [] and b.changes == []
    go.write_text("")
    assert (await first).ok
    assert not (ws / "b.txt").exists()
    assert len([c for c in _calls(calls) if c["rule"] >= 0]) == 1  # the second agent never ran


def test_exec_isolate(tmp_path: Path, calls: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"match": "", "write": {"a.txt": "a\n"}}]))
    config = tmp_path / "orchestrator.yaml"
    argv = [sys.executable, str(SCRIPTED), str(rules), "{prompt}"]
    config.write_text(
        yaml.safe_dump(
            {
                "agents": {"a": {"driver": "command", "argv": argv, "retry_wait": 0}},
                "workflows": yaml.safe_load(FLOW),
            }
        )
    )
    # The real command in its own process (it configures logging for a console).
    args = [sys.executable, "-m", "orchestrator_nb.cli", "exec", "T", "-w", "flow"]
    args += ["--workspace", str(ws), "--config", str(config), "--isolate"]
    refused = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert "isolation='worktree' needs a git workspace" in refused.stderr
    _git(ws)
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (ws / "a.txt").read_text() == "a\n"
    assert Path(_calls(calls)[0]["cwd"]) != ws.resolve()  # it worked in its own worktree
