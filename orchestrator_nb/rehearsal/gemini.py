"""Gemini API (``/v1beta/models/MODEL:ACTION``), as Gemini CLI calls it with an API key.

``:streamGenerateContent?alt=sse`` carries the agent loop; ``:generateContent`` serves utility
calls (routing, next-speaker checks) that expect JSON text when ``responseMimeType`` is
``application/json``; ``:countTokens`` answers ``totalTokens``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .context import Exchange, ToolSpec, clean_prompt, find_cwd, summarize, texts_of
from .scenario import Usage
from .script import Planned, new_id, sse, text_chunks

CALL_PREFIX = "rhcall_"


def parse(
    body: Mapping[str, Any], agent: str, step: str | None, *, model: str, stream: bool
) -> Exchange:
    tools: list[ToolSpec] = []
    for group in body.get("tools") or []:
        if not isinstance(group, Mapping):
            continue
        for decl in group.get("functionDeclarations") or []:
            if isinstance(decl, Mapping) and isinstance(decl.get("name"), str):
                schema = decl.get("parametersJsonSchema") or decl.get("parameters")
                tools.append(ToolSpec.from_schema(decl["name"], schema, decl.get("description")))
    contents = [c for c in body.get("contents") or [] if isinstance(c, Mapping)]
    prompt, prompt_at = "", -1
    for i, content in enumerate(contents):
        parts = _parts(content)
        if content.get("role", "user") != "user" or any("functionResponse" in p for p in parts):
            continue
        text = clean_prompt("\n".join(str(p["text"]) for p in parts if "text" in p))
        if text:
            prompt, prompt_at = text, i
    calls: list[str] = []
    results = 0
    entries: list[tuple[str, str]] = []
    for i, content in enumerate(contents):
        role = str(content.get("role", "user"))
        for part in _parts(content):
            if isinstance(part.get("functionCall"), Mapping):
                call = part["functionCall"]
                entries.append((role, f"functionCall {call.get('name')}"))
                if i > prompt_at:
                    calls.append(str(call.get("id") or call.get("name") or ""))
            elif "functionResponse" in part:
                entries.append(("tool", "functionResponse"))
                if i > prompt_at:
                    results += 1
            elif "text" in part and not part.get("thought"):
                entries.append((role, clean_prompt(str(part["text"])) or "[context]"))
    config = body.get("generationConfig")
    config = config if isinstance(config, Mapping) else {}
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    system = texts_of(body.get("systemInstruction"))
    return Exchange(
        agent=agent,
        step=step,
        model=model,
        stream=stream,
        tools=tuple(tools),
        prompt=prompt,
        calls_since_prompt=tuple(calls),
        results_since_prompt=results,
        cwd=find_cwd([*system, *texts_of(contents)]),
        json_schema=schema if isinstance(schema, Mapping) else None,
        wants_json=config.get("responseMimeType") == "application/json",
        summary=summarize(entries),
    )


def _parts(content: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    parts = content.get("parts")
    return [p for p in parts if isinstance(p, Mapping)] if isinstance(parts, list) else []


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "promptTokenCount": usage.input,
        "candidatesTokenCount": usage.output,
        "totalTokenCount": usage.input + usage.output,
        "cachedContentTokenCount": usage.cached,
    }


def _call_parts(planned: Planned) -> list[dict[str, Any]]:
    return [
        {
            "functionCall": {
                "id": call.call_id(CALL_PREFIX),
                "name": call.call.name,
                "args": dict(call.call.arguments or {}),
            }
        }
        for call in planned.calls
    ]


def _chunk(
    parts: list[dict[str, Any]], model: str, rid: str, finish: Usage | None = None
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    body: dict[str, Any] = {"candidates": [candidate], "modelVersion": model, "responseId": rid}
    if finish is not None:
        candidate["finishReason"] = "STOP"
        body["usageMetadata"] = _usage(finish)
    return body


def stream(planned: Planned, model: str) -> list[bytes]:
    rid = new_id("rh")
    bodies = [[{"text": piece}] for piece in text_chunks(planned.text)]
    bodies.extend([part] for part in _call_parts(planned))
    if not bodies:
        bodies = [[{"text": ""}]]
    events = [sse(_chunk(parts, model, rid)) for parts in bodies[:-1]]
    events.append(sse(_chunk(bodies[-1], model, rid, planned.usage)))
    return events


def complete(planned: Planned, model: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": planned.text}] if planned.text else []
    parts.extend(_call_parts(planned))
    return _chunk(parts or [{"text": ""}], model, new_id("rh"), planned.usage)


def count_tokens(body: Mapping[str, Any]) -> dict[str, Any]:
    return {"totalTokens": max(1, len(json.dumps(body.get("contents", []))) // 4)}


def models(names: list[str]) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": f"models/{name}",
                "displayName": name,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }
            for name in names
        ]
    }


_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error(status: int, message: str, retry_after: float | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": _STATUS.get(status, "UNKNOWN"),
        "details": [],
    }
    if retry_after is not None:
        # Gemini CLI reads the delay from RetryInfo, not from the retry-after header.
        body["details"].append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"}
        )
    return {"error": body}


def error_event(message: str) -> bytes:
    return sse(error(500, message))
