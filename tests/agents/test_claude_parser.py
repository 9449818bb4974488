"""ClaudeParser over every recorded claude run, plus the edge cases the recordings imply."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator_nb.agents.base import AgentRequest
from orchestrator_nb.agents.claude import ClaudeDriver
from orchestrator_nb.events import (
    FileChange,
    FileChangeEvent,
    RawEvent,
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
HELLO = "/home/user/project/hello.txt"
Run = Callable[..., Any]  # the `replay` fixture from conftest.py


def parser() -> Any:
    return ClaudeDriver().new_parser()


def result_line(**fields: Any) -> str:
    base: dict[str, Any] = {"type": "result", "subtype": "success", "is_error": False}
    return json.dumps({**base, **fields})


def test_write_with_accept_edits(replay: Run) -> None:
    r = replay(parser(), "claude_tool_write_acceptEdits.jsonl")
    v = r.verdict
    assert v.ok and v.error_kind is None
    assert v.text == DONE
    assert v.session_id == "9e656b52-4cb5-4b9a-a613-ce5805dc7d02"
    assert v.model == "claude-sonnet-4-5"
    assert v.usage == Usage(240, 52, 0, 0.0015)
    assert v.changes == [FileChange(HELLO, "added")]
    assert r.events[0] == SessionEvent("9e656b52-4cb5-4b9a-a613-ce5805dc7d02", "claude-sonnet-4-5")
    assert r.of(ToolCallEvent) == [
        ToolCallEvent("toolu_mock_d012b0ec4126", "Write", {"file_path": HELLO, "content": "hi\n"})
    ]
    (result,) = r.of(ToolResultEvent)
    assert isinstance(result, ToolResultEvent) and result.ok
    assert result.output.startswith("File created successfully")
    assert r.of(FileChangeEvent) == [FileChangeEvent(HELLO, "added")]
    assert r.of(TextEvent) == [TextEvent("I'll create the file."), TextEvent(DONE)]
    # Every per-block assistant line repeats the usage; only the final result's counts.
    assert r.of(UsageEvent) == [UsageEvent(Usage(240, 52, 0, 0.0015))]


def test_resume(replay: Run) -> None:
    v = replay(parser(), "claude_resume.jsonl").verdict
    assert v.ok
    assert v.text == DONE
    assert v.session_id == "9e656b52-4cb5-4b9a-a613-ce5805dc7d02"
    assert v.usage == Usage(120, 12, 0, 0.00054)
    assert v.changes == []


def test_permission_denied_is_a_failure(replay: Run) -> None:
    r = replay(parser(), "claude_permission_denied_default_mode.jsonl")
    v = r.verdict
    assert not v.ok
    assert v.error_kind == "failed"
    assert v.error_message == (f"claude was refused permission for 1 tool call: Write({HELLO})")
    assert v.hint is not None and "--permission-mode acceptEdits" in v.hint
    assert v.text == DONE  # what claude claimed is kept, but it is not trusted
    assert v.changes == []
    assert v.usage == Usage(240, 52, 0, 0.0025)
    assert WarningEvent("permission denied: Write") in r.events
    assert not v.retryable


def test_max_turns(replay: Run) -> None:
    v = replay(parser(), "claude_error_max_turns.jsonl").verdict
    assert not v.ok
    assert v.error_kind == "failed"
    assert v.error_message == "Reached maximum number of turns (1)"
    assert v.hint is not None and "--max-turns" in v.hint
    assert v.changes == [FileChange(HELLO, "added")]  # the write went through before the limit
    assert v.usage == Usage(120, 40, 0, 0.0016)
    assert v.session_id == "6f7c85b6-7be6-4482-93f8-bffc1641c810"


def test_rate_limit_after_retries(replay: Run) -> None:
    r = replay(parser(), "claude_rate_limit_429.jsonl")
    v = r.verdict
    assert not v.ok
    assert v.error_kind == "rate_limit"
    assert v.retryable
    assert v.error_message is not None and "(429)" in v.error_message
    retries = r.of(RetryEvent)
    assert [e.attempt for e in retries if isinstance(e, RetryEvent)] == list(range(1, 11))
    assert retries[0] == RetryEvent(1, "rate_limit (429)", 1.0)
    assert v.usage == Usage(0, 0, 0, 0.0)
    assert v.session_id == "a53ece98-3f59-4c9c-9ad9-cd6fcaef5d77"


def test_not_logged_in(replay: Run) -> None:
    v = replay(parser(), "claude_not_logged_in.jsonl").verdict
    assert not v.ok
    assert v.error_kind == "auth"
    assert v.error_message == "Not logged in · Please run /login"
    assert v.hint is not None and "/login" in v.hint and "ANTHROPIC_API_KEY" in v.hint
    assert v.session_id == "79282330-b2e3-4dd6-a861-3bea090a6018"


def test_partial_messages_and_a_failed_write(replay: Run) -> None:
    r = replay(parser(), "claude_include_partial_messages.jsonl")
    deltas = [e.text for e in r.of(TextEvent) if isinstance(e, TextEvent) and e.delta]
    assert deltas == ["I'll create the file.", "Done. ", "I created hello.txt ", "containing hi."]
    v = r.verdict
    # Exit 0 and subtype success, but the only tool call (Write) failed: nothing was created.
    assert not v.ok
    assert v.error_kind == "failed"
    assert v.error_message == (
        "all 1 tool call failed; last: <tool_use_error>File has not been read yet. "
        "Read it first before writing to it.</tool_use_error>"
    )
    assert v.text == DONE
    assert v.changes == []
    assert v.usage == Usage(240, 52, 0, 0.0025)


def test_missing_result_is_a_crash(replay: Run, transcript: Callable[[str], list[str]]) -> None:
    lines = transcript("claude_tool_write_acceptEdits.jsonl")[:-1]
    v = replay(parser(), lines, 0).verdict
    assert not v.ok
    assert v.error_kind == "crashed"
    assert v.text == DONE
    # Two distinct messages, each repeated per block: counted once each, cost unknown.
    assert v.usage == Usage(240, 2, 0, None)


def test_killed_without_result(replay: Run, transcript: Callable[[str], list[str]]) -> None:
    v = replay(parser(), transcript("claude_resume.jsonl")[:2], None).verdict
    assert v.error_kind == "crashed"
    assert v.error_message is not None and "stopped" in v.error_message


def test_usage_counts_cache_reads_and_writes_as_input(replay: Run) -> None:
    usage = {
        "input_tokens": 10,
        "cache_creation_input_tokens": 20,
        "cache_read_input_tokens": 30,
        "output_tokens": 5,
    }
    v = replay(parser(), [result_line(result="x", usage=usage, total_cost_usd=0.5)]).verdict
    assert v.usage == Usage(60, 5, 30, 0.5)


def test_api_error_statuses(replay: Run) -> None:
    auth = replay(parser(), [result_line(is_error=True, api_error_status=401, result="nope")], 1)
    assert auth.verdict.error_kind == "auth"
    busy = replay(parser(), [result_line(is_error=True, api_error_status=529, result="busy")], 1)
    assert busy.verdict.error_kind == "rate_limit" and busy.verdict.retryable
    other = replay(parser(), [result_line(subtype="error_during_execution", is_error=True)], 1)
    assert other.verdict.error_kind == "failed"
    assert other.verdict.error_message == "claude ended with error_during_execution"


def test_success_result_with_nonzero_exit(replay: Run) -> None:
    v = replay(parser(), [result_line(result="ok")], 2).verdict
    assert v.error_kind == "failed"
    assert v.error_message == "claude reported success but exited with code 2"


def test_stderr_errors_without_json(replay: Run) -> None:
    auth = replay(parser(), [], 1, "Invalid API key · Please run /login\n").verdict
    assert auth.error_kind == "auth"
    bad_flag = replay(parser(), [], 1, "error: unknown option '--bogus'\n").verdict
    assert bad_flag.error_kind == "config"
    assert (
        bad_flag.error_message
        == "claude rejected its command line: error: unknown option '--bogus'"
    )


def test_edit_of_existing_file_is_modified(replay: Run) -> None:
    lines = [
        json.dumps(
            {
                "type": "assistant",
                "message": {
                    "id": "m1",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "t1",
                            "name": "Edit",
                            "input": {"file_path": "a.py"},
                        }
                    ],
                },
            }
        ),
        json.dumps(
            {
                "type": "user",
                "message": {
                    "content": [{"type": "tool_result", "tool_use_id": "t1", "content": []}]
                },
                "tool_use_result": {"type": "update", "filePath": "/w/a.py"},
            }
        ),
        result_line(result="edited"),
    ]
    v = replay(parser(), lines).verdict
    assert v.ok
    assert v.changes == [FileChange("/w/a.py", "modified")]


def test_resume_of_unknown_session_is_a_config_error(replay: Run) -> None:
    # Recorded from claude 2.1.197 with a HOME that never saw the session.
    missing = "No conversation found with session ID: 554e8d89-8f75-459b-8e1a-672ef3419a12"
    line = result_line(
        subtype="error_during_execution",
        is_error=True,
        num_turns=0,
        session_id="554e8d89-8f75-459b-8e1a-672ef3419a12",
        total_cost_usd=0,
        usage={"input_tokens": 0, "output_tokens": 0},
        permission_denials=[],
        errors=[missing],
    )
    v = replay(parser(), [line], 1, missing + "\n").verdict
    assert v.error_kind == "config"
    assert v.error_message == missing
    assert v.hint is not None and "home directory" in v.hint


def test_manual_mode_is_accepted_and_passed_through(tmp_path: Path) -> None:
    request = AgentRequest("hi", tmp_path, "claude", permission_mode="manual")
    argv = ClaudeDriver().build_argv(request)
    assert argv[argv.index("--permission-mode") + 1] == "manual"


def test_permission_denied_events_are_recognised(
    replay: Run, transcript: Callable[[str], list[str]]
) -> None:
    # claude 2.1.332 in manual mode: the refusal is announced as it happens, then the result
    # says success and lists it again; a stream cut before the result still shows it.
    r = replay(parser(), "claude_permission_denied_manual_2.1.332.jsonl")
    assert WarningEvent("permission denied: Write") in r.events
    assert not [e for e in r.events if isinstance(e, RawEvent) and "permission_denied" in str(e)]
    assert not r.verdict.ok and "refused permission" in (r.verdict.error_message or "")
    lines = transcript("claude_permission_denied_manual_2.1.332.jsonl")
    result = json.loads(lines[-1])
    result["permission_denials"] = []
    v = replay(parser(), [*lines[:-1], json.dumps(result)], exit_code=0).verdict
    assert not v.ok and "Write" in (v.error_message or "")


def test_a_sigint_without_result_is_cancelled(replay: Run) -> None:
    v = replay(parser(), "claude_interrupted_sigint_2.1.332.jsonl").verdict
    assert not v.ok and v.error_kind == "cancelled"


def test_an_interrupted_turn_is_cancelled_even_if_the_result_says_success(
    replay: Run, transcript: Callable[[str], list[str]]
) -> None:
    lines = transcript("claude_tool_write_acceptEdits.jsonl")
    stop = json.dumps(
        {"type": "user", "message": {"role": "user",
         "content": [{"type": "text", "text": "[Request interrupted by user]"}]}}
    )  # fmt: skip
    v = replay(parser(), [*lines[:-1], stop, lines[-1]], exit_code=0).verdict
    assert not v.ok and v.error_kind == "cancelled"
