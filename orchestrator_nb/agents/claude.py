"""Claude Code (``claude``): ``claude -p ... --output-format stream-json --verbose``.

permission_mode: one of claude's own ``--permission-mode`` choices; ``acceptEdits`` by default,
so file edits go through in a headless run (in ``default`` mode, called ``manual`` by newer
releases, every write is refused).

max_turns is not passed: ``--max-turns`` is not in the pinned 2.1.332 ``--help`` (the CLI still
accepts it, so ``extra_args: ["--max-turns", "5"]`` works at your own risk).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from ..display import plural
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
    UNKNOWN_SESSION_HINT,
    UNKNOWN_SESSION_RE,
    JsonlParser,
    as_dict,
    as_float,
    as_int,
    as_list,
    as_str,
    change_kind,
)
from ._npm import NpmCliDriver
from .base import AgentRequest, ProviderEnv, Verdict

if TYPE_CHECKING:
    from ..rehearsal.endpoint import RehearsalEndpoint

# "manual" is the newer releases' name of "default" (which they still accept): both pass through.
PERMISSION_MODES = (
    "acceptEdits",
    "auto",
    "bypassPermissions",
    "default",
    "dontAsk",
    "manual",
    "plan",
)
# The user line claude writes when it is stopped mid-turn (newer releases).
_INTERRUPTED = "[Request interrupted by user"
# Tools whose successful result means a file on disk changed, and the input key naming it.
_FILE_TOOLS = {
    "Write": "file_path",
    "Edit": "file_path",
    "MultiEdit": "file_path",
    "NotebookEdit": "notebook_path",
}
AUTH_HINT = "run `claude` and /login, or set ANTHROPIC_API_KEY"
_VERSION_RE = re.compile(r"^\s*\d+\.\d+\.\d+\S*\s+\(Claude Code\)", re.MULTILINE)


def _usage(raw: dict[str, Any], cost: float | None) -> Usage:
    # Anthropic's input_tokens leaves out cache writes and reads; ours counts every prompt token
    # (as codex and gemini do), with the cache reads also shown as cached_tokens.
    cached = as_int(raw.get("cache_read_input_tokens"))
    prompt = as_int(raw.get("input_tokens")) + as_int(raw.get("cache_creation_input_tokens"))
    return Usage(prompt + cached, as_int(raw.get("output_tokens")), cached, cost)


def _tool_output(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = [as_str(as_dict(block).get("text")) for block in as_list(content)]
    return "\n".join(p for p in parts if p)


class ClaudeParser(JsonlParser):
    agent = "claude"

    def __init__(self) -> None:
        super().__init__()
        self.result: dict[str, Any] | None = None
        self.last_text = ""
        self.assistant_error: str | None = None
        self.denied_live: list[str] = []  # tools named by system/permission_denied lines
        self._file_tools: dict[str, str] = {}  # tool_use id -> path
        # Each content block arrives on its own line repeating the message's usage: keep one
        # usage per message id (only used when the final result never came).
        self._message_usage: dict[str, dict[str, Any]] = {}

    def handle(self, obj: dict[str, Any]) -> list[Event] | None:
        kind = obj.get("type")
        if kind == "system":
            return self._system(obj)
        if kind == "assistant":
            return self._assistant(obj)
        if kind == "user":
            return self._user(obj)
        if kind == "stream_event":
            event = as_dict(obj.get("event"))
            delta = as_dict(event.get("delta"))
            text = as_str(delta.get("text"))
            if event.get("type") == "content_block_delta" and text:
                return [TextEvent(text, delta=True)]
            return []
        if kind == "result":
            return self._result(obj)
        return None

    def _system(self, obj: dict[str, Any]) -> list[Event] | None:
        subtype = obj.get("subtype")
        if subtype == "init":
            self.session_id = as_str(obj.get("session_id")) or self.session_id
            self.model = as_str(obj.get("model")) or self.model
            return [SessionEvent(self.session_id, self.model)]
        if subtype == "api_retry":
            status = obj.get("error_status")
            reason = str(obj.get("error") or "api error") + (f" ({status})" if status else "")
            delay_ms = as_float(obj.get("retry_delay_ms"))
            delay = None if delay_ms is None else delay_ms / 1000
            return [RetryEvent(as_int(obj.get("attempt")), reason, delay)]
        if subtype == "status":
            return []
        if subtype == "permission_denied":
            # Newer releases announce each refused tool as it happens (the result lists them too).
            name = (
                as_str(obj.get("tool_name"))
                or as_str(as_dict(obj.get("tool")).get("name"))
                or as_str(obj.get("tool"))
                or "a tool"
            )
            self.denied_live.append(name)
            return [WarningEvent(f"permission denied: {name}")]
        return None

    def _assistant(self, obj: dict[str, Any]) -> list[Event]:
        message = as_dict(obj.get("message"))
        self.assistant_error = as_str(obj.get("error")) or self.assistant_error
        message_id = as_str(message.get("id"))
        if message_id and isinstance(message.get("usage"), dict):
            self._message_usage[message_id] = message["usage"]
        events: list[Event] = []
        for block in as_list(message.get("content")):
            block = as_dict(block)
            if block.get("type") == "text" and as_str(block.get("text")):
                self.last_text = block["text"]
                events.append(TextEvent(block["text"]))
            elif block.get("type") == "tool_use":
                tool_id, name = as_str(block.get("id")), as_str(block.get("name")) or "?"
                tool_input = block.get("input")
                path = as_str(as_dict(tool_input).get(_FILE_TOOLS.get(name, "")))
                if tool_id and path:
                    self._file_tools[tool_id] = path
                events.append(ToolCallEvent(tool_id, name, tool_input))
        return events

    def _user(self, obj: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        details = as_dict(obj.get("tool_use_result"))  # absent or a string when the tool failed
        content = as_dict(obj.get("message")).get("content")
        if isinstance(content, str) and content.startswith(_INTERRUPTED):
            self.interrupted = "interrupted by user"
        for block in as_list(content):
            block = as_dict(block)
            text = as_str(block.get("text")) if block.get("type") == "text" else None
            if text and text.startswith(_INTERRUPTED):
                self.interrupted = "interrupted by user"
            if block.get("type") != "tool_result":
                continue
            tool_id = as_str(block.get("tool_use_id"))
            ok = block.get("is_error") is not True
            events.append(self.tool_result(tool_id, ok, _tool_output(block.get("content"))))
            path = self._file_tools.pop(tool_id, None) if tool_id else None
            if ok and path:
                path = as_str(details.get("filePath")) or path
                events.append(self.change(path, change_kind(as_str(details.get("type")))))
        return events

    def _result(self, obj: dict[str, Any]) -> list[Event]:
        self.result = obj
        events: list[Event] = []
        session_id = as_str(obj.get("session_id"))
        if session_id and session_id != self.session_id:
            self.session_id = session_id
            events.append(SessionEvent(session_id, self.model))
        self.usage = _usage(as_dict(obj.get("usage")), as_float(obj.get("total_cost_usd")))
        events.append(UsageEvent(self.usage))
        for denial in as_list(obj.get("permission_denials")):
            name = as_str(as_dict(denial).get("tool_name")) or "a tool"
            events.append(WarningEvent(f"permission denied: {name}"))
        return events

    def decide(self, exit_code: int | None, stderr: str) -> Verdict:
        result = self.result
        if result is None and self.interrupted is not None:
            # Stopped with SIGINT, claude writes "[Request interrupted by user]", no result, exit 0.
            return self.fail(
                "cancelled",
                f"claude was {self.interrupted}",
                "run it again; resume the session to continue where it stopped",
                text=self.last_text,
            )
        if result is None:
            usage = Usage()
            for raw in self._message_usage.values():
                usage = usage + _usage(raw, None)
            self.usage = usage
            return self.no_result(exit_code, stderr, AUTH_HINT, text=self.last_text)
        text = as_str(result.get("result")) or self.last_text
        subtype = as_str(result.get("subtype")) or "?"
        # Auth failures and exhausted 429s arrive as subtype "success" with is_error true.
        if result.get("is_error") is True or subtype != "success":
            return self._error(result, subtype, text)
        stopped = self.interruption(text)
        if stopped is not None:
            return stopped
        denials = [as_dict(d) for d in as_list(result.get("permission_denials"))]
        denials = denials or [{"tool_name": name} for name in self.denied_live]
        if denials:
            # The run "succeeded" and the text may even claim the edit was made, but the tool was
            # refused: a caller expects the work to be done, so this is a failure.
            names = ", ".join(
                f"{as_str(d.get('tool_name')) or '?'}"
                f"({as_str(as_dict(d.get('tool_input')).get('file_path')) or '…'})"
                for d in denials
            )
            return self.fail(
                "failed",
                f"claude was refused permission for {plural(len(denials), 'tool call')}: {names}",
                "run with --permission-mode acceptEdits (permission_mode: acceptEdits), or "
                "bypassPermissions for shell commands",
                text=text,
            )
        return self.succeeded(exit_code, text, "read the tool results in the events")

    def _error(self, result: dict[str, Any], subtype: str, text: str) -> Verdict:
        errors = [e for e in as_list(result.get("errors")) if isinstance(e, str)]
        message = "; ".join(errors) or text or f"claude ended with {subtype}"
        status = as_int(result.get("api_error_status"))
        if subtype == "error_max_turns":
            return self.fail(
                "failed",
                message,
                "raise the turn limit (--max-turns in extra_args), or split the task",
                text=text,
            )
        if status in (429, 529) or self.assistant_error == "rate_limit":
            return self.fail("rate_limit", message, "wait and retry, or use another model")
        if (
            status in (401, 403)
            or self.assistant_error == "authentication_failed"
            or AUTH_RE.search(message)
        ):
            return self.fail("auth", message, AUTH_HINT)
        if RATE_LIMIT_RE.search(message):
            return self.fail("rate_limit", message, "wait and retry, or use another model")
        if UNKNOWN_SESSION_RE.search(message):
            return self.fail("config", message, UNKNOWN_SESSION_HINT)
        return self.fail(
            "failed", message, "read the message; the session can be resumed", text=text
        )


class ClaudeDriver(NpmCliDriver):
    name = "claude"
    executable = "claude"
    npm_package: str | None = "@anthropic-ai/claude-code"
    prompt_via = "arg"
    default_permission_mode = "acceptEdits"
    permission_modes = PERMISSION_MODES
    version_re = _VERSION_RE
    extra_env: ClassVar[dict[str, str]] = {
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # Through the ACP adapter, Claude Code would ask the model for a predicted next prompt
        # after every turn: a paid request whose answer nothing here shows.
        "CLAUDE_CODE_ENABLE_PROMPT_SUGGESTION": "false",
    }
    parser_class = ClaudeParser

    def provider_env(self, endpoint: RehearsalEndpoint, step: str | None) -> ProviderEnv:
        env = {
            "ANTHROPIC_BASE_URL": endpoint.base_url(self.name, step),
            "ANTHROPIC_API_KEY": endpoint.key(self.name),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
        }
        model = endpoint.model_for(self.name)
        if model:
            env["ANTHROPIC_MODEL"] = model
        if endpoint.cli_max_retries is not None:
            env["CLAUDE_CODE_MAX_RETRIES"] = str(endpoint.cli_max_retries)
        return ProviderEnv(env)

    def build_argv(self, request: AgentRequest) -> list[str]:
        mode = self.permission_mode(request)
        argv = [request.executable, "-p", "--output-format", "stream-json", "--verbose"]
        argv += ["--permission-mode", mode]
        if not request.trusted:
            # An untrusted folder's .claude/settings*.json (hooks run programs) and .mcp.json
            # (servers are programs) are not loaded; the user's own settings still are.
            argv += ["--setting-sources", "user", "--strict-mcp-config"]
        if request.model:
            argv += ["--model", request.model]
        if request.resume:
            argv += ["--resume", request.resume]
        argv += request.extra_args
        # After "--" the prompt is never taken for an option, even when it starts with "-", and a
        # variadic option in extra_args (--add-dir a b) cannot swallow it.
        return [*argv, "--", request.prompt]
