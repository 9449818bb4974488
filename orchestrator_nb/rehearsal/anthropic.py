"""Anthropic Messages API, as Claude Code calls it.

``POST /v1/messages?beta=true`` streamed as server-sent events (``message_start``,
``content_block_start/delta/stop``, ``message_delta``, ``message_stop``), a few non-streamed
calls for titles, and ``POST /v1/messages/count_tokens``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .context import Exchange, ToolSpec, clean_prompt, find_cwd, summarize, texts_of
from .scenario import Usage
from .script import Planned, new_id, sse, text_chunks

CALL_PREFIX = "toolu_"


def parse(body: Mapping[str, Any], agent: str, step: str | None) -> Exchange:
    tools = tuple(
        ToolSpec.from_schema(str(t["name"]), t.get("input_schema"), t.get("description", ""))
        for t in body.get("tools") or []
        if isinstance(t, Mapping) and "name" in t and "input_schema" in t
    )
    messages = [m for m in body.get("messages") or [] if isinstance(m, Mapping)]
    prompt, prompt_at = "", -1
    for i, message in enumerate(messages):
        blocks = _blocks(message.get("content"))
        if message.get("role") != "user" or any(b.get("type") == "tool_result" for b in blocks):
            continue
        text = clean_prompt("\n".join(str(b.get("text", "")) for b in blocks if "text" in b))
        if text:
            prompt, prompt_at = text, i
    calls: list[str] = []
    results = 0
    entries: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        role = str(message.get("role", "?"))
        for block in _blocks(message.get("content")):
            kind = block.get("type")
            if kind == "tool_use":
                entries.append((role, f"tool_use {block.get('name')}"))
                if i > prompt_at:
                    calls.append(str(block.get("id", "")))
            elif kind == "tool_result":
                entries.append(("tool", "error" if block.get("is_error") else "ok"))
                if i > prompt_at:
                    results += 1
            elif "text" in block:
                entries.append((role, clean_prompt(str(block["text"])) or "[context]"))
    system = texts_of(body.get("system"))
    schema, wants_json = _json_format(body)
    return Exchange(
        agent=agent,
        step=step,
        model=str(body.get("model") or "claude-rehearsal"),
        stream=bool(body.get("stream")),
        tools=tools,
        prompt=prompt,
        calls_since_prompt=tuple(calls),
        results_since_prompt=results,
        cwd=find_cwd([*system, *texts_of(messages)]),
        json_schema=schema,
        wants_json=wants_json,
        summary=summarize(entries),
    )


def _blocks(content: Any) -> list[Mapping[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, Mapping)]
    return []


def _json_format(body: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, bool]:
    config = body.get("output_config") or body.get("output_format")
    fmt = config.get("format", config) if isinstance(config, Mapping) else None
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        schema = fmt.get("schema")
        return (schema if isinstance(schema, Mapping) else None), True
    return None, False


def _usage(usage: Usage, *, output: int) -> dict[str, Any]:
    return {
        "input_tokens": usage.input - usage.cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached,
        "output_tokens": output,
    }


def _content(planned: Planned) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    if planned.text:
        content.append({"type": "text", "text": planned.text})
    for call in planned.calls:
        content.append(
            {
                "type": "tool_use",
                "id": call.call_id(CALL_PREFIX),
                "name": call.call.name,
                "input": dict(call.call.arguments or {}),
            }
        )
    return content


def stream(planned: Planned, model: str) -> list[bytes]:
    message_id = new_id("msg_rh_")
    events = [
        sse(
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": _usage(planned.usage, output=1),
                },
            },
            "message_start",
        ),
        sse({"type": "ping"}, "ping"),
    ]
    for index, block in enumerate(_content(planned)):
        start: dict[str, Any]
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": c} for c in text_chunks(block["text"])]
        else:
            start = {**block, "input": {}}
            partial = sse_json(block["input"])
            deltas = [{"type": "input_json_delta", "partial_json": partial}]
        events.append(
            sse(
                {"type": "content_block_start", "index": index, "content_block": start},
                "content_block_start",
            )
        )
        for delta in deltas:
            events.append(
                sse(
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    "content_block_delta",
                )
            )
        events.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    events.append(
        sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": _stop_reason(planned), "stop_sequence": None},
                "usage": {"output_tokens": planned.usage.output},
            },
            "message_delta",
        )
    )
    events.append(sse({"type": "message_stop"}, "message_stop"))
    return events


def sse_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _stop_reason(planned: Planned) -> str:
    return "end_turn" if planned.final else "tool_use"


def complete(planned: Planned, model: str) -> dict[str, Any]:
    return {
        "id": new_id("msg_rh_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _content(planned),
        "stop_reason": _stop_reason(planned),
        "stop_sequence": None,
        "usage": _usage(planned.usage, output=planned.usage.output),
    }


def count_tokens(body: Mapping[str, Any]) -> dict[str, Any]:
    # Roughly four characters a token, like the real tokenizer on English and code.
    return {"input_tokens": max(1, len(sse_json(body.get("messages", []))) // 4)}


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def error(status: int, message: str, retry_after: float | None = None) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_event(message: str) -> bytes:
    return sse({"type": "error", "error": {"type": "api_error", "message": message}}, "error")
