"""Roles and fallback: the next agent of a role takes a step its first cannot run.

Every agent is a real executable on the real subprocess path: claude-driver fakes that replay
the real "not logged in" and "429" transcripts, a path that does not exist, and the scripted
plain-text CLI behind the `command` driver.
"""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator_nb import trust_store
from orchestrator_nb.cli import StepPrinter
from orchestrator_nb.config import AgentConfig, Settings, load_settings
from orchestrator_nb.errors import ConfigError
from orchestrator_nb.lifecycle import AgentFallback, LifecycleEvent, StepFinished
from orchestrator_nb.notebook.live import LiveDisplay
from orchestrator_nb.observe.audit import AUDIT_FILE, AuditTrail
from orchestrator_nb.runs import RunRequest, RunService
from orchestrator_nb.workflow import Engine, arun
from orchestrator_nb.workflow.engine import apply_overrides
from orchestrator_nb.workflow.models import Workflow

FAKES = Path(__file__).parents[1] / "fakes"
TRANSCRIPTS = Path(__file__).parents[1] / "fixtures" / "transcripts"


def _replaying(path: Path, transcript: str, exit_code: int) -> Path:
    """A claude stand-in that replays ``transcript`` (its own FAKE_* settings, not the test's)."""
    env = {"FAKE_MODE": "replay", "FAKE_SCRIPT": str(TRANSCRIPTS / transcript)}
    env["FAKE_EXIT"] = str(exit_code)
    env["FAKE_VERSION"] = "2.1.332 (Claude Code)"  # a genuine claude, when it is checked
    path.write_text(
        f"#!{sys.executable}\nimport os, runpy\nos.environ.update({env!r})\n"
        f"runpy.run_path({str(FAKES / 'fake_agent.py')!r}, run_name='__main__')\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


class Agents:
    """missing (not installed), noauth (not logged in), limited (429), good (writes a file)."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ws = tmp_path / "ws"
        self.ws.mkdir()
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        self.calls = tmp_path / "calls.jsonl"
        monkeypatch.setenv("CALLS_LOG", str(self.calls))
        rules = tmp_path / "rules.json"
        rules.write_text(json.dumps([{"match": "", "write": {"out.txt": "done\n"}, "say": "ok"}]))
        argv = [sys.executable, str(FAKES / "scripted_cli.py"), str(rules), "{prompt}"]
        quick = {"retries": 0, "retry_wait": 0, "timeout": 60}
        self.agents = {
            "missing": AgentConfig(driver="claude", path=str(tmp_path / "nowhere" / "claude")),
            "noauth": AgentConfig(
                driver="claude",
                path=str(_replaying(bin_dir / "noauth", "claude_not_logged_in.jsonl", 1)),
                **quick,
            ),
            "limited": AgentConfig(
                driver="claude",
                path=str(_replaying(bin_dir / "limited", "claude_rate_limit_429.jsonl", 1)),
                **quick,
            ),
            "good": AgentConfig(driver="command", argv=argv, **quick),
        }

    def settings(self, *role: str) -> Settings:
        flow = {"roles": {"implementer": list(role)}, "steps": [{"id": "implement"}]}
        flow["steps"][0]["role"] = "implementer"
        base = load_settings(cwd=self.ws)
        return Settings(
            agents=self.agents,
            workflows={"flow": Workflow.model_validate(flow)},
            limits=base.limits,
        )

    def called(self) -> int:
        return len(self.calls.read_text().splitlines()) if self.calls.exists() else 0


@pytest.fixture
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Agents:
    return Agents(tmp_path, monkeypatch)


class Sink:
    live = True

    def __init__(self) -> None:
        self.areas: dict[str, dict[str, str]] = {}

    def show(self, display_id: str, bundle: dict[str, str]) -> None:
        self.areas[display_id] = bundle

    def update(self, display_id: str, bundle: dict[str, str]) -> None:
        self.areas[display_id] = bundle


async def _run(agents: Agents, *role: str) -> tuple[Any, list[LifecycleEvent], Sink]:
    events: list[LifecycleEvent] = []
    sink = Sink()
    live = LiveDisplay(sink)
    result = await arun(
        "make out.txt",
        "flow",
        workspace=agents.ws,
        config=agents.settings(*role),
        subscribers=[events.append, live],
    )
    live.close()
    return result, events, sink


def _audit(ws: Path, kind: str) -> list[dict[str, Any]]:
    trail = AuditTrail(ws / ".orchestrator" / AUDIT_FILE)
    return [r["data"] for r in trail.records() if r["kind"] == kind]


async def test_an_agent_that_is_not_installed_passes_the_step_to_the_next(agents: Agents) -> None:
    result, events, sink = await _run(agents, "missing", "good")
    assert result.ok, result.error
    step = result.steps[0]
    assert step.agent == "good" and (agents.ws / "out.txt").read_text() == "done\n"
    assert [(p.agent, p.kind) for p in step.passed_over] == [("missing", "not_installed")]
    fallbacks = [e for e in events if isinstance(e, AgentFallback)]
    assert [(f.from_agent, f.to_agent, f.kind) for f in fallbacks] == [
        ("missing", "good", "not_installed")
    ]
    printed = io.StringIO()  # what `orchestrator-nb exec` prints on stderr
    StepPrinter(printed)(fallbacks[0])
    assert printed.getvalue() == "[implement] missing is not installed: good took the step\n"
    finished = [e for e in events if isinstance(e, StepFinished)]
    assert [e.agent for e in finished] == ["good"]
    # The cell says which agent took the step, and why.
    (area,) = sink.areas.values()
    assert "implement · good" in area["text/plain"]
    assert "missing is not installed: good took the step" in area["text/plain"]
    # The audit trail and the journal keep it.
    (record,) = _audit(agents.ws, "agent_fallback")
    assert (record["from_agent"], record["to_agent"], record["kind"]) == (
        "missing",
        "good",
        "not_installed",
    )
    assert [r["agent"] for r in _audit(agents.ws, "step_finished")] == ["good"]
    # The summary the cell keeps once the live areas are gone says it too.
    assert "implement (good): ok" in str(result)
    assert "— missing is not installed: good took the step" in str(result)
    journal = agents.ws / ".orchestrator" / "runs" / result.run_id
    text = "".join(p.read_text() for p in journal.rglob("*.json*"))
    assert '"passed_over"' in text and '"missing"' in text


async def test_an_agent_that_is_not_logged_in_passes_the_step_to_the_next(agents: Agents) -> None:
    result, _events, sink = await _run(agents, "noauth", "good")
    assert result.ok, result.error
    step = result.steps[0]
    assert step.agent == "good" and agents.called() == 2  # one call, its start and end lines
    assert [(p.agent, p.kind) for p in step.passed_over] == [("noauth", "auth")]
    assert "Not logged in" in step.passed_over[0].reason
    (area,) = sink.areas.values()
    assert "noauth is not logged in: good took the step" in area["text/plain"]


async def test_a_shared_engine_keeps_passing_steps_on_past_the_breakers_threshold(
    agents: Agents,
) -> None:
    settings = agents.settings("noauth", "good")
    engine = Engine(settings)  # a batch's tasks share one engine, and its breakers
    runs = settings.limits.breaker_threshold + 2
    for n in range(runs):
        request = RunRequest.build(f"task {n}", workflow="flow", workspace=agents.ws)
        result = await RunService(engine=engine).execute(request)
        assert result.ok, (n, result.error)
        assert result.steps[0].agent == "good"
    assert engine.breakers.get("noauth").state == "closed"


async def test_a_rate_limit_does_not_pass_the_step_on(agents: Agents) -> None:
    result, events, _sink = await _run(agents, "limited", "good")
    assert result.outcome == "failed"
    step = result.steps[0]
    assert step.agent == "limited" and step.error_kind == "rate_limit"
    assert step.passed_over == [] and agents.called() == 0
    assert not any(isinstance(e, AgentFallback) for e in events)
    assert not (agents.ws / "out.txt").exists()


async def test_when_every_agent_fails_the_error_names_each_and_why(agents: Agents) -> None:
    result, _events, _sink = await _run(agents, "missing", "noauth")
    assert result.outcome == "failed"
    step = result.steps[0]
    assert step.agent == "noauth" and step.error is not None
    message = step.error.message
    assert message.startswith("no agent could take step implement: ")
    assert "missing is not installed (" in message and "noauth is not logged in (" in message
    assert message.index("missing") < message.index("noauth")
    assert step.error.hint and step.error.hint.startswith("install or log in to one of them")
    assert "no agent could take step implement" in str(result.error)
    assert [(p.agent, p.kind) for p in step.passed_over] == [("missing", "not_installed")]


def test_roles_fill_each_step_and_an_explicit_agent_wins() -> None:
    flow = Workflow.model_validate(
        {
            "roles": {"implementer": ["codex", "claude"], "reviewer": ["gemini"]},
            "steps": [
                {"id": "a", "role": "implementer"},
                {"id": "loop", "kind": "loop", "steps": [{"id": "b", "role": "reviewer"}]},
                {"id": "c", "role": "implementer", "agent": "gemini"},
            ],
        }
    )
    a, loop, c = flow.steps
    assert (a.agent, a.fallback) == ("codex", ["claude"])  # type: ignore[union-attr]
    assert (loop.steps[0].agent, loop.steps[0].fallback) == ("gemini", [])  # type: ignore[union-attr]
    assert (c.agent, c.fallback) == ("gemini", [])  # type: ignore[union-attr]
    # Per-run overrides rebuild the workflow from its dump: the lists survive.
    again = apply_overrides(flow, {"max_iterations": 2})
    assert again.steps[0].fallback == ["claude"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("flow", "problem"),
    [
        ({"steps": [{"id": "a", "role": "x"}]}, "role 'x' has no agents"),
        ({"steps": [{"id": "a"}]}, "names neither an agent nor a role"),
        ({"roles": {"x": ["a", "a"]}, "steps": [{"id": "s", "role": "x"}]}, "names an agent twice"),
        ({"roles": {"x": []}, "steps": [{"id": "s", "agent": "a"}]}, "at least 1 item"),
    ],
)
def test_bad_roles_are_refused_when_the_file_is_loaded(
    tmp_path: Path, flow: dict[str, Any], problem: str
) -> None:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(yaml.safe_dump({"workflows": {"mine": flow}}))
    with pytest.raises(ConfigError, match=problem) as caught:
        load_settings(path)
    assert str(path) in str(caught.value)


def test_an_unknown_agent_in_a_list_is_refused_when_the_file_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(
        "workflows:\n"
        "  mine:\n"
        "    roles:\n"
        "      writer: [claude, nobody]\n"
        "    steps:\n"
        "      - {id: s, role: writer}\n"
    )
    with pytest.raises(
        ConfigError, match="workflow 'mine', step 's': unknown agent 'nobody'"
    ) as caught:
        load_settings(path)
    error = caught.value
    assert error.path == str(path) and error.key == "workflows.mine.roles.writer"
    assert error.line == 4 and "codex" in str(error)


def test_shipped_workflows_keep_their_first_agents_and_name_the_others() -> None:
    flows = load_settings(cwd=Path(__file__).parent).workflows
    implement = flows["default"].steps[0]
    assert (implement.agent, implement.fallback) == ("codex", ["claude", "gemini"])  # type: ignore[union-attr]
    firsts = {name: [s.agent for s in _agent_steps(wf.steps)] for name, wf in flows.items()}
    assert firsts["default"] == ["codex", "gemini", "claude"]
    assert firsts["best-of-n"] == ["codex", "claude", "gemini", "claude"]
    assert firsts["parallel-review"] == ["codex", "gemini", "claude", "codex"]
    # Best-of-n's candidates are each one agent by design: no fallback there.
    assert [s.fallback for s in _agent_steps(flows["best-of-n"].steps)][:3] == [[], [], []]


def test_a_workspace_agent_list_is_guarded_by_trust(tmp_path: Path) -> None:
    ws = tmp_path / "cloned"
    ws.mkdir()
    config = ws / "orchestrator.yaml"
    flow = {
        "roles": {"implementer": ["codex", "claude"]},
        "steps": [{"id": "s", "role": "implementer"}],
    }
    config.write_text(yaml.safe_dump({"workflows": {"mine": flow}}))
    report = trust_store.report(ws)
    assert not report.trusted
    assert [f.key for f in report.findings] == ["workflows.mine.roles.implementer"]
    with pytest.raises(ConfigError, match=r"asks to change what runs: .*roles\.implementer"):
        load_settings(cwd=ws)
    trust_store.trust(ws)
    assert load_settings(cwd=ws).workflows["mine"].steps[0].fallback == ["claude"]  # type: ignore[union-attr]
    # Another order, or a step's own fallback list, is a change of what runs: trust again.
    flow["roles"] = {"implementer": ["claude", "codex"]}
    config.write_text(yaml.safe_dump({"workflows": {"mine": flow}}))
    assert trust_store.report(ws).changed
    trust_store.trust(ws)
    flow["steps"] = [{"id": "s", "agent": "claude", "fallback": ["gemini"]}]
    config.write_text(yaml.safe_dump({"workflows": {"mine": flow}}))
    report = trust_store.report(ws)
    assert report.changed and "workflows.mine.steps.0.fallback" in [f.key for f in report.findings]


def _agent_steps(steps: list[Any]) -> list[Any]:
    from orchestrator_nb.workflow.models import AgentStep, iter_steps

    return [s for s in iter_steps(steps) if isinstance(s, AgentStep)]
