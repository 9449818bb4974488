"""GeminiParser over every recorded gemini run, and gemini's exit-code-only failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator_nb.agents.gemini import GeminiDriver
from orchestrator_nb.events import (
    FileChange,
    FileChangeEvent,
    SessionEvent,
    TextEvent,
    ToolCallEvent,
    ToolResultEvent,
    Usage,
    UsageEvent,
)

DONE = "Done. I created hello.txt containing hi."
HELLO = "/home/user/project/hello.txt"
SESSION = "1e171958-f999-4b5d-8a98-abd38a0b2f94"
Run = Callable[..., Any]  # the `replay` fixture from conftest.py


def parser() -> Any:
    return GeminiDriver().new_parser()


def line(**fields: Any) -> str:
    return json.dumps(fields)


def test_write_file(replay: Run) -> None:
    r = replay(parser(), "gemini_tool_write_file.jsonl")
    v = r.verdict
    assert v.ok and v.error_kind is None
    assert v.text == DONE  # the answer after the last tool call, not the preamble
    assert v.session_id == SESSION
    assert v.model == "gemini-2.5-flash"
    assert v.usage == Usage(1600, 40, 0, None)
    assert v.changes == [FileChange(HELLO, "added")]  # the recorded run created hello.txt
    assert r.events[0] == SessionEvent(SESSION, "gemini-2.5-flash")
    tool_id = "write_file__write_file_1795484711045_0"
    assert r.of(ToolCallEvent) == [
        ToolCallEvent(tool_id, "write_file", {"file_path": HELLO, "content": "hi\n"})
    ]
    assert r.of(ToolResultEvent) == [ToolResultEvent(tool_id, True, "")]
    assert r.of(FileChangeEvent) == [FileChangeEvent(HELLO, "added")]
    texts = r.of(TextEvent)
    assert all(isinstance(t, TextEvent) and t.delta for t in texts)
    assert "".join(t.text for t in texts if isinstance(t, TextEvent)) == (
        "I'll create the file." + DONE
    )
    assert r.of(UsageEvent) == [UsageEvent(Usage(1600, 40, 0, None))]


def test_resume(replay: Run) -> None:
    v = replay(parser(), "gemini_resume.jsonl").verdict
    assert v.ok
    assert v.text == DONE
    assert v.session_id == SESSION
    assert v.usage == Usage(800, 20, 0, None)
    assert v.changes == []


def test_rate_limit_exit_173(replay: Run) -> None:
    v = replay(parser(), "gemini_rate_limit_429_exit173.jsonl").verdict
    assert not v.ok
    assert v.error_kind == "rate_limit"
    assert v.retryable
    assert v.error_message is not None
    assert v.error_message.startswith("[API Error: Resource has been exhausted")
    assert v.session_id == "d02ac93f-b3d3-48a2-91c0-181ba44ae279"
    assert v.usage == Usage(0, 0, 0, None)


def test_exit_173_alone_is_a_rate_limit(replay: Run) -> None:
    v = replay(parser(), [], 173, "").verdict
    assert v.error_kind == "rate_limit" and v.retryable


def test_output_format_json_document(replay: Run) -> None:
    r = replay(parser(), "gemini_output-format-json.json")
    v = r.verdict
    assert v.ok
    assert v.text == DONE
    assert v.session_id == "547e34a9-bc22-4eda-a877-f39bcdd2343d"
    assert v.usage == Usage(800, 20, 0, None)


AUTH_STDERR = (
    "Please set an Auth method in your /home/u/.gemini/settings.json or specify one of the "
    "following environment variables before running: GEMINI_API_KEY, GOOGLE_GENAI_USE_VERTEXAI, "
    "GOOGLE_GENAI_USE_GCA\n"
)


@pytest.mark.parametrize(
    ("exit_code", "stderr", "kind", "hint_part"),
    [
        (41, AUTH_STDERR, "auth", "GEMINI_API_KEY"),
        (55, "Gemini CLI is not running in a trusted directory.\n", "config", "nb trust"),
        (52, "Invalid configuration in settings.json\n", "config", "settings.json"),
        (42, "No input provided via stdin.\n", "config", "extra_args"),
        (53, "Reached max session turns\n", "failed", "maxSessionTurns"),
        (130, "", "cancelled", "again"),
        (1, "Not enough arguments following: p\nUsage: gemini [options] [command]\n", "config", ""),
    ],
)
def test_exit_codes_without_stream(
    replay: Run, exit_code: int, stderr: str, kind: str, hint_part: str
) -> None:
    v = replay(parser(), [], exit_code, stderr).verdict
    assert not v.ok
    assert v.error_kind == kind
    assert v.hint and hint_part in v.hint
    if stderr:
        assert v.error_message is not None
        assert stderr.strip().splitlines()[0] in v.error_message


def test_exit_41_reads_json_error_on_stderr(replay: Run) -> None:
    message = "Manual authorization is required but the current session is non-interactive."
    stderr = json.dumps(
        {"session_id": "s", "error": {"type": "FatalAuthenticationError", "message": message}},
        indent=2,
    )
    v = replay(parser(), [], 41, stderr).verdict
    assert v.error_kind == "auth"
    assert v.error_message == f"gemini could not authenticate: {message}"


def test_missing_result_is_a_crash(replay: Run, transcript: Callable[..., Any]) -> None:
    v = replay(parser(), transcript("gemini_resume.jsonl")[:-1], 0).verdict
    assert v.error_kind == "crashed"
    assert v.text == DONE


def test_result_error_that_is_not_a_rate_limit(replay: Run) -> None:
    lines = [
        line(type="init", session_id="s", model="m"),
        line(type="error", severity="error", message="model stream broke"),
        line(type="result", status="error", error={"type": "unknown", "message": "stream broke"}),
    ]
    v = replay(parser(), lines, 1).verdict
    assert v.error_kind == "failed"
    assert v.error_message == "stream broke"
    assert not v.retryable


def test_failed_tool_is_a_failure(replay: Run) -> None:
    lines = [
        line(type="tool_use", tool_name="replace", tool_id="t1", parameters={"file_path": "a.py"}),
        line(
            type="tool_result",
            tool_id="t1",
            status="error",
            error={"type": "EDIT_NO_OCCURRENCE_FOUND", "message": "0 occurrences found"},
        ),
        line(type="message", role="assistant", content="Fixed it.", delta=True),
        line(type="result", status="success", stats={"input_tokens": 5, "output_tokens": 1}),
    ]
    r = replay(parser(), lines)
    assert r.of(ToolResultEvent) == [ToolResultEvent("t1", False, "0 occurrences found")]
    v = r.verdict
    assert v.error_kind == "failed"
    assert v.error_message == "all 1 tool call failed; last: 0 occurrences found"
    assert v.text == "Fixed it."
    assert v.changes == []


def test_resume_of_unknown_session_is_a_config_error(replay: Run) -> None:
    stderr = "Error resuming session: No previous sessions found for this project.\n"  # exit 42
    v = replay(parser(), [], 42, stderr).verdict
    assert v.error_kind == "config"
    assert v.error_message == f"gemini could not resume: {stderr.strip()}"
    assert v.hint is not None and "home directory" in v.hint


def test_write_file_over_an_existing_file_is_modified(
    replay: Run, transcript: Callable[..., Any], tmp_path: Path
) -> None:
    existing = tmp_path / "hello.txt"
    existing.write_text("old\n")
    lines = [ln.replace(HELLO, str(existing)) for ln in transcript("gemini_tool_write_file.jsonl")]
    v = replay(parser(), lines, exit_code=0).verdict
    assert v.ok and v.changes == [FileChange(str(existing), "modified")]


def test_an_error_event_then_success_is_not_a_success(
    replay: Run, transcript: Callable[..., Any]
) -> None:
    # gemini reports a turn limit as an error-severity event, then may still end with success.
    lines = transcript("gemini_tool_write_file.jsonl")
    limit = line(type="error", severity="error", message="Reached max session turns")
    v = replay(parser(), [*lines[:-1], limit, lines[-1]], exit_code=0).verdict
    assert not v.ok and v.error_kind == "failed"
    assert "Reached max session turns" in (v.error_message or "")
    warning = line(type="error", severity="warning", message="Retrying after a hiccup")
    assert replay(parser(), [*lines[:-1], warning, lines[-1]], exit_code=0).verdict.ok
