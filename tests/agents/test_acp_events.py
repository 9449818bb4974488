"""ACP traffic → events and verdict, from lines shaped like the real agents' (see rpc.log)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator_nb.agents.acp.events import AcpParser
from orchestrator_nb.agents.acp.permissions import (
    ApprovalPolicy,
    decide_by_policy,
    request_from_acp,
)
from orchestrator_nb.agents.acp.rehearse import codex_config
from orchestrator_nb.events import FileChangeEvent, TextEvent, ToolCallEvent, ToolResultEvent


def line(direction: str, message: dict[str, Any]) -> str:
    return json.dumps({"direction": direction, "message": {"jsonrpc": "2.0", **message}})


def update(body: dict[str, Any]) -> str:
    return line("in", {"method": "session/update", "params": {"sessionId": "s1", "update": body}})


def turn(*updates: str, result: dict[str, Any] | None = None) -> AcpParser:
    parser = AcpParser()
    prompt = {"sessionId": "s1", "prompt": [{"type": "text", "text": "hi"}]}
    feed = [line("out", {"id": 2, "method": "session/prompt", "params": prompt}), *updates]
    if result is not None:
        feed.append(line("in", {"id": 2, "result": result}))
    for item in feed:
        parser.feed(item)
    return parser


def test_chunks_tools_diffs_and_usage() -> None:
    parser = AcpParser()
    events = []
    for item in [
        line("out", {"id": 2, "method": "session/prompt", "params": {"sessionId": "s1"}}),
        update({"sessionUpdate": "agent_thought_chunk", "content": {"type": "text", "text": "hm"}}),
        update({"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "A"}}),
        update(
            {
                "sessionUpdate": "tool_call",
                "toolCallId": "t1",
                "title": "Write a.py",
                "kind": "edit",
                "status": "pending",
            }
        ),
        update(
            {
                "sessionUpdate": "tool_call_update",
                "toolCallId": "t1",
                "status": "completed",
                "content": [{"type": "diff", "path": "/w/a.py", "oldText": None, "newText": "x"}],
            }
        ),
        update(
            {
                "sessionUpdate": "usage_update",
                "used": 5,
                "size": 9,
                "cost": {"amount": 1.5, "currency": "USD"},
            }
        ),
        update({"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "B"}}),
        line(
            "in",
            {
                "id": 2,
                "result": {
                    "stopReason": "end_turn",
                    "usage": {
                        "inputTokens": 10,
                        "outputTokens": 3,
                        "cachedReadTokens": 4,
                        "totalTokens": 13,
                    },
                },
            },
        ),
    ]:
        events += parser.feed(item)
    verdict = parser.finish(0, "")
    assert verdict.ok and verdict.text == "AB" and verdict.session_id == "s1"
    assert [type(e) for e in events if not type(e).__name__.startswith(("Raw", "Usage"))] == [
        TextEvent,
        ToolCallEvent,
        ToolResultEvent,
        FileChangeEvent,
        TextEvent,
    ]
    assert [(c.path, c.kind) for c in verdict.changes] == [("/w/a.py", "added")]
    assert (verdict.usage.input_tokens, verdict.usage.output_tokens) == (10, 3)
    assert verdict.usage.cached_tokens == 4 and verdict.usage.cost_usd == 1.5


def test_gemini_tokens_come_from_meta_quota() -> None:
    meta = {"quota": {"token_count": {"input_tokens": 2400, "output_tokens": 68}}}
    verdict = turn(result={"stopReason": "end_turn", "_meta": meta}).finish(0, "")
    assert (verdict.usage.input_tokens, verdict.usage.output_tokens) == (2400, 68)


def test_a_running_cost_is_charged_as_this_turns_share() -> None:
    parser = AcpParser(base_cost=1.0)
    parser.feed(
        update(
            {
                "sessionUpdate": "usage_update",
                "used": 1,
                "size": 2,
                "cost": {"amount": 1.25, "currency": "USD"},
            }
        )
    )
    assert parser.finish(0, "").usage.cost_usd == 0.25


def test_codex_system_error_with_429_is_a_rate_limit() -> None:
    error = {
        "codex": {
            "error": {
                "message": "Reconnecting... 1/1",
                "additionalDetails": "exceeded retry limit, last status: 429",
            }
        }
    }
    parser = turn(
        update({"sessionUpdate": "session_info_update", "_meta": error}),
        update(
            {
                "sessionUpdate": "session_info_update",
                "_meta": {"codex": {"threadStatus": {"type": "systemError"}}},
            }
        ),
        result={"stopReason": "end_turn"},
    )
    verdict = parser.finish(0, "")
    assert not verdict.ok and verdict.error_kind == "rate_limit" and verdict.retryable


def test_an_answer_that_is_only_an_error_line_is_a_failure() -> None:
    text = "Error: Failed to get response from the AI model; Last error: 429 Rate limit reached"
    chunk = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}}
    verdict = turn(update(chunk), result={"stopReason": "end_turn"}).finish(0, "")
    assert verdict.error_kind == "rate_limit"
    fine = {
        "sessionUpdate": "agent_message_chunk",
        "content": {"type": "text", "text": "Error: handling is now in place.\nDone."},
    }
    assert turn(update(fine), result={"stopReason": "end_turn"}).finish(0, "").ok


def test_an_error_response_and_a_refusal() -> None:
    parser = AcpParser()
    parser.feed(line("out", {"id": 7, "method": "session/prompt", "params": {}}))
    parser.feed(
        line("in", {"id": 7, "error": {"code": -32000, "message": "Authentication required"}})
    )
    assert parser.finish(0, "").error_kind == "auth"
    assert turn(result={"stopReason": "refusal"}).finish(0, "").error_kind == "failed"


def test_policy_by_kind_path_and_command(tmp_path: Path) -> None:
    policy = ApprovalPolicy()

    def decide(call: dict[str, Any]) -> str:
        return decide_by_policy(policy, request_from_acp("a", call, [], tmp_path))[0]

    assert decide({"kind": "edit", "locations": [{"path": str(tmp_path / "x.py")}]}) == "allow_once"
    assert decide({"kind": "edit", "locations": [{"path": "/etc/passwd"}]}) == "reject"
    assert decide({"kind": "edit", "locations": [{"path": str(tmp_path / ".." / "y")}]}) == "reject"
    assert decide({"kind": "execute", "rawInput": {"command": "wget http://x"}}) == "reject"
    assert decide({"kind": "execute", "rawInput": {"command": ["pytest", "-q"]}}) == "allow_once"
    assert decide({"kind": "fetch", "rawInput": {"url": "https://x"}}) == "reject"


def test_codex_flags_become_codex_config() -> None:
    args = [
        "-c",
        "model_provider=r",
        "-c",
        "model_providers.r.base_url=http://h/v1",
        "-c",
        "model_providers.r.request_max_retries=1",
        "-m",
        "gpt-x",
    ]
    assert codex_config(args) == {
        "model_provider": "r",
        "model_providers": {"r": {"base_url": "http://h/v1", "request_max_retries": 1}},
        "model": "gpt-x",
    }
