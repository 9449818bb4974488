"""OpenAI Chat Completions API, as GitHub Copilot CLI calls it with a custom provider.

``POST /v1/chat/completions``: streamed ``chat.completion.chunk`` objects ending in
``data: [DONE]`` (a usage chunk first when ``stream_options.include_usage`` asks for it), and
plain ``chat.completion`` objects for the non-streamed calls.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .context import Exchange, ToolSpec, clean_prompt, find_cwd, summarize, texts_of
from .scenario import Usage
from .script import Planned, new_id, sse, text_chunks

CALL_PREFIX = "call_"


def parse(body: Mapping[str, Any], agent: str, step: str | None) -> Exchange:
    tools = tuple(
        ToolSpec.from_schema(
            str(t["function"]["name"]),
            t["function"].get("parameters"),
            t["function"].get("description", ""),
        )
        for t in body.get("tools") or []
        if isinstance(t, Mapping)
        and isinstance(t.get("function"), Mapping)
        and isinstance(t["function"].get("name"), str)
    )
    messages = [m for m in body.get("messages") or [] if isinstance(m, Mapping)]
    prompt, prompt_at = "", -1
    for i, message in enumerate(messages):
        if message.get("role") == "user":
            text = clean_prompt("\n".join(texts_of(message.get("content"))))
            if text:
                prompt, prompt_at = text, i
    calls: list[str] = []
    results = 0
    entries: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        role = str(message.get("role", "?"))
        if role == "tool":
            entries.append(("tool", "output"))
            results += i > prompt_at
            continue
        text = clean_prompt("\n".join(texts_of(message.get("content"))))
        if text or role != "assistant":
            entries.append((role, text or "[context]"))
        for call in message.get("tool_calls") or []:
            if isinstance(call, Mapping):
                function = call.get("function")
                name = function.get("name") if isinstance(function, Mapping) else "?"
                entries.append((role, f"tool_call {name}"))
                if i > prompt_at:
                    calls.append(str(call.get("id", "")))
    fmt = body.get("response_format")
    schema = None
    if isinstance(fmt, Mapping) and isinstance(fmt.get("json_schema"), Mapping):
        schema = fmt["json_schema"].get("schema")
    return Exchange(
        agent=agent,
        step=step,
        model=str(body.get("model") or "gpt-rehearsal"),
        stream=bool(body.get("stream")),
        tools=tools,
        prompt=prompt,
        calls_since_prompt=tuple(calls),
        results_since_prompt=results,
        cwd=find_cwd(t for m in messages for t in texts_of(m.get("content"))),
        json_schema=schema if isinstance(schema, Mapping) else None,
        wants_json=isinstance(fmt, Mapping) and fmt.get("type") in ("json_schema", "json_object"),
        summary=summarize(entries),
    )


def wants_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and bool(options.get("include_usage"))


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.input + usage.output,
        "prompt_tokens_details": {"cached_tokens": usage.cached},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _tool_calls(planned: Planned) -> list[dict[str, Any]]:
    return [
        {
            "id": call.call_id(CALL_PREFIX),
            "type": "function",
            "function": {"name": call.call.name, "arguments": call.arguments_json()},
        }
        for call in planned.calls
    ]


def _finish(planned: Planned) -> str:
    return "stop" if planned.final else "tool_calls"


def stream(planned: Planned, model: str, *, include_usage: bool = True) -> list[bytes]:
    cid = new_id("chatcmpl-rh")
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        body = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        }
        return sse(body)

    events = [chunk({"role": "assistant", "content": ""})]
    events.extend(chunk({"content": piece}) for piece in text_chunks(planned.text))
    for index, call in enumerate(_tool_calls(planned)):
        head = {**call, "index": index, "function": {**call["function"], "arguments": ""}}
        events.append(chunk({"tool_calls": [head]}))
        args = {"index": index, "function": {"arguments": call["function"]["arguments"]}}
        events.append(chunk({"tool_calls": [args]}))
    events.append(chunk({}, _finish(planned)))
    if include_usage:
        usage_body = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": _usage(planned.usage),
        }
        events.append(sse(usage_body))
    events.append(sse("[DONE]"))
    return events


def complete(planned: Planned, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": planned.text or None}
    calls = _tool_calls(planned)
    if calls:
        message["tool_calls"] = calls
    return {
        "id": new_id("chatcmpl-rh"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(planned)}],
        "usage": _usage(planned.usage),
    }


def error(status: int, message: str, retry_after: float | None = None) -> dict[str, Any]:
    kind = {429: "rate_limit_exceeded", 401: "invalid_api_key", 404: "not_found"}.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )
    return {"error": {"message": message, "type": kind, "code": kind, "param": None}}


def error_event(message: str) -> bytes:
    return sse({"error": {"message": message, "type": "server_error", "code": "server_error"}})
