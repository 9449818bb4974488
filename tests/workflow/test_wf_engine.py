"""Engine logic with a scripted plain-text CLI behind the real `command` driver and runner."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator_nb.config import AgentConfig, Settings, load_settings
from orchestrator_nb.errors import ConfigError, RevertConflict
from orchestrator_nb.lifecycle import LifecycleEvent
from orchestrator_nb.workflow import Engine, aresume, arun
from orchestrator_nb.workflow.models import Workflow

SCRIPTED = Path(__file__).parents[1] / "fakes" / "scripted_cli.py"


class Harness:
    """A workspace, scripted agents a/b/c, and the calls they received."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, git: bool) -> None:
        self.ws = tmp_path / "ws"
        self.ws.mkdir()
        self.rules = tmp_path / "rules.json"
        self.calls = tmp_path / "calls.jsonl"
        monkeypatch.setenv("CALLS_LOG", str(self.calls))
        if git:
            for args in (
                ["init", "-q"],
                ["config", "user.email", "t@e"],
                ["config", "user.name", "t"],
            ):
                subprocess.run(["git", *args], cwd=self.ws, check=True)
            (self.ws / "README.md").write_text("# ws\n")
            subprocess.run(["git", "add", "-A"], cwd=self.ws, check=True)
            subprocess.run(["git", "commit", "-qm", "init"], cwd=self.ws, check=True)

    def settings(self, rules: list[dict[str, Any]], workflows: str, **limits: Any) -> Settings:
        self.rules.write_text(json.dumps(rules))
        argv = [sys.executable, str(SCRIPTED), str(self.rules), "{prompt}"]
        agents = {
            name: AgentConfig(driver="command", argv=argv, retries=0, retry_wait=0, timeout=60)
            for name in ("a", "b", "c")
        }
        flows = {k: Workflow.model_validate(v) for k, v in yaml.safe_load(workflows).items()}
        base = load_settings(cwd=self.ws)
        return Settings(
            agents=agents, workflows=flows, limits=base.limits.model_copy(update=limits)
        )

    def prompts(self) -> list[str]:
        if not self.calls.exists():
            return []
        lines = [json.loads(x) for x in self.calls.read_text().splitlines()]
        return [x["prompt"] for x in lines if x["rule"] >= 0]


@pytest.fixture
def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(tmp_path, monkeypatch, git=False)


@pytest.fixture
def hg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(tmp_path, monkeypatch, git=True)


async def test_sequential_steps_pass_text_and_track_changes(h: Harness) -> None:
    settings = h.settings(
        [
            {"match": "WRITE", "write": {"calc.py": "x = 1\n"}, "say": "wrote calc.py"},
            {"match": "CHECK", "say": "checked"},
        ],
        """
        flow:
          steps:
            - {id: impl, agent: a, prompt: "WRITE {{ task }}"}
            - {id: check, agent: b, prompt: "CHECK after: {{ steps.impl.text }} {\\"json\\": 1}"}
        """,
    )
    events: list[LifecycleEvent] = []
    result = await arun(
        "the task", "flow", workspace=h.ws, config=settings, subscribers=[events.append]
    )
    assert result.ok, result.error
    assert [s.step_id for s in result.steps] == ["impl", "check"]
    assert h.prompts()[1] == 'CHECK after: wrote calc.py {"json": 1}'  # literal braces kept
    assert result.step("impl").changes[0].path == "calc.py"
    assert "+x = 1" in result.step("impl").diff
    assert [c.path for c in result.changes] == ["calc.py"]
    assert result.text == "checked"
    kinds = [type(e).__name__ for e in events if not type(e).__name__.startswith("Agent")]
    assert kinds == [
        "RunStarted",
        "StepStarted",
        "StepFinished",
        "StepStarted",
        "StepFinished",
        "RunFinished",
    ]


LOOP = """
flow:
  steps:
    - id: loop
      kind: loop
      max_iterations: 4
      review_step: review
      min_suggestions_threshold: 1
      steps:
        - {id: review, agent: a, prompt: "REVIEW round {{ iteration }}"}
        - {id: refine, agent: b, prompt: "REFINE {{ steps.review.text }}"}
"""


