"""CopilotParser over every recorded copilot run, plus auth, denials and usage events."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from orchestrator_nb.agents.copilot import CopilotDriver
from orchestrator_nb.events import (
    FileChange,
    FileChangeEvent,
    RawEvent,
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
SESSION = "09e3f288-11a2-4099-8633-3aac419bc767"
Run = Callable[..., Any]  # the `replay` fixture from conftest.py

# What copilot 1.0.102 prints with no credentials at all (exit 1, nothing on stdout).
NO_AUTH = (
    "Error: No authentication information found.\n\n"
    "Copilot can be authenticated with GitHub using an OAuth Token or a Fine-Grained Personal "
    "Access Token.\n\n"
    "To authenticate, you can use any of the following methods:\n"
    "  • Start 'copilot' and run the '/login' command\n"
    "  • Set the COPILOT_GITHUB_TOKEN, GH_TOKEN, or GITHUB_TOKEN environment variable\n"
    "  • Run 'gh auth login' to authenticate with the GitHub CLI\n"
)


def parser() -> Any:
    return CopilotDriver().new_parser()


def event(kind: str, **data: Any) -> str:
    return json.dumps({"type": kind, "data": data, "id": "x", "timestamp": "t"})


def result(exit_code: int = 0, session: str = "s1") -> str:
    return json.dumps({"type": "result", "sessionId": session, "exitCode": exit_code, "usage": {}})


def test_create_file(replay: Run) -> None:
    r = replay(parser(), "copilot_tool_create.jsonl")
    v = r.verdict
    assert v.ok and v.error_kind is None
    assert v.text == DONE
    assert v.session_id == SESSION
    assert v.model == "gpt-4.1"
    # No token counts in copilot's stream: input and output are 0, cost unknown.
    assert v.usage == Usage(0, 0, 0, None)
    assert v.changes == [FileChange(HELLO, "added")]
    args = {"path": HELLO, "file_text": "hi\n"}
    assert r.of(ToolCallEvent) == [ToolCallEvent("call_******_1", "create", args)]
    assert r.of(ToolResultEvent) == [
        ToolResultEvent("call_******_1", True, f"Created file {HELLO} with 3 characters")
    ]
    assert r.of(FileChangeEvent) == [FileChangeEvent(HELLO, "added")]
    deltas = [e.text for e in r.of(TextEvent) if isinstance(e, TextEvent) and e.delta]
    assert "".join(deltas) == DONE
    assert r.events[-2:] == [SessionEvent(SESSION, "gpt-4.1"), UsageEvent(Usage(0, 0, 0, None))]


def test_resume_does_not_report_earlier_runs_files(replay: Run) -> None:
    v = replay(parser(), "copilot_resume.jsonl").verdict
    assert v.ok
    assert v.text == DONE
    assert v.session_id == SESSION
    # result.usage.codeChanges lists hello.txt again: that is the session's total, not this run's.
    assert v.changes == []


def test_denied_tool_is_a_failure(replay: Run) -> None:
    r = replay(parser(), "copilot_tool_denied_without_allow_all_tools.jsonl")
    v = r.verdict
    assert not v.ok
    assert v.error_kind == "failed"
    assert v.error_message == "copilot was refused permission for 1 tool call: create"
    assert v.hint is not None and "--allow-all-tools" in v.hint
    assert v.text == DONE
    assert v.changes == []
    assert v.session_id == "51ae0095-7a7b-4d61-9b22-82487a93b7f3"
    (res,) = r.of(ToolResultEvent)
    assert isinstance(res, ToolResultEvent) and not res.ok
    assert res.output.startswith("Permission denied because no interactive user response")


def test_not_authenticated_plain_stderr(replay: Run) -> None:
    v = replay(parser(), [], 1, NO_AUTH).verdict
    assert not v.ok
    assert v.error_kind == "auth"
    assert v.hint is not None
    assert "/login" in v.hint and "COPILOT_GITHUB_TOKEN" in v.hint and "GH_TOKEN" in v.hint


def test_unquoted_prompt_is_a_config_error(replay: Run) -> None:
    stderr = "error: Invalid command format.\n\nTry 'copilot --help' for more information.\n"
    assert replay(parser(), [], 1, stderr).verdict.error_kind == "config"


def test_missing_result_is_a_crash(replay: Run, transcript: Callable[..., Any]) -> None:
    v = replay(parser(), transcript("copilot_tool_create.jsonl")[:-1], 0).verdict
    assert v.error_kind == "crashed"
    assert v.session_id is None  # copilot names its session only in the result line
    assert v.text == DONE


def test_session_error_kinds(replay: Run) -> None:
    limited = [
        event(
            "session.error", errorType="rate_limit", message="You hit a rate limit", statusCode=429
        ),
        result(),
    ]
    v = replay(parser(), limited).verdict
    assert v.error_kind == "rate_limit" and v.retryable
    denied = [
        event("session.error", errorType="authorization", message="no Copilot seat"),
        result(),
    ]
    assert replay(parser(), denied).verdict.error_kind == "auth"
    other = [event("session.error", errorType="query", message="boom"), result()]
    assert replay(parser(), other).verdict.error_kind == "failed"


def test_error_followed_by_an_answer_is_not_fatal(replay: Run) -> None:
    lines = [
        event("session.error", errorType="query", message="transient"),
        event("assistant.message", content="recovered", model="gpt-4.1"),
        result(),
    ]
    r = replay(parser(), lines)
    assert r.verdict.ok
    assert r.verdict.text == "recovered"
    assert WarningEvent("transient") in r.events


def test_usage_events_are_summed(replay: Run) -> None:
    lines = [
        event("assistant.usage", model="m", inputTokens=100, outputTokens=7, cacheReadTokens=40),
        event("assistant.usage", model="m", inputTokens=150, outputTokens=3),
        event("assistant.message", content="hi", outputTokens=10),
        result(),
    ]
    assert replay(parser(), lines).verdict.usage == Usage(250, 10, 40, None)


def test_output_tokens_from_messages_without_usage_events(replay: Run) -> None:
    lines = [
        event("assistant.message", content="", outputTokens=4),
        event("assistant.message", content="hi", outputTokens=6),
        result(),
    ]
    assert replay(parser(), lines).verdict.usage == Usage(0, 10, 0, None)


def test_nonzero_exit_code_in_result(replay: Run) -> None:
    lines = [event("assistant.message", content="hm"), result(exit_code=1)]
    v = replay(parser(), lines, 1).verdict
    assert v.error_kind == "failed"
    assert v.error_message == "copilot finished but exited with code 1"


def test_files_modified_used_when_tools_did_not_name_them(replay: Run) -> None:
    lines = [
        event("tool.execution_start", toolCallId="c", toolName="bash", arguments={}),
        event("tool.execution_complete", toolCallId="c", success=True, result={"content": ""}),
        event("assistant.message", content="edited"),
        json.dumps(
            {
                "type": "result",
                "sessionId": "s",
                "exitCode": 0,
                "usage": {"codeChanges": {"filesModified": ["/w/a.py"]}},
            }
        ),
    ]
    assert replay(parser(), lines).verdict.changes == [FileChange("/w/a.py", "modified")]


def test_resume_of_unknown_session_is_a_config_error(replay: Run) -> None:
    stderr = (
        "Error: No session, task, or name matched '50af3dd5-1333-4f25-829c-12b703887849'.\n"
        "To resume by session or task ID:  copilot --resume=<id>\n"
        "To pick from existing sessions:   copilot --resume\n"
    )
    v = replay(parser(), [], 1, stderr).verdict
    assert v.error_kind == "config"
    assert v.error_message == f"copilot could not resume: {stderr.splitlines()[0]}"
    assert v.hint is not None and "home directory" in v.hint


def test_the_clis_own_interruption_is_cancelled_even_with_exit_0(
    replay: Run, transcript: Callable[..., Any]
) -> None:
    lines = transcript("copilot_tool_create.jsonl")
    body, last = lines[:-1], lines[-1]
    assert json.loads(last)["type"] == "result" and json.loads(last)["exitCode"] == 0
    for stop in (
        [event("abort", reason="user_initiated")],
        [event("agent.interrupted", activity="model_call", elapsedMs=20, turn=0)],
        [event("session.idle", aborted=True)],
    ):
        v = replay(parser(), [*body, *stop, last], exit_code=0).verdict
        assert not v.ok and v.error_kind == "cancelled", stop
        assert not v.retryable
    # A plain idle is the normal end of a turn.
    assert replay(parser(), [*body, event("session.idle"), last], exit_code=0).verdict.ok


def test_a_recorded_interrupt_is_cancelled(replay: Run) -> None:
    # copilot 1.0.102 stopped with SIGINT: agent.interrupted, abort, an aborted idle, then a
    # result with exitCode 0.
    r = replay(parser(), "copilot_interrupted_sigint.jsonl")
    assert not r.verdict.ok and r.verdict.error_kind == "cancelled"
    assert "user_initiated" in (r.verdict.error_message or "")
    assert not [e for e in r.events if isinstance(e, RawEvent)]
    assert replay(parser(), "copilot_interrupted_sigint.jsonl", exit_code=0).verdict.error_kind == (
        "cancelled"
    )
