"""Parsers survive whatever a CLI (or a broken pipe) writes, and decide the same on equal input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator_nb.agents._jsonl import PARSER_ERROR
from orchestrator_nb.agents.base import StreamParser, Verdict
from orchestrator_nb.agents.claude import ClaudeDriver
from orchestrator_nb.agents.codex import CodexDriver
from orchestrator_nb.agents.command import CommandDriver
from orchestrator_nb.agents.copilot import CopilotDriver
from orchestrator_nb.agents.gemini import GeminiDriver
from orchestrator_nb.errors import ERROR_KINDS
from orchestrator_nb.events import (
    Event,
    FileChangeEvent,
    RawEvent,
    RetryEvent,
    SessionEvent,
    TextEvent,
    ToolCallEvent,
    ToolResultEvent,
    UsageEvent,
    WarningEvent,
)

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "fixtures" / "transcripts"
EXIT_CODES: dict[str, int] = json.loads((TRANSCRIPTS / "exit_codes.json").read_text())
JSON_DRIVERS: dict[str, Callable[[], Any]] = {
    "claude": ClaudeDriver,
    "codex": CodexDriver,
    "gemini": GeminiDriver,
    "copilot": CopilotDriver,
}
ALL_DRIVERS: dict[str, Callable[[], Any]] = {
    **JSON_DRIVERS,
    "command": lambda: CommandDriver(name="command", argv=["tool", "{prompt}"]),
}
EVENT_TYPES = (
    SessionEvent,
    TextEvent,
    ToolCallEvent,
    ToolResultEvent,
    FileChangeEvent,
    UsageEvent,
    RetryEvent,
    WarningEvent,
    RawEvent,
)
Run = Callable[..., Any]  # the `replay` fixture from conftest.py


def driver_for(name: str) -> Any:
    return JSON_DRIVERS[name.split("_", 1)[0]]()


def lines_of(name: str) -> list[str]:
    return (TRANSCRIPTS / name).read_text(encoding="utf-8").splitlines()


def feed_all(parser: StreamParser, lines: list[str]) -> list[Event]:
    events: list[Event] = []
    for line in lines:
        out = parser.feed(line)
        assert isinstance(out, list)
        events.extend(out)
    return events


def check_verdict(verdict: Verdict) -> None:
    assert isinstance(verdict, Verdict)
    usage = verdict.usage
    assert min(usage.input_tokens, usage.output_tokens, usage.cached_tokens) >= 0
    if verdict.ok:
        assert verdict.error_kind is None
    else:
        assert verdict.error_kind in ERROR_KINDS
        assert verdict.error_message
        assert verdict.hint


def check_events(events: list[Event]) -> None:
    for event in events:
        assert isinstance(event, EVENT_TYPES)
        # A handler tripping over a shape is caught, but counts as a bug here.
        assert not (isinstance(event, WarningEvent) and event.message.startswith(PARSER_ERROR))


def reorder(value: Any) -> Any:
    """The same JSON with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reorder(v) for v in value]
    return value


def test_every_transcript_is_in_the_exit_code_table() -> None:
    recorded = {p.name for p in TRANSCRIPTS.iterdir() if p.suffix in (".jsonl", ".json")}
    recorded.discard("exit_codes.json")
    assert recorded == set(EXIT_CODES)


@pytest.mark.parametrize("name", sorted(EXIT_CODES))
def test_recorded_verdicts_are_well_formed(name: str, replay: Run) -> None:
    r = replay(driver_for(name).new_parser(), name)
    check_events(r.events)
    check_verdict(r.verdict)
    assert r.verdict.session_id  # every recorded run names its session somewhere


@pytest.mark.parametrize("name", sorted(EXIT_CODES))
def test_key_order_does_not_matter(name: str, replay: Run) -> None:
    original = replay(driver_for(name).new_parser(), name)
    if name.endswith(".json"):  # one pretty-printed document
        doc = json.loads((TRANSCRIPTS / name).read_text())
        shuffled = json.dumps(doc, sort_keys=True, indent=4).splitlines()
    else:
        shuffled = [json.dumps(reorder(json.loads(line))) for line in lines_of(name)]
    again = replay(driver_for(name).new_parser(), shuffled, EXIT_CODES[name])
    assert again.verdict == original.verdict
    if not name.endswith(".json"):
        assert again.events == original.events


