"""ACP traffic onto the project's event model, and the verdict of one prompt turn.

The parser reads the raw JSON-RPC traffic as it is logged (one ``{"direction", "message"}``
object per line, see :mod:`.client`), so a live run and a saved ``rpc.log`` read through
:func:`orchestrator_nb.api.parse_transcript` give the same events and verdict.

Mapping: ``agent_message_chunk`` → text deltas; ``agent_thought_chunk`` → nothing kept as the
answer (a raw event, so the log shows it); ``tool_call`` → tool_call; a ``tool_call_update``
that completes or fails → tool_result, and its ``diff`` contents → file_change; ``plan`` → a
raw event; ``usage_update`` → usage with the reported (cumulative) cost; the prompt's response
→ the verdict (``stopReason``, and its unstable ``usage`` tokens when the agent sends them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ...errors import AgentErrorKind
from ...events import (
    ChangeKind,
    Event,
    FileChange,
    FileChangeEvent,
    PermissionEvent,
    RawEvent,
    SessionEvent,
    TextEvent,
    ToolCallEvent,
    ToolResultEvent,
    Usage,
    UsageEvent,
    WarningEvent,
)
from ...observe.redact import clip, clip_tail
from ..base import Verdict

RATE_LIMIT_RE = re.compile(r"\b429\b|rate.?limit|too many requests|quota|overloaded", re.I)
AUTH_RE = re.compile(r"auth(entication|orization)? required|unauthori[sz]ed|\b401\b|api key", re.I)
_EDIT_KINDS = {"edit", "delete", "move"}
# Some agents end a failed turn with stopReason end_turn and the error as the answer text
# (copilot: "Error: Failed to get response from the AI model; ... 429 ..."): an answer that is
# only such a line, in a turn that ran no tool, is the failure it reports.
_ERROR_ANSWER_RE = re.compile(r"^\s*Error: [^\n]+\s*$")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class AcpParser:
    """Stateful: one per prompt turn (a warm session gets a fresh one for every step)."""

    def __init__(self, workspace: Path | None = None, base_cost: float = 0.0) -> None:
        self.workspace = workspace
        self.base_cost = base_cost  # the session's running cost before this turn
        self.session_cost = base_cost
        self.session_id: str | None = None
        self.model: str | None = None
        self._pieces: list[str] = []
        self._tools: dict[str, dict[str, Any]] = {}
        self._prompt_ids: set[Any] = set()
        self._pending: dict[Any, str] = {}  # outgoing request id -> method
        self.stop_reason: str | None = None
        self.prompt_error: dict[str, Any] | None = None
        self.fatal: str | None = None  # set by the runner: the process died, a request failed
        self.crashed = False  # set by the runner: the process exited in the middle of the turn
        self.usage = Usage()
        self._cost: float | None = None
        self.changes: dict[str, FileChange] = {}
        self.agent_error: str | None = None  # the last model error the agent reported
        self.system_error = False  # the agent said the turn failed (while ending it normally)
        self._ran_tools = False

    # ------------------------------------------------------------------ feed

    def feed(self, line: str) -> list[Event]:
        try:
            obj = json.loads(line)
        except ValueError:
            return [RawEvent(line)] if line.strip() else []
        if not isinstance(obj, dict) or not isinstance(obj.get("message"), dict):
            return [RawEvent(obj)]
        return self.message(obj.get("direction"), obj["message"])

    def message(self, direction: Any, msg: Any) -> list[Event]:
        if not isinstance(msg, dict):  # valid JSON, but not a JSON-RPC message
            return [RawEvent(msg)]
        method = msg.get("method")
        if direction == "out":
            if isinstance(method, str) and "id" in msg:
                self._pending[msg["id"]] = method
                if method == "session/prompt":
                    self._prompt_ids.add(msg["id"])
                    self.session_id = self.session_id or _dict(msg.get("params")).get("sessionId")
            return []
        if method is None and "id" in msg:
            return self._response(msg)
        if method == "session/update":
            params = _dict(msg.get("params"))
            self.session_id = params.get("sessionId") or self.session_id
            return self._update(_dict(params.get("update")))
        if method == "session/request_permission":
            return []  # the decision is recorded by the permission handler, with its reason
        return [RawEvent(msg)]

    def _response(self, msg: dict[str, Any]) -> list[Event]:
        method = self._pending.pop(msg["id"], None)
        result = _dict(msg.get("result"))
        if method in ("session/new", "session/load", "session/resume"):
            sid = result.get("sessionId") or self.session_id
            self.session_id = sid if isinstance(sid, str) else self.session_id
            models = _dict(result.get("models"))
            current = models.get("currentModelId")
            self.model = current if isinstance(current, str) else self.model
            return [SessionEvent(self.session_id, self.model)]
        if msg["id"] not in self._prompt_ids:
            return []
        if "error" in msg:
            self.prompt_error = _dict(msg.get("error"))
            return [WarningEvent(str(self.prompt_error.get("message") or "prompt failed"))]
        self.stop_reason = str(result.get("stopReason") or "end_turn")
        tokens = _dict(result.get("usage"))
        if not tokens:
            # gemini reports the turn's tokens only in _meta.quota.token_count (snake_case).
            count = _dict(_dict(_dict(result.get("_meta")).get("quota")).get("token_count"))
            tokens = {
                "inputTokens": count.get("input_tokens", count.get("inputTokens")),
                "outputTokens": count.get("output_tokens", count.get("outputTokens")),
                "cachedReadTokens": count.get(
                    "cached_input_tokens", count.get("cachedInputTokens")
                ),
            }
            tokens = {k: v for k, v in tokens.items() if v is not None}
        if tokens:
            self.usage = Usage(
                _int(tokens.get("inputTokens")),
                _int(tokens.get("outputTokens")),
                _int(tokens.get("cachedReadTokens")),
                self._cost,
            )
            return [UsageEvent(self.usage)]
        return []

    def _update(self, update: dict[str, Any]) -> list[Event]:
        kind = update.get("sessionUpdate")
        if kind == "agent_message_chunk":
            text = _dict(update.get("content")).get("text")
            if isinstance(text, str) and text:
                self._pieces.append(text)
                return [TextEvent(text, delta=True)]
            return []
        if kind == "tool_call":
            tool_id = update.get("toolCallId")
            self._tools[str(tool_id)] = dict(update)
            name = str(update.get("title") or update.get("kind") or "tool")
            events: list[Event] = [ToolCallEvent(tool_id, name, update.get("rawInput"))]
            return events + self._tool_status(str(tool_id), update)
        if kind == "tool_call_update":
            tool_id = str(update.get("toolCallId"))
            known = self._tools.setdefault(tool_id, {})
            known.update({k: v for k, v in update.items() if v is not None})
            return self._tool_status(tool_id, known)
        if kind == "session_info_update":
            # codex's adapter reports model errors and a failed turn only in _meta.
            codex = _dict(_dict(update.get("_meta")).get("codex"))
            error = _dict(codex.get("error"))
            if error:
                details = error.get("additionalDetails") or error.get("message")
                self.agent_error = str(details or "error")
            if _dict(codex.get("threadStatus")).get("type") == "systemError":
                self.system_error = True
            return [RawEvent(update)]
        if kind == "usage_update":
            cost = _dict(update.get("cost"))
            amount = cost.get("amount")
            if isinstance(amount, (int, float)) and cost.get("currency", "USD") == "USD":
                # The amount is the session's running total: this turn's share is what it added.
                self.session_cost = float(amount)
                self._cost = max(0.0, float(amount) - self.base_cost)
                self.usage = Usage(
                    self.usage.input_tokens,
                    self.usage.output_tokens,
                    self.usage.cached_tokens,
                    self._cost,
                )
                return [UsageEvent(self.usage)]
            return [RawEvent(update)]
        # Thoughts, plans, available commands, mode changes: kept, not part of the answer.
        return [RawEvent(update)]

    def tool_call(self, tool_id: Any) -> dict[str, Any]:
        """What the agent has said so far of the tool call ``tool_id`` (merged updates)."""
        return dict(self._tools.get(str(tool_id), {}))

    def _tool_status(self, tool_id: str, tool: dict[str, Any]) -> list[Event]:
        status = tool.get("status")
        if status not in ("completed", "failed") or tool.get("_reported"):
            return []
        tool["_reported"] = True
        self._ran_tools = True
        output = _content_text(tool.get("content")) or _text_of(tool.get("rawOutput"))
        events: list[Event] = [ToolResultEvent(tool_id, status == "completed", output)]
        if status == "completed":
            for path, change in self._diffs(tool):
                self.changes[path] = FileChange(path, change)
                events.append(FileChangeEvent(path, change))
        return events

    def _diffs(self, tool: dict[str, Any]) -> list[tuple[str, ChangeKind]]:
        found: list[tuple[str, ChangeKind]] = []
        for item in tool.get("content") or []:
            item = _dict(item)
            if item.get("type") == "diff" and isinstance(item.get("path"), str):
                kind: ChangeKind = "added" if item.get("oldText") in (None, "") else "modified"
                if item.get("newText") == "" and tool.get("kind") == "delete":
                    kind = "deleted"
                found.append((item["path"], kind))
        if not found and tool.get("kind") in _EDIT_KINDS:
            for loc in tool.get("locations") or []:
                path = _dict(loc).get("path")
                if isinstance(path, str):
                    found.append((path, "deleted" if tool.get("kind") == "delete" else "modified"))
        return found

    # ------------------------------------------------------------------ verdict

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    def finish(self, exit_code: int | None, stderr: str) -> Verdict:
        common: dict[str, Any] = {
            "text": self.text,
            "session_id": self.session_id,
            "model": self.model,
            "usage": self.usage,
            "changes": list(self.changes.values()),
        }
        failed_answer = not self._ran_tools and _ERROR_ANSWER_RE.match(self.text)
        if self.stop_reason == "end_turn" and (self.system_error or failed_answer):
            self.fatal = self.agent_error or self.text.strip()
        elif self.stop_reason == "end_turn":
            return Verdict(True, **common)
        if self.stop_reason is not None and self.stop_reason != "end_turn":
            reason = self.stop_reason
            kind: AgentErrorKind = "cancelled" if reason == "cancelled" else "failed"
            message = f"the agent stopped its turn: {reason}"
            return Verdict(False, error_kind=kind, error_message=message, **common)
        message = str(_dict(self.prompt_error).get("message") or self.fatal or "")
        data = _text_of(_dict(self.prompt_error).get("data"))
        detail = " ".join(p for p in (message, data) if p) or clip_tail(stderr, 500).strip()
        if not detail:
            detail = f"the agent ended (exit code {exit_code}) without answering the prompt"
        if RATE_LIMIT_RE.search(detail):
            return Verdict(
                False,
                error_kind="rate_limit",
                error_message=detail,
                hint="wait and retry, or use another model",
                retryable=True,
                **common,
            )
        if AUTH_RE.search(detail) or _dict(self.prompt_error).get("code") == -32000:
            return Verdict(
                False,
                error_kind="auth",
                error_message=detail,
                hint="sign the agent in (or set its API key) and run again",
                **common,
            )
        if self.crashed:
            hint = "the agent's own stderr is in stderr.log beside rpc.log in the step's log folder"
            return Verdict(False, error_kind="crashed", error_message=detail, hint=hint, **common)
        return Verdict(False, error_kind="failed", error_message=detail, **common)


def _content_text(content: Any) -> str:
    parts: list[str] = []
    for item in content or []:
        inner = _dict(_dict(item).get("content"))
        if isinstance(inner.get("text"), str):
            parts.append(inner["text"])
    return "\n".join(parts)


def _text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return clip(json.dumps(value, ensure_ascii=False), 4000)
    except (TypeError, ValueError):
        return clip(str(value), 4000)


__all__ = ["AcpParser", "PermissionEvent"]
