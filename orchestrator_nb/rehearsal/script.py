"""The planner: which model response a request gets, in provider-neutral terms.

A scripted turn is a list of actions. One model response carries the texts up to the next
tool action plus that tool call; the CLI runs the tool and asks again with the result, and
the next response continues after the action that the last call (found by its id marker)
performed. Text after the last tool action becomes the final response. Because progress is
read from the request, nothing is remembered between requests.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .context import Exchange, Marker
from .scenario import Fault, Reply, Scenario, Usage
from .tools import Call, plan_action


@dataclass(frozen=True)
class PlannedCall:
    """A tool call plus the marker that ends up in its id."""

    call: Call
    marker: Marker

    def call_id(self, prefix: str) -> str:
        return f"{prefix}{self.marker.tag()}_{secrets.token_hex(4)}"

    def arguments_json(self) -> str:
        return json.dumps(dict(self.call.arguments or {}), ensure_ascii=False)


@dataclass(frozen=True)
class Planned:
    """One model response: text, at most one tool call, usage, and where it came from."""

    text: str
    calls: tuple[PlannedCall, ...] = ()
    usage: Usage = field(default_factory=lambda: Usage())
    turn: int | None = None  # index in scenario.turns; -1 the default; None a utility call
    label: str = ""
    fault: Fault | None = None

    @property
    def final(self) -> bool:
        return not self.calls


def plan(scenario: Scenario, exchange: Exchange) -> Planned:
    """The response for ``exchange`` under ``scenario``."""
    if exchange.utility:
        return _utility(scenario, exchange)
    index, reply = scenario.select(exchange.agent, exchange.step, exchange.prompt)
    label = _label(scenario, index)
    steps = reply.steps
    last = exchange.last_marker
    start = 0
    if last is not None and last.turn == index and last.action < len(steps):
        if last.sub + 1 < last.count:
            # The preparatory call (a Read before claude may Write) is done; make the main one.
            calls = plan_action(steps[last.action], exchange.tools, exchange.cwd)
            if not isinstance(calls, str):
                marker = Marker(index, last.action, last.sub + 1, last.count)
                chosen = calls[-1] if len(calls) != last.count else calls[last.sub + 1]
                planned = (PlannedCall(chosen, marker),)
                return Planned("", planned, reply.usage, index, label, reply.fault)
        start = last.action + 1
    elif exchange.results_since_prompt:
        # The CLI did not keep our call ids: count tool results instead (one per action).
        start = _after_tool_actions(reply, exchange.results_since_prompt)
    return _respond_from(reply, index, label, start, exchange)


def _respond_from(reply: Reply, index: int, label: str, start: int, ex: Exchange) -> Planned:
    texts: list[str] = []
    steps = reply.steps
    for position in range(start, len(steps)):
        action = steps[position]
        if action.say is not None:
            texts.append(action.say)
            continue
        calls = plan_action(action, ex.tools, ex.cwd)
        if isinstance(calls, str):
            texts.append(calls)
            continue
        marker = Marker(index, position, 0, len(calls))
        planned = PlannedCall(calls[0], marker)
        return Planned("\n\n".join(texts), (planned,), reply.usage, index, label, reply.fault)
    text = "\n\n".join(t for t in texts if t) or "Done."
    return Planned(text, (), reply.usage, index, label, reply.fault)


def _after_tool_actions(reply: Reply, results: int) -> int:
    seen = 0
    for position, action in enumerate(reply.steps):
        if action.say is None:
            seen += 1
            if seen == results:
                return position + 1
    return len(reply.steps)


def _label(scenario: Scenario, index: int) -> str:
    if index < 0:
        return "default"
    name = scenario.turns[index].name
    return f"turn {index}" + (f" ({name})" if name else "")


# ----------------------------------------------------------------------------- utility calls


def _utility(scenario: Scenario, exchange: Exchange) -> Planned:
    """Side calls (titles, routing, summaries): short, valid, and never the scripted turn."""
    if exchange.wants_json or exchange.json_schema is not None:
        value = example_json(exchange.json_schema or {"type": "object"})
        text = json.dumps(value)
    else:
        text = f"Rehearsal ({scenario.name})"
    return Planned(text, (), Usage(input=20, output=5), None, "utility")


def example_json(schema: Mapping[str, Any], key: str = "", depth: int = 0) -> Any:
    """A small value that satisfies ``schema`` (JSON Schema, or Gemini's upper-case types)."""
    if depth > 8:
        return None
    for combo in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combo)
        if isinstance(options, list) and options and isinstance(options[0], Mapping):
            return example_json(options[0], key, depth + 1)
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        # Gemini asks who speaks next; "model" would make it continue on its own forever.
        return "user" if "user" in enum else enum[0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = str(kind or ("object" if "properties" in schema else "string")).lower()
    folded = key.casefold()
    if kind == "object":
        props = schema.get("properties")
        if not isinstance(props, Mapping):
            return {}
        return {
            str(name): example_json(sub, str(name), depth + 1)
            for name, sub in props.items()
            if isinstance(sub, Mapping)
        }
    if kind == "array":
        items = schema.get("items")
        count = int(schema.get("minItems", 0) or 0)
        if isinstance(items, Mapping):
            return [example_json(items, key, depth + 1) for _ in range(count)]
        return []
    if kind in ("integer", "number"):
        if "minimum" in schema:
            return schema["minimum"]
        return 0 if any(w in folded for w in ("confidence", "probability")) else 1
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    if "speaker" in folded:
        return "user"
    return "Rehearsal" if "title" in folded else "rehearsal"


def text_chunks(text: str, size: int = 48) -> list[str]:
    """Split text into a few deltas at spaces, the way a model streams it."""
    if not text:
        return []
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            space = text.rfind(" ", start + 1, end)
            if space > start:
                end = space + 1
        chunks.append(text[start:end])
        start = end
    return chunks


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(6)}"


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; ``data`` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()