@pytest.mark.parametrize("name", sorted(n for n in EXIT_CODES if n.endswith(".jsonl")))
def test_noise_between_lines_does_not_change_the_verdict(name: str, replay: Run) -> None:
    noise = ["", "   ", "Warning: something on stdout", "[1, 2]", '"text"', "{", "null"]
    noisy: list[str] = []
    for line in lines_of(name):
        noisy += [line, *noise]
    original = replay(driver_for(name).new_parser(), name)
    again = replay(driver_for(name).new_parser(), noisy, EXIT_CODES[name])
    assert again.verdict == original.verdict
    assert [e for e in again.events if not isinstance(e, RawEvent)] == [
        e for e in original.events if not isinstance(e, RawEvent)
    ]


GARBAGE = [
    "",
    " \t ",
    "plain text",
    "{",
    '{"type": "result"',
    "[1, 2, 3]",
    '"a string"',
    "42",
    "NaN",
    "null",
    "true",
    "{}",
    '{"type": null}',
    '{"type": 5, "data": "x"}',
    '{"type": ["result"]}',
    '\ufffd\ufffd{"type": "result"}',
    "[" * 100_000,
    '{"n": ' + "9" * 5000 + "}",
    '{"type": "result", "usage": "lots", "session_id": 5, "result": [], "stats": 1}',
    '{"type": "result", "total_cost_usd": 1e999, "usage": {"input_tokens": -5}}',
    '{"type": "assistant", "message": {"content": "str", "usage": 3}}',
    '{"type": "assistant", "message": {"content": [1, null, {"type": "tool_use", "input": 2}]}}',
    '{"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": []}]}}',
    '{"type": "system", "subtype": "api_retry", "attempt": "2", "retry_delay_ms": "soon"}',
    '{"type": "stream_event", "event": {"type": "content_block_delta", "delta": []}}',
    '{"type": "item.completed", "item": {"type": "file_change", "changes": [1, {"path": 2}]}}',
    '{"type": "item.started", "item": []}',
    '{"type": "error", "message": "Reconnecting... ' + "9" * 5000 + '/5"}',
    '{"type": "turn.completed", "usage": [1]}',
    '{"type": "tool_use", "parameters": "x", "tool_id": {}}',
    '{"type": "message", "role": "assistant", "content": {"a": 1}}',
    '{"type": "tool.execution_complete", "data": {"fileEdits": "x", "error": 3}}',
    '{"type": "assistant.usage", "data": {"inputTokens": "10"}}',
]


@pytest.mark.parametrize("driver", sorted(ALL_DRIVERS))
def test_garbage_never_raises(driver: str) -> None:
    parser = ALL_DRIVERS[driver]().new_parser()
    events = feed_all(parser, GARBAGE)
    check_events(events)
    for exit_code in (None, 0, 1):
        check_verdict(parser.finish(exit_code, "\x00\ufffd weird stderr"))


@pytest.mark.parametrize("driver", sorted(JSON_DRIVERS))
def test_non_objects_and_unknown_types_are_raw(driver: str) -> None:
    parser = JSON_DRIVERS[driver]().new_parser()
    assert parser.feed("") == []
    assert parser.feed("not json") == [RawEvent("not json")]
    assert parser.feed("[1, 2]") == [RawEvent([1, 2])]
    assert parser.feed('"hello"') == [RawEvent("hello")]
    unknown = {"type": "brand.new.event", "payload": {"x": 1}}
    assert parser.feed(json.dumps(unknown)) == [RawEvent(unknown)]
    assert parser.feed('{"no_type": true}') == [RawEvent({"no_type": True})]


@pytest.mark.parametrize(
    ("name", "marker"),
    [
        ("claude_tool_write_acceptEdits.jsonl", "Done. I created"),
        ("codex_tool_exec_command.jsonl", "Done. I created"),
        ("gemini_resume.jsonl", "containing hi."),
        ("copilot_tool_create.jsonl", "Done. I created"),
    ],
)
def test_invalid_utf8_decoded_with_replacement(name: str, marker: str, replay: Run) -> None:
    def damage(line: str) -> str:
        raw = line.encode().replace(marker[:4].encode(), b"D\xff\xfee")
        return raw.decode("utf-8", errors="replace")

    lines = [damage(line) for line in lines_of(name)]
    lines.insert(1, b'\x80\x81\xfe{"type": "x"}'.decode("utf-8", errors="replace"))
    r = replay(driver_for(name).new_parser(), lines, EXIT_CODES[name])
    check_events(r.events)
    assert r.verdict.ok
    assert "\ufffd" in r.verdict.text or marker not in r.verdict.text


