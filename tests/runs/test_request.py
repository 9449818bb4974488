"""The run request and the run-level errors, without agents: what a caller gets for bad input."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from orchestrator_nb.errors import (
    BudgetExceeded,
    CircuitOpen,
    ConfigError,
    OrchestratorError,
    RunError,
    RunTimeout,
    WorkspaceError,
)
from orchestrator_nb.events import StepResult, Usage
from orchestrator_nb.runs import RunOptions, RunRequest
from orchestrator_nb.sessions import Session
from orchestrator_nb.workflow.result import WorkflowResult


def test_bad_requests_fail_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the task is empty"):
        RunRequest.build("   ", workspace=tmp_path)
    with pytest.raises(ConfigError, match="control characters"):
        RunRequest.build("hi\x1b[2J", workspace=tmp_path)
    with pytest.raises(ConfigError, match="invalid agent name"):
        RunRequest.build("hi", agent="../claude", workspace=tmp_path)
    with pytest.raises(ConfigError, match="either a workflow or an agent"):
        RunRequest.build("hi", agent="claude", workflow="review", workspace=tmp_path)
    with pytest.raises(WorkspaceError, match="not an existing folder"):
        RunRequest.build("hi", workspace=tmp_path / "missing")
    with pytest.raises(ConfigError, match="unknown override"):
        RunOptions.from_overrides({"max_iteration": 2})
    with pytest.raises(ConfigError, match="timeout"):
        RunOptions.from_overrides({"timeout": -1})


def test_a_followup_belongs_to_its_workspace(tmp_path: Path) -> None:
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    session = Session.create("s")
    turn = session.begin_turn("write a.txt", workflow="solo", workspace=here)
    done = StepResult("codex", True, text="ok", session_id="thread-1", usage=Usage(10, 2))
    done.session_usage = Usage(30, 6)
    session.record_step(turn, done)
    session.finish_turn(turn, "completed")
    same = RunRequest.build("now add b.txt", workspace=here, session=session)
    other = RunRequest.build("now add b.txt", workspace=there, session=session)
    new = RunRequest.build("now add b.txt", workspace=here, session=session, force_followup=False)
    assert same.followup and same.prompt.startswith("Context: this continues")
    point = same.resume_points()["codex"]
    assert (point.session_id, point.usage) == ("thread-1", Usage(30, 6))
    assert not other.followup and other.resume_points() == {} and other.prompt == "now add b.txt"
    assert not new.followup and new.resume_points() == {}
    assert str(other.decision) == "● new task (first turn in this workspace)"


def test_run_errors_are_one_tree_and_survive_a_round_trip() -> None:
    for error in (
        BudgetExceeded("max_tokens", 120, 100),
        CircuitOpen("codex", 30.0, failures=3),
        RunTimeout("too slow", hint="pass a longer --timeout"),
    ):
        assert isinstance(error, RunError) and isinstance(error, OrchestratorError)
        again = pickle.loads(pickle.dumps(error))
        assert (type(again), again.kind, again.message) == (type(error), error.kind, error.message)
    result = WorkflowResult(
        "r1", "solo", "t", "timeout", error=RunTimeout("too slow", hint="pass a longer --timeout")
    )
    with pytest.raises(RunTimeout, match="too slow"):
        result.raise_for_error()
    back = WorkflowResult.from_dict(result.to_dict())
    assert back.outcome == "timeout" and isinstance(back.error, RunTimeout)
    assert back.error.hint == "pass a longer --timeout"
    ok = WorkflowResult("r2", "solo", "t", "completed")
    assert ok.raise_for_error() is ok