async def test_loop_stops_when_review_has_fewer_suggestions_than_threshold(h: Harness) -> None:
    settings = h.settings(
        [
            {"match": "REVIEW round 1", "say": '```json\n{"suggestions": ["x", "y"]}\n```'},
            {"match": "REVIEW round 2", "say": '```json\n{"suggestions": []}\n```'},
            {"match": "REFINE", "say": "refined"},
        ],
        LOOP,
    )
    result = await arun("t", "flow", workspace=h.ws, config=settings)
    assert result.ok
    assert [(s.step_id, s.iteration) for s in result.steps] == [
        ("review", 1),
        ("refine", 1),
        ("review", 2),
    ]
    assert "loop: done after 2 rounds: the review in round 2 made 0 suggestions, fewer than 1" in (
        result.notes
    )


async def test_loop_ends_at_max_iterations_override(h: Harness) -> None:
    settings = h.settings(
        [{"match": "REVIEW", "say": "- one\n- two"}, {"match": "REFINE", "say": "refined"}], LOOP
    )
    result = await arun("t", "flow", workspace=h.ws, config=settings, max_iterations=2)
    assert len(result.steps) == 4
    assert any(
        "stopped after 2 rounds, the most it may run (max_iterations=2)" in n for n in result.notes
    )


async def test_branch_and_optional_failure(h: Harness) -> None:
    settings = h.settings(
        [
            {"match": "FLAKY", "say": "broken", "exit": 3},
            {"match": "GOOD", "say": "LGTM"},
            {"match": "THEN", "say": "then ran"},
        ],
        """
        flow:
          steps:
            - {id: flaky, agent: a, prompt: FLAKY, optional: true}
            - {id: good, agent: b, prompt: GOOD}
            - id: pick
              kind: branch
              when: "not steps.flaky.ok and 'LGTM' in steps.good.text"
              then: [{id: on_then, agent: c, prompt: THEN}]
              else: [{id: on_else, agent: c, prompt: ELSE}]
        """,
    )
    result = await arun("t", "flow", workspace=h.ws, config=settings)
    assert result.ok
    assert [s.step_id for s in result.steps] == ["flaky", "good", "on_then"]
    assert result.step("flaky").error_kind == "failed"


async def test_required_failure_fails_the_run(h: Harness) -> None:
    settings = h.settings(
        [{"match": "BAD", "say": "no", "exit": 2}],
        "flow: {steps: [{id: bad, agent: a, prompt: BAD}, {id: later, agent: b}]}",
    )
    result = await arun("t", "flow", workspace=h.ws, config=settings)
    assert result.outcome == "failed" and "step bad failed" in (result.error or "")
    assert [s.step_id for s in result.steps] == ["bad"]


@pytest.mark.parametrize(
    ("policy", "outcome", "ran"),
    [
        ("approve", "completed", ["before", "after"]),
        ("reject", "cancelled", ["before"]),
        ("fail", "failed", ["before"]),
    ],
)
async def test_gate_policy_in_batch(h: Harness, policy: str, outcome: str, ran: list[str]) -> None:
    settings = h.settings(
        [{"match": "", "say": "done"}],
        f"""
        flow:
          steps:
            - {{id: before, agent: a}}
            - id: ok
              kind: gate
              message: "Apply {{{{ steps.before.text }}}}?"
              policy: {policy}
            - {{id: after, agent: b}}
        """,
    )
    result = await arun("t", "flow", workspace=h.ws, config=settings)
    assert result.outcome == outcome
    assert [s.step_id for s in result.steps] == ran
    assert f"gate ok: {policy} by policy" in result.notes


async def test_gate_handler_can_edit_the_task(h: Harness) -> None:
    settings = h.settings(
        [{"match": "", "say": "done"}],
        "flow: {steps: [{id: g, kind: gate}, {id: after, agent: a, prompt: 'DO {{ task }}'}]}",
    )

    async def gate(step: Any, message: str) -> tuple[str, str]:
        return ("edit", "the edited task")

    result = await arun("original", "flow", workspace=h.ws, config=settings, gate=gate)
    assert result.ok and h.prompts() == ["DO the edited task"]