@pytest.mark.parametrize("driver", sorted(JSON_DRIVERS))
def test_stderr_error_before_any_json(driver: str) -> None:
    parser = JSON_DRIVERS[driver]().new_parser()
    verdict = parser.finish(1, "node:internal/modules/cjs/loader:1228\n  throw err;\nFATAL: boom\n")
    assert not verdict.ok
    assert verdict.error_kind == "crashed"
    assert verdict.error_message is not None and "FATAL: boom" in verdict.error_message
    assert verdict.hint
    silent = JSON_DRIVERS[driver]().new_parser().finish(0, "")
    assert silent.error_kind == "crashed"  # exit 0 alone is not success


@pytest.mark.parametrize("name", sorted(n for n in EXIT_CODES if n.endswith(".jsonl")))
def test_stream_cut_mid_line(name: str, replay: Run) -> None:
    lines = lines_of(name)
    cut = [*lines[:-1], lines[-1][: len(lines[-1]) // 2]]
    r = replay(driver_for(name).new_parser(), cut, 0)
    assert isinstance(r.events[-1], RawEvent)
    # Copilot's interruption events come before its cut result line: still its own word.
    expected = "cancelled" if name == "copilot_interrupted_sigint.jsonl" else "crashed"
    assert r.verdict.error_kind == expected


# Field names and type tags the four CLIs use, so generated objects reach deep into the handlers.
KEYS = (  # noqa: SIM905 (a word list reads better as one string)
    "type subtype session_id model message content text id name input tool_use_id is_error "
    "tool_use_result usage input_tokens output_tokens cache_read_input_tokens "
    "cache_creation_input_tokens total_cost_usd result permission_denials tool_name "
    "tool_input errors api_error_status error attempt retry_delay_ms error_status event "
    "delta thread_id item status exit_code aggregated_output changes path kind command "
    "server tool arguments cached_input_tokens role tool_id parameters file_path stats "
    "cached severity data deltaContent toolCallId toolName success fileEdits errorType code "
    "sessionId exitCode codeChanges filesModified inputTokens outputTokens cacheReadTokens "
    "filePath response"
).split()
TYPES = (  # noqa: SIM905 (a word list reads better as one string)
    "system init api_retry status assistant user result stream_event content_block_delta "
    "text tool_use tool_result success error_max_turns thread.started turn.started "
    "turn.completed turn.failed item.started item.updated item.completed agent_message "
    "command_execution file_change mcp_tool_call web_search reasoning add update delete "
    "completed failed message assistant.message assistant.message_delta "
    "tool.execution_start tool.execution_complete assistant.usage session.error "
    "session.warning session.tools_updated denied create edit rate_limit "
    "authentication_failed write_file replace"
).split()
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(TYPES)
    | st.just("Reconnecting... 2/5 (429)")
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=30,
)
objects = st.builds(
    lambda kind, rest: {**rest, "type": kind},
    st.sampled_from(TYPES),
    st.dictionaries(st.sampled_from(KEYS), values, max_size=8),
)
exit_codes = st.sampled_from([None, 0, 1, 2, 41, 42, 52, 53, 55, 127, 130, 173])
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@FUZZ
@given(
    driver=st.sampled_from(sorted(JSON_DRIVERS)),
    stream=st.lists(objects, max_size=12),
    exit_code=exit_codes,
    stderr=st.text(max_size=80),
)
def test_feed_never_raises_on_shaped_json(
    driver: str, stream: list[dict[str, Any]], exit_code: int | None, stderr: str
) -> None:
    parser = JSON_DRIVERS[driver]().new_parser()
    check_events(feed_all(parser, [json.dumps(obj) for obj in stream]))
    check_verdict(parser.finish(exit_code, stderr))


@FUZZ
@given(
    driver=st.sampled_from(sorted(ALL_DRIVERS)),
    lines=st.lists(st.text(), max_size=12),
    exit_code=exit_codes,
    stderr=st.text(max_size=80),
)
def test_feed_never_raises_on_text(
    driver: str, lines: list[str], exit_code: int | None, stderr: str
) -> None:
    parser = ALL_DRIVERS[driver]().new_parser()
    check_events(feed_all(parser, lines))
    check_verdict(parser.finish(exit_code, stderr))
