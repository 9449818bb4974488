"""Every entry point runs the same run through the one service: the real CLIs under rehearsal.

What a user would notice is checked where they would notice it: the model server's recorded
requests (a new task starts a fresh conversation, a follow-up carries the earlier one), the
usage each step reports (the same scripted step costs the same every time, also when codex
resumes a thread and reports its running total), and the state folder (every run journaled,
audited, logged) and the metrics registry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from orchestrator_nb import run_agent
from orchestrator_nb.agents.registry import agents_bin_dirs
from orchestrator_nb.events import RetryEvent, Usage
from orchestrator_nb.lifecycle import AgentEventEmitted, LifecycleEvent
from orchestrator_nb.notebook.live import LiveDisplay
from orchestrator_nb.observe.metrics import get_metrics
from orchestrator_nb.rehearsal import Rehearsal, rehearsal
from orchestrator_nb.sessions import Session
from orchestrator_nb.workflow import arun

pytestmark = [pytest.mark.real_cli, pytest.mark.slow]
AGENTS = ("claude", "codex")
HELLO, AGAIN = "Create hello.txt containing hi", "say done again"
# What the write-file scenario's "say done again" turn reports, whoever asks.
AGAIN_USAGE = (1400, 12, 1000)


def need(*agents: str) -> None:
    missing = [
        a
        for a in agents
        if not shutil.which(a) and not any((d / a).exists() for d in agents_bin_dirs())
    ]
    if missing:
        reason = f"agent CLIs not installed ({', '.join(missing)}): run `make agents`"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def config_file(folder: Path, agent: str) -> Path:
    """A config with a one-step workflow ``solo`` of ``agent`` (kept outside the workspace)."""
    path = folder / f"{agent}.yaml"
    path.write_text(
        textwrap.dedent(f"""\
            workflows:
              solo:
                steps:
                  - {{id: work, agent: {agent}}}
            """)
    )
    return path


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    folder = tmp_path / "ws"
    folder.mkdir()
    return folder


def first_turn(r: Rehearsal, since: int, agent: str) -> Any:
    """The first model request ``agent`` sent after request number ``since``."""
    turns = [q for q in r.requests[since:] if q.kind == "turn" and q.agent == agent]
    assert turns, f"{agent} sent no model request"
    return turns[0]


def resumed(request: Any) -> bool:
    """Does the request carry an earlier answer (a native conversation continued)?"""
    return any(line.startswith("assistant:") for line in request.messages)


def own(usage: Usage) -> tuple[int, int, int]:
    return (usage.input_tokens, usage.output_tokens, usage.cached_tokens)


def reached_state(ws: Path, run_id: str) -> None:
    """The run is journaled, in the audit trail and in the structured log."""
    state = ws / ".orchestrator"
    assert (state / "runs" / run_id / "run.json").is_file()
    assert (state / "runs" / run_id / "outcome.json").is_file()
    assert run_id in (state / "audit.jsonl").read_text()
    assert any(run_id in log.read_text() for log in (state / "logs").glob("*.jsonl"))


def tasks_counted(workflow: str, outcome: str = "completed") -> float:
    value = get_metrics().registry.get_sample_value(
        "orchestrator_tasks_total", {"workflow": workflow, "outcome": outcome}
    )
    return value or 0.0


# -- Python API ---------------------------------------------------------------------------


@pytest.mark.parametrize("agent", AGENTS)
async def test_python_new_task_never_resumes_and_a_followup_does(
    agent: str, ws: Path, tmp_path: Path
) -> None:
    need(agent)
    config = config_file(tmp_path, agent)
    session = Session.create("api")
    before = tasks_counted("solo")
    with rehearsal("write-file") as r:
        first = await arun(HELLO, "solo", workspace=ws, config=config, rehearsal=r, session=session)
        n = len(r.requests)
        new = await arun(
            AGAIN, "solo", workspace=ws, config=config, rehearsal=r, session=session, followup=False
        )
        fresh = first_turn(r, n, agent)
        usages = []
        for _ in range(3):
            n = len(r.requests)
            again = await arun(
                AGAIN,
                "solo",
                workspace=ws,
                config=config,
                rehearsal=r,
                session=session,
                followup=True,
            )
            assert resumed(first_turn(r, n, agent)), f"{agent}: the follow-up started afresh"
            usages.append(own(again.step("work").usage))
    assert first.ok and new.ok and again.ok, (first.error, new.error, again.error)
    assert not resumed(fresh), f"{agent}: a new task got an earlier conversation"
    assert new.step("work").session_id != first.step("work").session_id
    # The same scripted step, three times: the same usage (codex reports the thread's running
    # total after a resume; the step still shows its own).
    assert usages == [AGAIN_USAGE] * 3
    turns = session.turns
    assert [t.followup for t in turns] == [False, False, True, True, True]
    assert [own(t.usage) for t in turns[1:]] == [AGAIN_USAGE] * 4
    for result in (first, new, again):
        reached_state(ws, result.run_id)
    assert tasks_counted("solo") - before == 5


async def test_a_followup_never_resumes_another_workspaces_session(tmp_path: Path) -> None:
    need("claude")
    config = config_file(tmp_path, "claude")
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    session = Session.create("two-folders")
    with rehearsal("write-file") as r:
        await arun(HELLO, "solo", workspace=here, config=config, rehearsal=r, session=session)
        n = len(r.requests)
        other = await arun(
            AGAIN,
            "solo",
            workspace=there,
            config=config,
            rehearsal=r,
            session=session,
            followup=True,
        )
        assert not resumed(first_turn(r, n, "claude"))
    assert other.ok and not session.turns[-1].followup  # nothing in `there` to follow
    # Each workspace's saved session holds only its own turns.
    for folder, task in ((here, HELLO), (there, AGAIN)):
        (saved,) = (folder / ".orchestrator" / "sessions").glob("*.json")
        assert [t.task for t in Session.load(saved).turns] == [task]


@pytest.mark.parametrize(("first", "second"), [("claude", "codex"), ("codex", "claude")])
async def test_a_followup_replays_the_summary_only_to_an_agent_that_does_not_resume(
    first: str, second: str, ws: Path, tmp_path: Path
) -> None:
    """The agent that continues its own conversation is not sent the earlier turn again as
    text (it would read it, and be billed for it, twice); the agent new to this workspace
    starts afresh and gets the summary instead."""
    need(first, second)
    config = tmp_path / "pair.yaml"
    config.write_text(
        textwrap.dedent(f"""\
            workflows:
              solo:
                steps:
                  - {{id: work, agent: {first}}}
              pair:
                steps:
                  - {{id: work, agent: {first}}}
                  - {{id: check, agent: {second}}}
            """)
    )
    session = Session.create("context")
    with rehearsal("write-file") as r:
        one = await arun(HELLO, "solo", workspace=ws, config=config, rehearsal=r, session=session)
        n = len(r.requests)
        two = await arun(
            AGAIN, "pair", workspace=ws, config=config, rehearsal=r, session=session, followup=True
        )
        kept, fresh = first_turn(r, n, first), first_turn(r, n, second)
    assert one.ok and two.ok, (one.error, two.error)
    assert resumed(kept), f"{first}: the follow-up did not resume its conversation"
    assert kept.prompt.strip() == AGAIN, f"{first} got the earlier turn replayed: {kept.prompt!r}"
    assert not resumed(fresh)
    assert fresh.prompt.startswith("Context: this continues the previous request")
    assert f"Previous request: {HELLO}" in fresh.prompt and fresh.prompt.rstrip().endswith(AGAIN)


@pytest.mark.parametrize("agent", AGENTS)
def test_run_agent_is_a_journaled_one_step_run(agent: str, ws: Path) -> None:
    need(agent)
    before = tasks_counted(f"agent:{agent}")
    with rehearsal("write-file") as r:
        result = run_agent(agent, HELLO, workspace=ws, rehearsal=r)
    assert result.ok, result.error
    assert (ws / "hello.txt").read_text() == "hi\n"
    (run_dir,) = (ws / ".orchestrator" / "runs").iterdir()
    reached_state(ws, run_dir.name)
    assert tasks_counted(f"agent:{agent}") - before == 1
    steps = (run_dir / "steps.jsonl").read_text()
    assert '"session_id"' in steps and (result.session_id or "") in steps


# -- console script -------------------------------------------------------------------------


def test_console_exec_is_a_new_task_every_time(ws: Path, tmp_path: Path) -> None:
    need("claude")
    config = config_file(tmp_path, "claude")
    exe = Path(sys.executable).parent / "orchestrator-nb"
    outputs = []
    for task in (HELLO, AGAIN):
        done = subprocess.run(
            [
                str(exe),
                "exec",
                task,
                "-w",
                "solo",
                "--workspace",
                str(ws),
                "--config",
                str(config),
                "--rehearse",
                "write-file",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        assert "new task" in done.stderr
        outputs.append(json.loads(done.stdout))
    first, second = outputs
    assert first["steps"][0]["session_id"] != second["steps"][0]["session_id"]
    assert tuple(
        second["usage"][k] for k in ("input_tokens", "output_tokens", "cached_tokens")
    ) == (AGAIN_USAGE)
    for out in outputs:
        reached_state(ws, out["run_id"])


# -- local batch ----------------------------------------------------------------------------


def test_batch_tasks_are_new_tasks(tmp_path: Path) -> None:
    from orchestrator_nb import batch

    need("claude")
    config = config_file(tmp_path, "claude")
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@e"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "README.md").write_text("# demo\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True)
    with rehearsal("write-file") as r:
        result = batch(
            [HELLO, AGAIN, AGAIN], "solo", workspace=repo, config=config, rehearsal=r,
            max_concurrency=1, progress=False,
        )  # fmt: skip
        turns = [q for q in r.requests if q.kind == "turn" and q.agent == "claude"]
    assert result.ok, str(result)
    firsts = [q for q in turns if not q.tool_results]
    assert len(firsts) == 3 and not any(resumed(q) for q in firsts)
    agains = [row for row in result.rows if row.task == AGAIN]
    assert [(row.input_tokens, row.output_tokens) for row in agains] == [AGAIN_USAGE[:2]] * 2


# -- dashboard ------------------------------------------------------------------------------


async def test_dashboard_run_is_new_and_followup_resumes(ws: Path, tmp_path: Path) -> None:
    from orchestrator_nb.dashboard import dashboard
    from orchestrator_nb.sessions import SessionStore

    need("claude")
    store = SessionStore()
    d = dashboard(
        workspace=ws, config=config_file(tmp_path, "claude"), store=store, workflow="solo",
        rehearsal="write-file", task=HELLO, check_agents=False,
    )  # fmt: skip
    assert d.run_clicked() is not None
    first = await d.wait(120)
    d.controls.task.value = AGAIN
    assert d.run_clicked() is not None
    assert "new task" in d._note_text
    new = await d.wait(120)
    d.controls.followup.value = AGAIN
    assert d.followup_clicked() is not None
    assert "follow-up of turn 2" in d._note_text
    again = await d.wait(120)
    assert first is not None and new is not None and again is not None
    assert first.ok and new.ok and again.ok, (first.error, new.error, again.error)
    ids = [r.step("work").session_id for r in (first, new, again)]
    assert ids[0] != ids[1] and ids[1] == ids[2]  # Run started afresh; Follow-up continued
    assert own(new.usage) == own(again.usage) == AGAIN_USAGE
    assert [t.followup for t in store.current.turns] == [False, False, True]
    for result in (first, new, again):
        reached_state(ws, result.run_id)


# -- the engine's own retries ----------------------------------------------------------------


class _Sink:
    live = False

    def __init__(self) -> None:
        self.shown: list[str] = []

    def show(self, display_id: str, bundle: dict[str, Any]) -> None:
        self.shown.append(str(bundle.get("text/plain", "")))

    def update(self, display_id: str, bundle: dict[str, Any]) -> None:
        self.show(display_id, bundle)


async def test_a_429_retried_by_the_orchestrator_is_announced_live_logged_and_counted(
    ws: Path, tmp_path: Path
) -> None:
    need("claude")
    config = config_file(tmp_path, "claude")
    config.write_text(
        config.read_text()
        + "agents:\n  claude:\n    driver: claude\n    retries: 1\n    retry_wait: 0.1\n"
    )
    seen: list[LifecycleEvent] = []
    sink = _Sink()
    live = LiveDisplay(sink, min_interval=0)

    def counted() -> float:
        value = get_metrics().registry.get_sample_value(
            "orchestrator_retries_total", {"agent": "claude", "source": "engine"}
        )
        return value or 0.0

    before = counted()
    with rehearsal("rate-limit") as r:
        result = await arun(
            HELLO, "solo", workspace=ws, config=config, rehearsal=r, subscribers=[seen.append, live]
        )
        turns = [q for q in r.requests if q.kind == "turn" and q.agent == "claude"]
    live.close()
    assert result.outcome == "failed"
    step = result.step("work")
    assert [a.error_kind for a in step.attempts] == ["rate_limit", "rate_limit"]
    retries = [
        e.event
        for e in seen
        if isinstance(e, AgentEventEmitted)
        and isinstance(e.event, RetryEvent)
        and e.event.source == "engine"
    ]
    assert len(retries) == 1 and "rate_limit" in retries[0].reason
    assert len(turns) >= 2  # the second attempt went out to the model again
    assert any("orchestrator retry 1" in text for text in sink.shown)
    assert counted() - before == 1
    logs = "".join(p.read_text() for p in (ws / ".orchestrator" / "logs").glob("*.jsonl"))
    assert '"source": "engine"' in logs or '"source":"engine"' in logs