async def test_wall_budget_cancels_running_agents(h: Harness) -> None:
    settings = h.settings(
        [{"match": "", "say": "slow", "sleep": 30}], "flow: {steps: [{id: slow, agent: a}]}"
    )
    result = await arun("t", "flow", workspace=h.ws, config=settings, max_wall_s=0.5)
    assert result.outcome == "budget_exceeded"
    assert "max_wall_s" in (result.error or "")
    assert result.step("slow").error_kind == "cancelled"
    assert not _pids_running(str(h.rules))


async def test_parallel_shared_runs_children_at_once(h: Harness) -> None:
    settings = h.settings(
        [{"match": "P", "say": "p", "sleep": 0.5}],
        """
        flow:
          steps:
            - id: group
              kind: parallel
              steps: [{id: p1, agent: a, prompt: P1}, {id: p2, agent: b, prompt: P2}]
        """,
    )
    result = await arun("t", "flow", workspace=h.ws, config=settings)
    assert result.ok
    lines = [json.loads(x) for x in h.calls.read_text().splitlines()]
    starts = sorted(x["start"] for x in lines if x["rule"] >= 0)
    ends = sorted(x["end"] for x in lines if x["rule"] < 0)
    assert starts[1] < ends[0]  # the second started before the first ended


async def test_parallel_worktrees_merge_all_and_report_conflicts(hg: Harness) -> None:
    settings = hg.settings(
        [
            {"match": "ONE", "write": {"one.py": "1\n", "README.md": "# one\n"}, "say": "one"},
            {"match": "TWO", "write": {"two.py": "2\n", "README.md": "# two\n"}, "say": "two"},
        ],
        """
        flow:
          steps:
            - id: group
              kind: parallel
              merge: all
              steps: [{id: one, agent: a, prompt: ONE}, {id: two, agent: b, prompt: TWO}]
        """,
    )
    result = await arun("t", "flow", workspace=hg.ws, config=settings)
    assert result.ok
    cwds = {json.loads(x).get("cwd") for x in hg.calls.read_text().splitlines()} - {None}
    assert str(hg.ws) not in cwds  # each child worked in its own worktree
    assert (hg.ws / "one.py").read_text() == "1\n"
    assert (hg.ws / "README.md").read_text() == "# one\n"  # never silently overwritten
    assert not (hg.ws / "two.py").exists()
    assert any("two NOT applied, conflicts in README.md" in n for n in result.notes)
    assert "+# two" in result.step("two").diff
    branches = subprocess.run(["git", "branch"], cwd=hg.ws, capture_output=True, text=True).stdout
    assert branches.strip() == "* main" or branches.strip() == "* master"


async def test_best_of_n_applies_only_the_pick(hg: Harness) -> None:
    settings = hg.settings(
        [
            {"match": "IMPL", "write": {"answer.py": "ANSWER\n"}, "say": "made"},
            {"match": "JUDGE", "say": "Both fine, b is simpler.\nPICK: cand_b"},
        ],
        """
        flow:
          steps:
            - id: cands
              kind: parallel
              merge: pick
              pick_by: judge
              steps:
                - {id: cand_a, agent: a, prompt: IMPL a}
                - {id: cand_b, agent: b, prompt: IMPL b}
            - {id: judge, agent: c, prompt: "JUDGE {{ steps.cand_a.diff }} {{ steps.cand_b.diff }}"}
        """,
    )
    result = await arun("t", "flow", workspace=hg.ws, config=settings)
    assert result.ok, result.error
    assert "+ANSWER" in hg.prompts()[-1]  # the judge saw the candidates' diffs
    assert any("applied cand_b" in n for n in result.notes)
    assert not any("applied cand_a" in n for n in result.notes)
    assert (hg.ws / "answer.py").read_text() == "ANSWER\n"


