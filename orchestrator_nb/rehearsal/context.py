"""What the server needs to know about one model request, whatever the wire protocol.

Each protocol module parses its request body into an :class:`Exchange`: the agent and step
(from the URL prefix), the tools the CLI offers, the latest real user prompt, the tool calls
made since that prompt, and the CLI's working directory as the request states it. The planner
(:mod:`.script`) only ever looks at an Exchange, so the four protocols share one brain.

The server is stateless about conversations on purpose: the CLIs send the whole history with
every request, and the ids of the tool calls the server made carry a marker saying which
scripted action they performed. A resumed session, a retried request or two CLIs running at
once therefore need no bookkeeping.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Blocks the CLIs wrap around context they inject into user messages (system reminders,
# environment descriptions, dates). They are not what the user asked, so matching ignores them.
_TAGGED_BLOCK = re.compile(r"<([A-Za-z][\w-]*)(?:\s[^>]*)?>.*?</\1>", re.DOTALL)
# Codex sends AGENTS.md content as a user message of its own.
_INJECTED_PREFIXES = ("# AGENTS.md instructions", "<environment_context>", "<user_instructions>")

_CWD_PATTERNS = (
    re.compile(r"<cwd>([^<\n]+)</cwd>"),  # codex environment_context
    re.compile(r"Primary working directory:\s*(\S[^\n]*)"),  # claude system prompt
    re.compile(r"Current working directory:\s*(\S[^\n]*)"),  # copilot system prompt
    re.compile(r"Workspace Directories:\**\s*\n\s*-\s*(\S[^\n]*)"),  # gemini session context
    re.compile(r"[Ww]orking directory:\s*(/[^\n]*)"),
)

MARKER = re.compile(r"rh_(d|\d+)_(\d+)_(\d+)_(\d+)")


@dataclass(frozen=True)
class ToolSpec:
    """One tool offered by the CLI, reduced to what argument mapping needs."""

    name: str
    properties: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    description: str = ""
    freeform: bool = False  # codex "custom" tools take raw text, not JSON arguments

    @classmethod
    def from_schema(
        cls, name: str, schema: Any, description: Any = "", *, freeform: bool = False
    ) -> ToolSpec:
        props: dict[str, Mapping[str, Any]] = {}
        required: tuple[str, ...] = ()
        if isinstance(schema, Mapping):
            raw = schema.get("properties")
            if isinstance(raw, Mapping):
                props = {str(k): v for k, v in raw.items() if isinstance(v, Mapping)}
            req = schema.get("required")
            if isinstance(req, list):
                required = tuple(str(r) for r in req)
        return cls(
            name=name,
            properties=props,
            required=required,
            description=description if isinstance(description, str) else "",
            freeform=freeform,
        )


@dataclass(frozen=True)
class Marker:
    """Which scripted action a tool call of ours performed: turn, action, sub-step of n."""

    turn: int
    action: int
    sub: int
    count: int

    def tag(self) -> str:
        turn = "d" if self.turn < 0 else str(self.turn)
        return f"rh_{turn}_{self.action}_{self.sub}_{self.count}"

    @classmethod
    def find(cls, call_id: str) -> Marker | None:
        match = MARKER.search(call_id)
        if match is None:
            return None
        turn = -1 if match.group(1) == "d" else int(match.group(1))
        return cls(turn, int(match.group(2)), int(match.group(3)), int(match.group(4)))


@dataclass
class Exchange:
    """A model request in provider-neutral terms."""

    agent: str
    step: str | None
    model: str
    stream: bool
    tools: tuple[ToolSpec, ...] = ()
    prompt: str = ""
    calls_since_prompt: tuple[str, ...] = ()  # ids of assistant tool calls, oldest first
    results_since_prompt: int = 0
    cwd: str | None = None
    json_schema: Mapping[str, Any] | None = None  # a utility call that wants JSON text back
    wants_json: bool = False
    summary: tuple[str, ...] = ()

    @property
    def utility(self) -> bool:
        """A side call (title, routing, summary) rather than a turn of the agent loop.

        Agent-loop requests offer tools or stream; the CLIs' side calls do neither, or ask
        for JSON (gemini's router and next-speaker checks).
        """
        if self.tools:
            return False
        return not self.stream or self.wants_json or self.json_schema is not None

    @property
    def last_marker(self) -> Marker | None:
        for call_id in reversed(self.calls_since_prompt):
            marker = Marker.find(call_id)
            if marker is not None:
                return marker
        return None


def clean_prompt(text: str) -> str:
    """User-written text with the CLI's injected tagged context removed."""
    stripped = text.strip()
    if stripped.startswith(_INJECTED_PREFIXES):
        return ""
    return _TAGGED_BLOCK.sub("", text).strip()


def find_cwd(texts: Iterable[str]) -> str | None:
    """The working directory a CLI states in its system prompt or context messages."""
    for text in texts:
        for pattern in _CWD_PATTERNS:
            match = pattern.search(text)
            if match:
                value = match.group(1).strip().rstrip("/") or "/"
                if value.startswith("/"):
                    return value
    return None


def snippet(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def summarize(entries: Sequence[tuple[str, str]], keep: int = 12) -> tuple[str, ...]:
    """The last few ``role: text`` lines of a conversation, for the recording."""
    lines = [f"{role}: {snippet(text)}" for role, text in entries if text or role]
    if len(lines) > keep:
        lines = [f"… {len(lines) - keep} earlier", *lines[-keep:]]
    return tuple(lines)


def texts_of(value: Any) -> list[str]:
    """Every string found under ``text`` keys (or plain strings) in a JSON value."""
    found: list[str] = []
    if isinstance(value, str):
        found.append(value)
    elif isinstance(value, Mapping):
        text = value.get("text")
        if isinstance(text, str):
            found.append(text)
        for key in ("content", "parts"):
            if key in value and not isinstance(value[key], str):
                found.extend(texts_of(value[key]))
            elif key == "content" and isinstance(value.get(key), str):
                found.append(value[key])
    elif isinstance(value, list):
        for item in value:
            found.extend(texts_of(item))
    return found
