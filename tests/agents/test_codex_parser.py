"""CodexParser over every recorded codex run, resume usage arithmetic, and failure kinds."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from orchestrator_nb.agents.codex import CodexDriver, CodexParser
from orchestrator_nb.events import (
    FileChange,
    FileChangeEvent,
    RetryEvent,
    SessionEvent,
    TextEvent,
    ToolCallEvent,
    ToolResultEvent,
    Usage,
    UsageEvent,
    WarningEvent,
)

DONE = "Done. I created hello.txt containing hi."
THREAD = "01a20b39-d914-75c1-baeb-3cb67640a9de"
COMMAND = "/bin/bash -lc \"printf 'hi\\\\n' > hello.txt && cat hello.txt\""
Run = Callable[..., Any]  # the `replay` fixture from conftest.py


def line(obj: dict[str, Any]) -> str:
    return json.dumps(obj)


def completed(input_tokens: int = 10, output_tokens: int = 2) -> str:
    usage = {"input_tokens": input_tokens, "cached_input_tokens": 0, "output_tokens": output_tokens}
    return line({"type": "turn.completed", "usage": usage})


def item(phase: str, **fields: Any) -> str:
    return line({"type": f"item.{phase}", "item": fields})


def test_exec_command(replay: Run) -> None:
    r = replay(CodexDriver().new_parser(), "codex_tool_exec_command.jsonl")
    v = r.verdict
    assert v.ok and v.error_kind is None
    assert v.text == DONE
    assert v.session_id == THREAD
    assert v.model is None  # codex's stream does not name the model
    assert v.usage == Usage(2400, 68, 400, None)
    assert v.changes == []  # a shell command's effects are not reported as file changes
    assert r.events[0] == SessionEvent(THREAD, None)
    assert r.of(ToolCallEvent) == [
        ToolCallEvent("item_1", "command_execution", {"command": COMMAND})
    ]
    assert r.of(ToolResultEvent) == [ToolResultEvent("item_1", True, "hi\n")]
    assert r.of(TextEvent) == [TextEvent(DONE)]
    warnings = r.of(WarningEvent)
    assert len(warnings) == 1 and isinstance(warnings[0], WarningEvent)
    assert warnings[0].message.startswith("Model metadata for `gpt-5.1-codex` not found")


def test_resume_reports_the_running_total_without_previous_usage(replay: Run) -> None:
    v = replay(CodexDriver().new_parser(), "codex_resume.jsonl").verdict
    assert v.ok
    assert v.text == DONE
    assert v.session_id == THREAD
    assert v.usage == Usage(3600, 102, 600, None)


def test_resume_subtracts_previous_usage(replay: Run) -> None:
    first = replay(CodexDriver().new_parser(), "codex_tool_exec_command.jsonl").verdict
    parser = CodexDriver().new_parser(previous_usage=first.usage)
    r = replay(parser, "codex_resume.jsonl")
    assert r.verdict.usage == Usage(1200, 34, 200, None)
    assert r.of(UsageEvent) == [UsageEvent(Usage(1200, 34, 200, None))]
    assert parser.thread_usage == Usage(3600, 102, 600, None)


def test_previous_usage_above_total_is_clamped(replay: Run) -> None:
    r = replay(CodexParser(previous_usage=Usage(5000, 1, 0)), "codex_resume.jsonl")
    assert r.verdict.usage == Usage(0, 101, 600, None)
    assert any(isinstance(e, WarningEvent) and "clamped" in e.message for e in r.events)


def test_rate_limit(replay: Run) -> None:
    r = replay(CodexDriver().new_parser(), "codex_rate_limit_429.jsonl")
    v = r.verdict
    assert not v.ok
    assert v.error_kind == "rate_limit"
    assert v.retryable
    assert v.error_message == "exceeded retry limit, last status: 429 Too Many Requests"
    retries = [e for e in r.events if isinstance(e, RetryEvent)]
    assert [e.attempt for e in retries] == [1, 2, 3, 4, 5]
    assert retries[0].reason.startswith("Reconnecting... 1/5")
    assert v.session_id == "01a20b3a-1662-7650-a5cd-c94ea0f67350"
    # turn.failed repeats the last "error" event: reported once.
    failed = [e for e in r.events if isinstance(e, WarningEvent) and "exceeded retry" in e.message]
    assert len(failed) == 1


def test_reconnects_then_other_failure_is_retryable(replay: Run) -> None:
    lines = [
        line({"type": "thread.started", "thread_id": "t"}),
        line({"type": "error", "message": "Reconnecting... 1/5 (stream disconnected)"}),
        line(
            {"type": "turn.failed", "error": {"message": "stream disconnected before completion"}}
        ),
    ]
    v = replay(CodexParser(), lines, 1).verdict
    assert v.error_kind == "failed"
    assert v.retryable
    assert v.hint is not None and "retry" in v.hint


def test_plain_turn_failure_is_not_retryable(replay: Run) -> None:
    lines = [line({"type": "turn.failed", "error": {"message": "model refused the request"}})]
    v = replay(CodexParser(), lines, 1).verdict
    assert v.error_kind == "failed" and not v.retryable
    assert v.error_message == "model refused the request"


def test_unauthorized(replay: Run) -> None:
    message = "unexpected status 401 Unauthorized: Incorrect API key provided"
    v = replay(CodexParser(), [line({"type": "turn.failed", "error": {"message": message}})], 1)
    assert v.verdict.error_kind == "auth"
    assert v.verdict.hint is not None and "codex login" in v.verdict.hint


def test_missing_turn_completed_is_a_crash(replay: Run, transcript: Callable[..., Any]) -> None:
    lines = transcript("codex_tool_exec_command.jsonl")[:-1]
    v = replay(CodexParser(), lines, 0).verdict
    assert v.error_kind == "crashed"
    assert v.text == DONE


def test_killed_while_reconnecting_forever(replay: Run) -> None:
    lines = [line({"type": "error", "message": f"Reconnecting... {n}/5 (dns)"}) for n in (1, 2)]
    v = replay(CodexParser(), lines, None).verdict
    assert v.error_kind == "crashed"


def test_options_after_resume_are_a_config_error(replay: Run) -> None:
    stderr = "error: unexpected argument '--sandbox' found\n\nUsage: codex exec resume [OPTIONS]\n"
    v = replay(CodexParser(), [], 2, stderr).verdict
    assert v.error_kind == "config"


def test_file_change_items(replay: Run) -> None:
    changes = [
        {"path": "new.txt", "kind": "add"},
        {"path": "old.txt", "kind": "delete"},
        {"path": "main.py", "kind": "update"},
    ]
    lines = [
        item("started", id="i1", type="file_change", changes=changes, status="in_progress"),
        item("completed", id="i1", type="file_change", changes=changes, status="completed"),
        item("completed", id="i2", type="file_change", changes=[{"path": "x"}], status="failed"),
        item("completed", id="i3", type="agent_message", text="patched"),
        completed(),
    ]
    r = replay(CodexParser(), lines)
    assert r.of(FileChangeEvent) == [
        FileChangeEvent("new.txt", "added"),
        FileChangeEvent("old.txt", "deleted"),
        FileChangeEvent("main.py", "modified"),
    ]
    assert len(r.of(ToolCallEvent)) == 2  # i2 completed without a started line
    v = r.verdict
    assert v.ok
    assert v.changes == [
        FileChange("new.txt", "added"),
        FileChange("old.txt", "deleted"),
        FileChange("main.py", "modified"),
    ]


def test_every_command_failed_is_a_failure(replay: Run) -> None:
    lines = [
        item(
            "completed",
            id="c1",
            type="command_execution",
            command="touch x",
            aggregated_output="touch: Permission denied\n",
            exit_code=1,
            status="failed",
        ),
        item("completed", id="m", type="agent_message", text="Done."),
        completed(),
    ]
    v = replay(CodexParser(), lines, 0).verdict
    assert not v.ok
    assert v.error_kind == "failed"
    assert v.error_message == "all 1 tool call failed; last: touch: Permission denied"
    assert v.hint is not None and "danger-full-access" in v.hint
    assert v.text == "Done."


def test_mcp_tool_call_and_unknown_items(replay: Run) -> None:
    lines = [
        item(
            "started", id="t", type="mcp_tool_call", server="gh", tool="search", arguments={"q": 1}
        ),
        item(
            "completed",
            id="t",
            type="mcp_tool_call",
            server="gh",
            tool="search",
            result={"content": []},
            error=None,
            status="completed",
        ),
        item("completed", id="r", type="reasoning", text="thinking"),
        completed(),
    ]
    r = replay(CodexParser(), lines)
    assert r.of(ToolCallEvent) == [ToolCallEvent("t", "gh/search", {"q": 1})]
    assert r.verdict.ok
    assert r.verdict.text == ""


def test_resume_of_unknown_thread_is_a_config_error(replay: Run) -> None:
    # Recorded from codex 0.169.0: the useful line sits above a stack backtrace.
    error = (
        "Error: thread/resume: thread/resume failed: no rollout found for thread id "
        "01a20b63-3a5a-7811-8886-0d3d4e8149a5 (code -32600)"
    )
    backtrace = "".join(f"  {n}: <unknown>\n" for n in range(12))
    stderr = f"WARNING: proceeding, even though we could not create PATH aliases\n{error}\n\n"
    v = replay(CodexParser(), [], 1, f"{stderr}Stack backtrace:\n{backtrace}").verdict
    assert v.error_kind == "config"
    assert v.error_message == f"codex could not resume: {error}"
    assert v.hint is not None and "home directory" in v.hint


def test_changes_are_the_runs_net_effect(replay: Run) -> None:
    def patch(item_id: str, path: str, kind: str) -> str:
        changes = [{"path": path, "kind": kind}]
        return item(
            "completed", id=item_id, type="file_change", changes=changes, status="completed"
        )

    lines = [
        patch("a", "tmp.txt", "add"),
        patch("b", "tmp.txt", "delete"),
        patch("c", "new.py", "add"),
        patch("d", "new.py", "update"),
        completed(),
    ]
    r = replay(CodexParser(), lines)
    assert len(r.of(FileChangeEvent)) == 4  # the events show every step
    assert r.verdict.changes == [FileChange("new.py", "added")]
