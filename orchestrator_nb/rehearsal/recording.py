"""What the server records about every request, with secrets kept out.

Authorization headers, API-key headers and ``key=`` query parameters are never stored, and
any value seen in them is masked wherever else it appears (a prompt that quotes a key, a
URL), so a recording can be attached to a bug report as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

_SECRET_HEADER = re.compile(r"auth|api[-_]?key|token|secret|cookie|password|credential", re.I)
_SECRET_QUERY = re.compile(r"^(key|api[-_]?key|access_token|token)$", re.I)
_KEPT_HEADERS = (
    "user-agent",
    "content-type",
    "accept",
    "anthropic-version",
    "anthropic-beta",
    "x-stainless-retry-count",
    "session-id",
    "x-claude-code-session-id",
    "x-client-request-id",
)
MASK = "***"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the rehearsal server answered (or refused)."""

    seq: int
    at: float  # seconds since the server started
    method: str
    path: str  # after the /r/AGENT/STEP prefix, secrets removed from the query
    agent: str  # claude, codex, gemini, copilot, or "unknown"
    step: str | None
    kind: str  # turn, utility, count_tokens, models, probe, unknown, invalid
    protocol: str  # anthropic, openai-responses, openai-chat, gemini, none
    status: int
    model: str | None = None
    stream: bool = False
    tools: tuple[str, ...] = ()
    prompt: str = ""
    messages: tuple[str, ...] = ()
    tool_results: int = 0
    cwd: str | None = None
    turn: str | None = None  # "turn 0 (implement)", "default", "utility"
    reply_text: str = ""
    reply_calls: tuple[str, ...] = ()  # names of the tools the answer called
    fault: str | None = None
    session: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["headers"] = dict(self.headers)
        return data


def secret_values(headers: Mapping[str, str], query: str) -> set[str]:
    """Credentials a request carries: auth header values, bearer tokens, ``key=`` params."""
    found: set[str] = set()
    for name, value in headers.items():
        if _SECRET_HEADER.search(name) and value:
            found.add(value)
            if " " in value:
                found.add(value.split(" ", 1)[1])
    for name, value in parse_qsl(query, keep_blank_values=True):
        if _SECRET_QUERY.match(name) and value:
            found.add(value)
    return {v for v in found if len(v) >= 3}


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name.lower(): value
        for name, value in headers.items()
        if name.lower() in _KEPT_HEADERS and not _SECRET_HEADER.search(name)
    }


def safe_query(query: str) -> str:
    pairs = [
        (k, MASK if _SECRET_QUERY.match(k) else v)
        for k, v in parse_qsl(query, keep_blank_values=True)
    ]
    return urlencode(pairs, safe="*")


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` with every secret replaced by ``***``, recursively."""
    ordered = sorted(set(secrets), key=len, reverse=True)
    if not ordered:
        return value
    if isinstance(value, str):
        for secret in ordered:
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, tuple):
        return tuple(scrub(v, ordered) for v in value)
    if isinstance(value, list):
        return [scrub(v, ordered) for v in value]
    if isinstance(value, Mapping):
        return {k: scrub(v, ordered) for k, v in value.items()}
    return value


def to_jsonl(records: Iterable[RecordedRequest]) -> str:
    return "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records)
