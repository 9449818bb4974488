"""Logs: JSON lines per workspace, console at WARNING+, context from contextvars, redaction."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from orchestrator_nb.errors import AgentFailed, ConfigError
from orchestrator_nb.events import Attempt, RetryEvent, StepResult, ToolCallEvent, Usage
from orchestrator_nb.lifecycle import (
    AgentEventEmitted,
    BudgetWarning,
    FileWritten,
    GateDecided,
    GateRequested,
    Reverted,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
)
from orchestrator_nb.observe import logs
from orchestrator_nb.observe.logs import LogSubscriber, configure_logging, get_logger

SECRET = "sk-ant-api03-" + "Q" * 40


@pytest.fixture(autouse=True)
def _clean_state() -> Iterator[None]:
    saved = (logs.settings.file_level, logs.settings.console_level, logs.settings.console)
    structlog.contextvars.clear_contextvars()
    logs.set_current_sink(None)
    yield
    logs.settings.file_level, logs.settings.console_level, logs.settings.console = saved
    structlog.contextvars.clear_contextvars()
    logs.set_current_sink(None)


def _read(state: Path) -> list[dict[str, Any]]:
    files = sorted((state / "logs").glob("orchestrator-*.jsonl"))
    return [json.loads(x) for f in files for x in f.read_text().splitlines()]


def _run(sub: LogSubscriber, state: Path, ok: bool = True) -> None:
    result = StepResult(
        "claude",
        ok,
        text="done",
        model="sonnet",
        usage=Usage(10, 5, 0, 0.02),
        duration_s=1.5,
        attempts=[Attempt(1, ok, 1.5)],
        error=None if ok else AgentFailed(f"bad key {SECRET}", agent="claude", hint="retry"),
        stderr_tail=f"stderr with {SECRET}",
    )
    sub(RunStarted("run-1", "flow", f"task mentioning {SECRET}", str(state.parent), "sess"))
    sub(StepStarted("run-1", "impl", "claude", "agent", None, "prompt"))
    sub(AgentEventEmitted("run-1", "impl", "claude", RetryEvent(2, "overloaded", 1.0)))
    sub(AgentEventEmitted("run-1", "impl", "claude", ToolCallEvent("t1", "Write", {})))
    sub(StepFinished("run-1", "impl", "claude", result))
    sub(GateRequested("run-1", "gate", "ok?"))
    sub(GateDecided("run-1", "gate", "approve", "user"))
    sub(BudgetWarning("run-1", "max_tokens", 80, 100))
    sub(FileWritten("run-1", "impl", "a.py"))
    sub(Reverted("run-1", "impl", ["a.py"]))
    sub(RunFinished("run-1", "flow", "completed" if ok else "failed", ok, Usage(10, 5), 2.0))


def test_run_lines_with_task_executed(tmp_path: Path) -> None:
    state = tmp_path / ".orchestrator"
    _run(LogSubscriber(state), state)
    lines = _read(state)
    events = [x["event"] for x in lines]
    assert events == [
        "run_started",
        "step_started",
        "agent_retry",
        "task_executed",
        "gate_requested",
        "gate_decided",
        "budget_warning",
        "file_written",
        "reverted",
        "run_finished",
    ]  # tool_call is debug: below the default file level
    assert all(x["run_id"] == "run-1" and x["workflow"] == "flow" for x in lines)
    assert all(x["session"] == "sess" and "timestamp" in x and "level" in x for x in lines)
    task = next(x for x in lines if x["event"] == "task_executed")
    assert task["task_id"] == "run-1" and task["agent"] == "claude" and task["success"] is True
    assert task["duration_ms"] == 1500.0 and task["workflow"] == "flow"
    assert task["step"] == "impl" and task["attempt"] == 2  # bound by the retry event
    assert list(lines[0])[:3] == ["timestamp", "level", "event"]
    assert "step" not in lines[-1]  # unbound after the step finished
    assert all(SECRET not in json.dumps(x) for x in lines)


def test_failures_reach_the_console_redacted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / ".orchestrator"
    _run(LogSubscriber(state), state, ok=False)
    err = capsys.readouterr().err
    assert "step_failed" in err and "run_failed" in err and "budget_warning" in err
    assert "run_started" not in err and "task_executed" not in err  # INFO stays in the file
    assert SECRET not in err and "[REDACTED:sk-ant-]" in err
    failed = next(x for x in _read(state) if x["event"] == "step_failed")
    assert failed["error_kind"] == "failed" and failed["hint"] == "retry"
    assert SECRET not in json.dumps(failed)


def test_console_can_be_turned_off_and_levels_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / ".orchestrator"
    configure_logging(console=False, file_level="debug")
    _run(LogSubscriber(state), state, ok=False)
    assert capsys.readouterr().err == ""
    assert "tool_call" in [x["event"] for x in _read(state)]
    with pytest.raises(ConfigError, match="log level"):
        configure_logging(file_level="loud")


def test_other_loggers_follow_the_run(tmp_path: Path) -> None:
    state = tmp_path / ".orchestrator"
    sub = LogSubscriber(state)
    elsewhere = get_logger("orchestrator_nb.workspace")
    configure_logging()
    elsewhere.info("before_run")  # no run bound: no file to go to
    sub(RunStarted("run-2", "flow", "t", str(tmp_path)))
    sub(StepStarted("run-2", "impl", "codex", "agent"))
    elsewhere.info("snapshot_taken", files=3, token=SECRET)
    logging.getLogger("orchestrator_nb.lifecycle").warning("stdlib says %s", SECRET)
    sub(StepFinished("run-2", "impl", "codex", StepResult("codex", True)))
    sub(RunFinished("run-2", "flow", "completed", True, Usage(), 0.1))
    elsewhere.info("after_run")
    lines = _read(state)
    events = [x["event"] for x in lines]
    assert "before_run" not in events and "after_run" not in events
    snap = next(x for x in lines if x["event"] == "snapshot_taken")
    assert snap["run_id"] == "run-2" and snap["step"] == "impl" and snap["agent"] == "codex"
    assert snap["logger"] == "orchestrator_nb.workspace" and snap["token"] != SECRET
    bridged = next(x for x in lines if x["event"].startswith("stdlib says"))
    assert bridged["logger"] == "orchestrator_nb.lifecycle" and SECRET not in bridged["event"]


async def test_parallel_steps_keep_their_own_context(tmp_path: Path) -> None:
    state = tmp_path / ".orchestrator"
    sub = LogSubscriber(state)
    log = get_logger("orchestrator_nb.test")
    sub(RunStarted("run-3", "flow", "t", str(tmp_path)))

    async def child(step: str, agent: str) -> None:
        sub(StepStarted("run-3", step, agent, "agent"))
        for i in range(3):
            log.info("working", i=i)
            await asyncio.sleep(0)
        sub(StepFinished("run-3", step, agent, StepResult(agent, True)))

    await asyncio.gather(child("left", "claude"), child("right", "gemini"))
    sub(RunFinished("run-3", "flow", "completed", True, Usage(), 0.1))
    working = [x for x in _read(state) if x["event"] == "working"]
    assert len(working) == 6
    assert {(x["step"], x["agent"]) for x in working} == {("left", "claude"), ("right", "gemini")}


def test_exceptions_are_formatted_and_redacted(tmp_path: Path) -> None:
    sink = logs.sink_for(tmp_path)
    log = get_logger("orchestrator_nb.t", sink=sink)
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        log.exception("boom")
    line = _read(tmp_path)[0]
    assert line["level"] == "error" and "RuntimeError" in line["exception"]
    assert SECRET not in line["exception"]


def test_bound_and_routed_helpers(tmp_path: Path) -> None:
    log = get_logger()
    with logs.routed_to(tmp_path), logs.bound(run_id="r9", step=None):
        log.warning("inside")
    log.warning("outside")
    lines = _read(tmp_path)
    assert [x["event"] for x in lines] == ["inside"] and lines[0]["run_id"] == "r9"
    assert "step" not in lines[0]


def test_install_wires_logs_metrics_and_audit(tmp_path: Path) -> None:
    from orchestrator_nb.lifecycle import EventBus
    from orchestrator_nb.observe import default_subscribers, install
    from orchestrator_nb.observe.audit import verify
    from orchestrator_nb.observe.metrics import get_metrics

    state = tmp_path / ".orchestrator"
    assert len(default_subscribers(state)) == 3
    bus = EventBus()
    calls = get_metrics().registry.get_sample_value(
        "orchestrator_agent_calls_total", {"agent": "wired"}
    )
    uninstall = install(bus, state)
    bus.emit(RunStarted("run-w", "flow", "t", str(tmp_path)))
    bus.emit(StepFinished("run-w", "s", "wired", StepResult("wired", True)))
    bus.emit(RunFinished("run-w", "flow", "completed", True, Usage(), 0.1))
    uninstall()
    bus.emit(RunStarted("run-after", "flow", "t", str(tmp_path)))  # no subscriber any more
    assert {x["run_id"] for x in _read(state)} == {"run-w"}
    assert verify(state / "audit.jsonl").records == 3
    after = get_metrics().registry.get_sample_value(
        "orchestrator_agent_calls_total", {"agent": "wired"}
    )
    assert (after or 0) - (calls or 0) == 1