async def test_resume_skips_finished_steps(h: Harness) -> None:
    settings = h.settings(
        [
            {"match": "FIRST", "say": "first done"},
            {"match": "SECOND", "say": "second", "sleep": 30},
        ],
        "flow: {steps: [{id: s1, agent: a, prompt: FIRST}, {id: s2, agent: b, prompt: SECOND}]}",
    )
    task = asyncio.ensure_future(arun("t", "flow", workspace=h.ws, config=settings))
    deadline = time.monotonic() + 60
    while len(h.prompts()) < 2:  # until the second step's agent runs, then "kill the kernel"
        assert time.monotonic() < deadline, "the second step never started"
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    run_id = next((h.ws / ".orchestrator" / "runs").iterdir()).name
    rules = json.loads(h.rules.read_text())
    rules[1]["sleep"] = 0
    h.rules.write_text(json.dumps(rules))
    result = await aresume(run_id, workspace=h.ws, config=settings)
    assert result.ok
    assert h.prompts() == ["FIRST", "SECOND", "SECOND"]  # s1 was not called again
    assert [s.step_id for s in result.steps] == ["s1", "s2"]


async def test_a_resumed_run_goes_through_the_front_door(h: Harness) -> None:
    """Resume is a request like any other: the journal gives its task, workflow and timeout,
    and the run service executes it, so it is logged like a fresh run."""
    from orchestrator_nb.lifecycle import RunFinished, RunStarted
    from orchestrator_nb.runs import RunRequest, RunService

    settings = h.settings(
        [{"match": "FIRST", "say": "first done"}, {"match": "SECOND", "say": "x", "sleep": 30}],
        "flow: {steps: [{id: s1, agent: a, prompt: FIRST}, {id: s2, agent: b, prompt: SECOND}]}",
    )
    task = asyncio.ensure_future(
        arun("the task", "flow", workspace=h.ws, config=settings, timeout=600)
    )
    deadline = time.monotonic() + 60
    while len(h.prompts()) < 2:
        assert time.monotonic() < deadline, "the second step never started"
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    run_id = next((h.ws / ".orchestrator" / "runs").iterdir()).name
    request = RunRequest.for_resume(run_id, workspace=h.ws, config=settings)
    assert (request.task, request.workflow, request.resume_run) == ("the task", "flow", run_id)
    assert request.options.timeout == 600
    rules = json.loads(h.rules.read_text())
    rules[1]["sleep"] = 0
    h.rules.write_text(json.dumps(rules))
    logs = h.ws / ".orchestrator" / "logs"
    before = sum(f.read_text().count(run_id) for f in logs.rglob("*") if f.is_file())
    seen: list[LifecycleEvent] = []
    result = await RunService().execute(request, subscribers=[seen.append])
    assert result.ok and result.run_id == run_id
    assert h.prompts() == ["FIRST", "SECOND", "SECOND"]
    assert [type(e) for e in seen if isinstance(e, (RunStarted, RunFinished))] == [
        RunStarted,
        RunFinished,
    ]
    after = sum(f.read_text().count(run_id) for f in logs.rglob("*") if f.is_file())
    assert after > before  # the resumed run is in the structured log


async def test_cached_step_is_not_called_twice(h: Harness) -> None:
    settings = h.settings(
        [{"match": "", "say": "answer {n}"}],
        "flow: {steps: [{id: s, agent: a, prompt: SAME, cache: true}]}",
    )
    engine = Engine(settings)
    first = await arun("t", "flow", workspace=h.ws, engine=engine)
    second = await arun("t", "flow", workspace=h.ws, engine=engine)
    assert first.text == second.text == "answer 1"
    assert second.steps[0].cached and len(h.prompts()) == 1


async def test_dry_run_plans_without_calling(h: Harness) -> None:
    settings = load_settings(cwd=h.ws)
    result = await arun("Write calc.py", "default", workspace=h.ws, config=settings, dry_run=True)
    text = str(result)
    assert "implement (agent) [codex]" in text and "Write calc.py" in text
    assert "review_loop (loop)" in text and "(prompt depends on earlier steps)" in text
    assert not h.prompts()


async def test_template_error_names_step_and_line(h: Harness) -> None:
    settings = h.settings([], 'flow: {steps: [{id: s, agent: a, prompt: "ok\\n{{ nope.x }}"}]}')
    result = await arun("t", "flow", workspace=h.ws, config=settings)
    assert result.outcome == "failed"
    assert "s" in (result.error or "") and "line 2" in (result.error or "")


