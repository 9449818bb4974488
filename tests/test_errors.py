"""The one error tree: kinds, builtin bases, readable messages, and pickling."""

from __future__ import annotations

import pickle

import pytest

from orchestrator_nb.errors import (
    ERROR_KINDS,
    AgentError,
    AgentNotInstalled,
    AgentTimeout,
    ConfigError,
    OrchestratorError,
    RevertConflict,
    UnsafePathError,
)


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_for_kind_builds_the_matching_class(kind: str) -> None:
    err = AgentError.for_kind(kind, "boom", agent="codex", exit_code=1, hint="do x")
    assert err.kind == kind
    assert isinstance(err, AgentError) and isinstance(err, OrchestratorError)
    assert str(err).startswith(f"[codex] {kind}: boom (exit 1)")
    assert "hint: do x" in str(err)


def test_builtin_bases_mean_the_same() -> None:
    assert issubclass(AgentTimeout, TimeoutError)
    assert issubclass(AgentNotInstalled, FileNotFoundError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(UnsafePathError, ValueError)


def test_errors_survive_pickling_with_their_context() -> None:
    err = AgentError.for_kind(
        "rate_limit",
        "429",
        agent="gemini",
        argv=["gemini", "-p", "x"],
        exit_code=173,
        stderr_tail="quota",
        retry_after_s=3.0,
    )
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert (back.agent, back.argv, back.exit_code, back.retry_after_s, back.retryable) == (
        "gemini",
        ["gemini", "-p", "x"],
        173,
        3.0,
        True,
    )
    for other in (
        ConfigError("bad", path="a.yaml", line=3, key="x"),
        UnsafePathError("../x", "escapes the workspace"),
        RevertConflict(["a.py"]),
    ):
        again = pickle.loads(pickle.dumps(other))
        assert str(again) == str(other) and type(again) is type(other)


def test_only_rate_limits_retry_by_default() -> None:
    assert AgentError.for_kind("rate_limit", "x").retryable
    assert not AgentError.for_kind("auth", "x").retryable
    assert AgentError.for_kind("failed", "x", retryable=True).retryable
