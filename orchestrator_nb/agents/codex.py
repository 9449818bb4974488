"""OpenAI Codex (``codex``): ``codex exec --json ... [resume ID] -- PROMPT``.

permission_mode: codex's ``--sandbox`` policy (read-only, workspace-write, danger-full-access);
``workspace-write`` by default. ``codex exec`` never asks for approval, so the sandbox is the whole
permission story. max_turns is not supported by codex and is ignored.

Every option goes before ``resume``: after it codex rejects them with exit 2.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..events import (
    Event,
    RetryEvent,
    SessionEvent,
    TextEvent,
    ToolCallEvent,
    Usage,
    UsageEvent,
    WarningEvent,
)
from ._jsonl import (
    AUTH_RE,
    RATE_LIMIT_RE,
    JsonlParser,
    as_dict,
    as_int,
    as_list,
    as_str,
    change_kind,
)
from ._npm import NpmCliDriver
from .base import AgentRequest, ProviderEnv, Verdict

if TYPE_CHECKING:
    from ..rehearsal.endpoint import RehearsalEndpoint

SANDBOX_MODES = ("read-only", "workspace-write", "danger-full-access")
AUTH_HINT = "run `codex login`, or `printenv OPENAI_API_KEY | codex login --with-api-key`"
_RECONNECT_RE = re.compile(r"Reconnecting\.\.\.\s*(\d{1,9})\s*/\s*(\d{1,9})")
_TRANSIENT_RE = re.compile(r"stream disconnected|exceeded retry limit|timed? ?out", re.IGNORECASE)
_VERSION_RE = re.compile(r"^\s*codex-cli\s+\d+\.\d+\.\d+", re.MULTILINE)
_TOOL_ITEMS = ("command_execution", "file_change", "mcp_tool_call", "web_search")


def _minus(total: Usage, before: Usage) -> Usage:
    return Usage(
        max(0, total.input_tokens - before.input_tokens),
        max(0, total.output_tokens - before.output_tokens),
        max(0, total.cached_tokens - before.cached_tokens),
        None,
    )


class CodexParser(JsonlParser):
    """``previous_usage``: the thread's usage before this run, when resuming.

    After a resume codex reports the whole thread's running total in ``turn.completed``; that raw
    total stays in :attr:`thread_usage`, and the verdict's usage is the total minus
    ``previous_usage`` (or the raw total when it is not given).
    """

    agent = "codex"

    def __init__(self, previous_usage: Usage | None = None) -> None:
        super().__init__()
        self.previous_usage = previous_usage
        self.thread_usage: Usage | None = None
        self.completed = False
        self.failure: str | None = None
        self.last_text = ""
        self.reconnects = 0
        self._started: set[str] = set()
        self._last_error: str | None = None

    def handle(self, obj: dict[str, Any]) -> list[Event] | None:
        kind = obj.get("type")
        if kind == "thread.started":
            self.session_id = as_str(obj.get("thread_id")) or self.session_id
            return [SessionEvent(self.session_id, self.model)]
        if kind == "turn.started":
            return []
        if kind in ("item.started", "item.updated", "item.completed"):
            return self._item(kind, as_dict(obj.get("item")))
        if kind == "error":
            message = as_str(obj.get("message")) or "error"
            match = _RECONNECT_RE.search(message)
            if match:
                self.reconnects += 1
                return [RetryEvent(int(match.group(1)), message)]
            self._last_error = message
            return [WarningEvent(message)]
        if kind == "turn.completed":
            return self._completed(as_dict(obj.get("usage")))
        if kind == "turn.failed":
            self.failure = as_str(as_dict(obj.get("error")).get("message")) or "turn failed"
            # codex usually sent the same text as an "error" event just before.
            return [] if self.failure == self._last_error else [WarningEvent(self.failure)]
        return None

    def _item(self, phase: str, item: dict[str, Any]) -> list[Event] | None:
        item_type = as_str(item.get("type"))
        item_id = as_str(item.get("id"))
        if item_type == "agent_message":
            text = as_str(item.get("text"))
            if phase != "item.completed" or not text:
                return []
            self.last_text = text
            return [TextEvent(text)]
        if item_type == "error":  # non-fatal, e.g. "Model metadata ... not found"
            if phase != "item.completed":
                return []
            return [WarningEvent(as_str(item.get("message")) or "error")]
        if item_type not in _TOOL_ITEMS:
            return None  # reasoning, todo_list, and kinds newer than this driver
        events: list[Event] = []
        if item_id not in self._started:
            if item_id:
                self._started.add(item_id)
            events.append(self._call(item_type, item_id, item))
        if phase == "item.completed":
            events += self._done(item_type, item_id, item)
        return events

    def _call(self, item_type: str, item_id: str | None, item: dict[str, Any]) -> ToolCallEvent:
        if item_type == "command_execution":
            return ToolCallEvent(item_id, item_type, {"command": item.get("command")})
        if item_type == "mcp_tool_call":
            name = f"{item.get('server')}/{item.get('tool')}"
            return ToolCallEvent(item_id, name, item.get("arguments"))
        if item_type == "web_search":
            return ToolCallEvent(item_id, item_type, {"query": item.get("query")})
        return ToolCallEvent(item_id, item_type, {"changes": item.get("changes")})

    def _done(self, item_type: str, item_id: str | None, item: dict[str, Any]) -> list[Event]:
        status = item.get("status")
        ok = status in ("completed", None)
        output = ""
        if item_type == "command_execution":
            ok = ok and item.get("exit_code") in (0, None)
            output = as_str(item.get("aggregated_output")) or ""
        elif item_type == "mcp_tool_call":
            error = item.get("error")
            ok = ok and not error
            output = as_str(as_dict(error).get("message")) or str(item.get("result") or "")
        events: list[Event] = [self.tool_result(item_id, ok, output)]
        if item_type == "file_change" and ok:
            for raw in as_list(item.get("changes")):
                change = as_dict(raw)
                path = as_str(change.get("path"))
                if path:
                    events.append(self.change(path, change_kind(as_str(change.get("kind")))))
        return events

    def _completed(self, raw: dict[str, Any]) -> list[Event]:
        self.completed = True
        self.thread_usage = Usage(
            as_int(raw.get("input_tokens")),
            as_int(raw.get("output_tokens")),
            as_int(raw.get("cached_input_tokens")),
        )
        events: list[Event] = []
        if self.previous_usage is None:
            self.usage = self.thread_usage
        else:
            before, total = self.previous_usage, self.thread_usage
            self.usage = _minus(total, before)
            if (
                before.input_tokens > total.input_tokens
                or before.output_tokens > total.output_tokens
                or before.cached_tokens > total.cached_tokens
            ):
                events.append(
                    WarningEvent("previous_usage is above codex's thread total; clamped at 0")
                )
        events.append(UsageEvent(self.usage))
        return events

    def finish(self, exit_code: int | None, stderr: str) -> Verdict:
        verdict = super().finish(exit_code, stderr)
        verdict.session_usage = self.thread_usage  # a later resume subtracts this
        return verdict

    def decide(self, exit_code: int | None, stderr: str) -> Verdict:
        if self.failure is not None:
            message = self.failure
            if RATE_LIMIT_RE.search(message):
                return self.fail("rate_limit", message, "wait and retry, or use another model")
            if AUTH_RE.search(message):
                return self.fail("auth", message, AUTH_HINT)
            transient = self.reconnects > 0 or bool(_TRANSIENT_RE.search(message))
            return self.fail(
                "failed",
                message,
                "retry later: the connection to the model kept failing"
                if transient
                else "read the message; the thread can be resumed",
                text=self.last_text,
                retryable=transient,
            )
        if not self.completed:
            return self.no_result(exit_code, stderr, AUTH_HINT, text=self.last_text)
        # codex exits 0 even when every command failed; sandbox refusals look like this.
        return self.succeeded(
            exit_code,
            self.last_text,
            "read the tool results; if the sandbox blocked them, use "
            "permission_mode: danger-full-access (--sandbox danger-full-access)",
            claim="completed the turn",
        )


class CodexDriver(NpmCliDriver):
    name = "codex"
    executable = "codex"
    npm_package: str | None = "@openai/codex"
    prompt_via = "arg"
    default_permission_mode = "workspace-write"
    permission_modes = SANDBOX_MODES
    mode_label = "sandbox mode"
    version_re = _VERSION_RE
    parser_class = CodexParser
    # codex reads its key from the variable its model provider names; this one is ours.
    rehearsal_key_var = "ORCHESTRATOR_REHEARSAL_KEY"
    rehearsal_provider = "rehearsal"

    def provider_env(self, endpoint: RehearsalEndpoint, step: str | None) -> ProviderEnv:
        env = {
            "CODEX_HOME": str(endpoint.home_path / ".codex"),
            self.rehearsal_key_var: endpoint.key(self.name),
        }
        name = self.rehearsal_provider
        p = f"model_providers.{name}"
        flags = [
            f"model_provider={name}",
            f"{p}.name={name}",
            f"{p}.base_url={endpoint.base_url(self.name, step)}/v1",
            f"{p}.env_key={self.rehearsal_key_var}",
            f"{p}.wire_api=responses",
        ]
        retries = endpoint.cli_max_retries
        if retries is not None:
            flags += [f"{p}.request_max_retries={retries}", f"{p}.stream_max_retries={retries}"]
        args = [arg for flag in flags for arg in ("-c", flag)]
        return ProviderEnv(env, (*args, "-m", endpoint.default_model(self.name)))

    def new_parser(self, previous_usage: Usage | None = None) -> CodexParser:
        # codex reports the thread's running total after a resume: subtract what came before.
        return CodexParser(previous_usage)

    def build_argv(self, request: AgentRequest) -> list[str]:
        mode = self.permission_mode(request)
        argv = [request.executable, "exec", "--json", "--skip-git-repo-check", "--color", "never"]
        argv += ["-C", str(request.workspace), "--sandbox", mode]
        if request.model:
            argv += ["-m", request.model]
        argv += request.extra_args
        if request.resume:
            argv += ["resume", request.resume]
        # "--" keeps a prompt that starts with "-" from being read as an option.
        return [*argv, "--", request.prompt]