async def test_bad_names_raise_config_errors(h: Harness) -> None:
    with pytest.raises(ConfigError, match="unknown workflow 'nope'"):
        await arun("t", "nope", workspace=h.ws)
    with pytest.raises(ConfigError, match="unknown override"):
        await arun("t", "default", workspace=h.ws, max_iteration=3)
    with pytest.raises(ConfigError, match="control characters"):
        await arun("t\x00", "default", workspace=h.ws)


def _pids_running(name: str) -> list[int]:
    found = []
    for pid in Path("/proc").iterdir():
        if pid.name.isdigit():
            try:
                if name in (pid / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(pid.name))
            except OSError:
                pass
    return found


async def test_a_run_can_be_reverted_from_its_result(h: Harness) -> None:
    (h.ws / "keep.txt").write_text("original\n")
    settings = h.settings(
        [
            {"match": "ONE", "write": {"keep.txt": "changed\n", "new.txt": "n\n"}, "say": "1"},
            {"match": "TWO", "write": {"two.txt": "2\n"}, "say": "2"},
        ],
        "flow: {steps: [{id: one, agent: a, prompt: ONE}, {id: two, agent: b, prompt: TWO}]}",
    )
    result = await arun("t", "flow", workspace=h.ws, config=settings)
    result.revert(step="two")
    assert not (h.ws / "two.txt").exists() and (h.ws / "new.txt").exists()
    (h.ws / "keep.txt").write_text("edited by the user since\n")
    with pytest.raises(RevertConflict):
        result.revert()
    assert (h.ws / "keep.txt").read_text() == "edited by the user since\n"  # nothing lost
    result.revert(force=True)
    assert (h.ws / "keep.txt").read_text() == "original\n"
    assert not (h.ws / "new.txt").exists()


async def test_concurrent_runs_on_one_engine_keep_their_own_audit_trails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(tmp_path, monkeypatch, git=False)
    other = tmp_path / "other"
    other.mkdir()
    settings = h.settings(
        [{"match": "", "say": "done", "sleep": 0.3}], "flow: {steps: [{id: s, agent: a}]}"
    )
    engine = Engine(settings)
    seen: list[str] = []
    engine.bus.subscribe(lambda e: seen.append(type(e).__name__))
    one, two = await asyncio.gather(
        arun("t", "flow", workspace=h.ws, engine=engine),
        arun("t", "flow", workspace=other, engine=engine),
    )
    for ws, result in ((h.ws, one), (other, two)):
        audit = (ws / ".orchestrator" / "audit.jsonl").read_text()
        assert result.run_id in audit
        assert ({one.run_id, two.run_id} - {result.run_id}).pop() not in audit
    assert seen.count("RunFinished") == 2  # the engine's own subscribers still see both


async def test_interrupting_a_parallel_step_leaves_no_agent_running(h: Harness) -> None:
    settings = h.settings(
        # P1 stops at once on SIGINT; P2 only on the SIGTERM that follows after the grace
        # period, so the group's cancel returns only when the slow one is gone too.
        [
            {"match": "P1", "say": "p", "sleep": 30},
            {"match": "P2", "say": "p", "sleep": 30, "ignore_sigint": True},
        ],
        """
        flow:
          steps:
            - id: group
              kind: parallel
              steps: [{id: p1, agent: a, prompt: P1}, {id: p2, agent: b, prompt: P2}]
        """,
    )
    task = asyncio.ensure_future(arun("t", "flow", workspace=h.ws, config=settings))
    deadline = time.monotonic() + 60
    while len(h.prompts()) < 2:  # both logged their call, so P2 already ignores SIGINT
        assert time.monotonic() < deadline, "the agents never started"
        await asyncio.sleep(0.05)
    task.cancel()  # what the kernel's Interrupt button does
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not _pids_running(str(h.rules))  # every child's agent already gone on return


async def test_a_loop_that_meets_its_stop_condition_says_so_in_plain_words(h: Harness) -> None:
    flow = LOOP.replace("      min_suggestions_threshold: 1\n", "      until: 'true'\n")
    settings = h.settings(
        [{"match": "REVIEW", "say": "fine"}, {"match": "REFINE", "say": "refined"}], flow
    )
    result = await arun("t", "flow", workspace=h.ws, config=settings)
    assert result.ok and len(result.steps) == 2
    assert "loop: done after 1 round: its stop condition (true) was met" in result.notes
