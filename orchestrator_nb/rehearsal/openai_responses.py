"""OpenAI Responses API, as Codex calls it (``POST /v1/responses``, server-sent events).

Events: ``response.created``, ``response.output_item.added``, ``response.output_text.delta``,
``response.function_call_arguments.delta``, ``response.output_item.done`` and
``response.completed`` carrying ``usage``. Function tools get ``function_call`` items with
JSON ``arguments``; freeform ("custom") tools such as some versions' ``apply_patch`` get
``custom_tool_call`` items with raw ``input``.
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
    tools: list[ToolSpec] = []
    for tool in body.get("tools") or []:
        if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
            continue
        if tool.get("type") == "function":
            tools.append(
                ToolSpec.from_schema(tool["name"], tool.get("parameters"), tool.get("description"))
            )
        elif tool.get("type") == "custom":
            tools.append(
                ToolSpec(tool["name"], description=str(tool.get("description", "")), freeform=True)
            )
    raw = body.get("input")
    items: list[Mapping[str, Any]] = (
        [{"type": "message", "role": "user", "content": raw}]
        if isinstance(raw, str)
        else [i for i in raw or [] if isinstance(i, Mapping)]
    )
    prompt, prompt_at = "", -1
    for i, item in enumerate(items):
        if item.get("type", "message") == "message" and item.get("role") == "user":
            text = clean_prompt("\n".join(texts_of(item.get("content"))))
            if text:
                prompt, prompt_at = text, i
    calls: list[str] = []
    results = 0
    entries: list[tuple[str, str]] = []
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        if kind in ("function_call", "custom_tool_call", "local_shell_call"):
            entries.append(("assistant", f"{kind} {item.get('name', '')}"))
            if i > prompt_at:
                calls.append(str(item.get("call_id") or item.get("id") or ""))
        elif kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
            entries.append(("tool", "output"))
            if i > prompt_at:
                results += 1
        elif kind == "message":
            text = "\n".join(texts_of(item.get("content")))
            entries.append((str(item.get("role", "?")), clean_prompt(text) or "[context]"))
    instructions = body.get("instructions")
    texts = [instructions] if isinstance(instructions, str) else []
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), Mapping) else None
    schema = fmt.get("schema") if isinstance(fmt, Mapping) else None
    wants_json = isinstance(fmt, Mapping) and fmt.get("type") in ("json_schema", "json_object")
    return Exchange(
        agent=agent,
        step=step,
        model=str(body.get("model") or "gpt-rehearsal"),
        stream=bool(body.get("stream")),
        tools=tuple(tools),
        prompt=prompt,
        calls_since_prompt=tuple(calls),
        results_since_prompt=results,
        cwd=find_cwd([*texts, *(t for it in items for t in texts_of(it.get("content")))]),
        json_schema=schema if isinstance(schema, Mapping) else None,
        wants_json=wants_json,
        summary=summarize(entries),
    )


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input,
        "input_tokens_details": {"cached_tokens": usage.cached},
        "output_tokens": usage.output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.input + usage.output,
    }


def _items(planned: Planned) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if planned.text:
        items.append(
            {
                "type": "message",
                "id": new_id("msg_rh_"),
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": planned.text, "annotations": []}],
            }
        )
    for call in planned.calls:
        call_id = call.call_id(CALL_PREFIX)
        if call.call.text is not None:
            items.append(
                {
                    "type": "custom_tool_call",
                    "id": new_id("ctc_rh_"),
                    "call_id": call_id,
                    "name": call.call.name,
                    "input": call.call.text,
                    "status": "completed",
                }
            )
        else:
            items.append(
                {
                    "type": "function_call",
                    "id": new_id("fc_rh_"),
                    "call_id": call_id,
                    "name": call.call.name,
                    "arguments": call.arguments_json(),
                    "status": "completed",
                }
            )
    return items


def _response(rid: str, model: str, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": output,
    }


def stream(planned: Planned, model: str) -> list[bytes]:
    rid = new_id("resp_rh_")
    seq = iter(range(1_000_000))
    out: list[bytes] = []

    def emit(kind: str, **fields: Any) -> None:
        out.append(sse({"type": kind, "sequence_number": next(seq), **fields}, kind))

    emit("response.created", response=_response(rid, model, "in_progress", []))
    emit("response.in_progress", response=_response(rid, model, "in_progress", []))
    items = _items(planned)
    for index, item in enumerate(items):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            part = {"type": "output_text", "text": "", "annotations": []}
            emit(
                "response.content_part.added",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=part,
            )
            for chunk in text_chunks(text):
                emit(
                    "response.output_text.delta",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    delta=chunk,
                )
            emit(
                "response.output_text.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                text=text,
            )
            emit(
                "response.content_part.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part={**part, "text": text},
            )
        else:
            # A function call streams `arguments`, a custom (freeform) tool call `input`; the
            # three events are otherwise the same.
            field, prefix = (
                ("arguments", "response.function_call_arguments")
                if item["type"] == "function_call"
                else ("input", "response.custom_tool_call_input")
            )
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", field: ""},
            )
            emit(f"{prefix}.delta", item_id=item["id"], output_index=index, delta=item[field])
            emit(f"{prefix}.done", item_id=item["id"], output_index=index, **{field: item[field]})
        emit("response.output_item.done", output_index=index, item=item)
    done = _response(rid, model, "completed", items)
    done["usage"] = _usage(planned.usage)
    emit("response.completed", response=done)
    return out


def complete(planned: Planned, model: str) -> dict[str, Any]:
    body = _response(new_id("resp_rh_"), model, "completed", _items(planned))
    body["usage"] = _usage(planned.usage)
    return body


_ERROR_CODES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
}


def error(status: int, message: str, retry_after: float | None = None) -> dict[str, Any]:
    kind, code = _ERROR_CODES.get(status, ("server_error", "server_error"))
    return {"error": {"message": message, "type": kind, "code": code, "param": None}}


def error_event(message: str) -> bytes:
    body = {
        "type": "response.failed",
        "response": {"status": "failed", "error": {"code": "server_error", "message": message}},
    }
    return sse(body, "response.failed")
