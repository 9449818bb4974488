"""GitHub Copilot CLI (``copilot``): ``copilot --prompt=PROMPT --output-format json ...``.

permission_mode: ``allow-all-tools`` (default: without it every tool needing approval is refused
in a headless run), ``allow-all`` (tools, paths and URLs), or ``default`` (no permission flag).
max_turns is not supported and is ignored.

The ``copilot`` name collides with AWS Copilot; :meth:`CopilotDriver.is_genuine` tells them apart.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..display import plural
from ..events import (
    Event,
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

PERMISSION_FLAGS: dict[str, list[str]] = {
    "allow-all-tools": ["--allow-all-tools"],
    "allow-all": ["--allow-all"],
    "default": [],
}
AUTH_HINT = (
    "run `copilot` and /login, or set COPILOT_GITHUB_TOKEN (or GH_TOKEN / GITHUB_TOKEN) to a "
    "fine-grained token with the Copilot Requests permission"
)
DENIED_HINT = "run with --allow-all-tools (permission_mode: allow-all-tools)"
_VERSION_RE = re.compile(r"GitHub Copilot CLI\s+v?\d+\.\d+\.\d+")
# Lifecycle and bookkeeping events with nothing to normalize.
_QUIET = frozenset(
    {
        "session.skills_loaded",
        "session.mcp_servers_loaded",
        "session.tools_updated",
        "session.info",
        "session.idle",
        "session.background_tasks_changed",
        "user.message",
        "assistant.turn_start",
        "assistant.turn_end",
        "assistant.message_start",
        "assistant.tool_call_delta",
        "assistant.idle",
        "model.call_start",
        "model.call_finished",
        "model.call_final_result",
    }
)


class CopilotParser(JsonlParser):
    agent = "copilot"

    def __init__(self) -> None:
        super().__init__()
        self.result: dict[str, Any] | None = None
        self.last_text = ""
        self.denied: list[str] = []
        self.error: dict[str, Any] | None = None  # the last session.error not followed by an answer
        self._tool_names: dict[str, str] = {}
        self._tool_ok = False
        self._usage_events = Usage()
        self._saw_usage_events = False
        self._message_output_tokens = 0

    def handle(self, obj: dict[str, Any]) -> list[Event] | None:
        kind = as_str(obj.get("type"))
        data = as_dict(obj.get("data"))
        if kind == "abort" or kind == "agent.interrupted":
            self.interrupted = as_str(data.get("reason")) or kind
            return [WarningEvent(f"copilot: {kind} ({self.interrupted})")]
        if kind in ("session.idle", "assistant.idle") and data.get("aborted") is True:
            self.interrupted = self.interrupted or "aborted"
            return []
        if kind in _QUIET:
            self.model = as_str(data.get("model")) or self.model
            return []
        if kind == "assistant.message_delta":
            delta = as_str(data.get("deltaContent"))
            return [TextEvent(delta, delta=True)] if delta else []
        if kind == "assistant.message":
            self.model = as_str(data.get("model")) or self.model
            self._message_output_tokens += as_int(data.get("outputTokens"))
            content = as_str(data.get("content"))
            if not content:
                return []
            self.last_text = content
            self.error = None
            return [TextEvent(content)]
        if kind == "tool.execution_start":
            tool_id, name = as_str(data.get("toolCallId")), as_str(data.get("toolName")) or "?"
            if tool_id:
                self._tool_names[tool_id] = name
            return [ToolCallEvent(tool_id, name, data.get("arguments"))]
        if kind == "tool.execution_complete":
            return self._tool_done(data)
        if kind == "assistant.usage":
            self._saw_usage_events = True
            self._usage_events = self._usage_events + Usage(
                as_int(data.get("inputTokens")),
                as_int(data.get("outputTokens")),
                as_int(data.get("cacheReadTokens")),
            )
            return []
        if kind in ("session.error", "session.warning"):
            if kind == "session.error":
                self.error = data
            return [WarningEvent(as_str(data.get("message")) or kind)]
        if kind == "result":
            return self._result(obj)
        return None

    def _tool_done(self, data: dict[str, Any]) -> list[Event]:
        tool_id = as_str(data.get("toolCallId"))
        ok = data.get("success") is True
        error = as_dict(data.get("error"))
        output = as_str(as_dict(data.get("result")).get("content"))
        message = output or as_str(error.get("message")) or ""
        events: list[Event] = [self.tool_result(tool_id, ok, message)]
        if ok:
            self._tool_ok = True
            for raw in as_list(data.get("fileEdits")):
                edit = as_dict(raw)
                path = as_str(edit.get("path"))
                if path:
                    events.append(self.change(path, change_kind(as_str(edit.get("kind")))))
        elif error.get("code") == "denied":
            self.denied.append(self._tool_names.get(tool_id or "", "?"))
        return events

    def _result(self, obj: dict[str, Any]) -> list[Event]:
        self.result = obj
        self.session_id = as_str(obj.get("sessionId")) or self.session_id
        usage = as_dict(obj.get("usage"))
        # codeChanges.filesModified covers the whole session (a resumed run lists the files of
        # earlier runs), so it only stands in when this run's tools changed files without saying
        # which.
        if self._tool_ok and not self._changes:
            for path in as_list(as_dict(usage.get("codeChanges")).get("filesModified")):
                if isinstance(path, str):
                    self.change(path, "modified")
        # The stream has no input-token counts unless assistant.usage events appear; 0 then.
        if self._saw_usage_events:
            self.usage = self._usage_events
        else:
            self.usage = Usage(output_tokens=self._message_output_tokens)
        return [SessionEvent(self.session_id, self.model), UsageEvent(self.usage)]

    def decide(self, exit_code: int | None, stderr: str) -> Verdict:
        # An abort / agent.interrupted / aborted idle is copilot's own word that the turn was
        # stopped, even when a result with exit code 0 follows.
        stopped = self.interruption(self.last_text)
        if stopped is not None:
            return stopped
        if self.result is None:
            return self.no_result(exit_code, stderr, AUTH_HINT, text=self.last_text)
        if self.error is not None:
            message = as_str(self.error.get("message")) or "copilot reported an error"
            error_type = as_str(self.error.get("errorType")) or ""
            if error_type in ("rate_limit", "quota") or RATE_LIMIT_RE.search(message):
                return self.fail("rate_limit", message, "wait and retry, or use another model")
            if error_type in ("authentication", "authorization") or AUTH_RE.search(message):
                return self.fail("auth", message, AUTH_HINT)
            return self.fail("failed", message, "read the message", text=self.last_text)
        if self.denied:
            # Exit 0 and a cheerful answer, but the tool was refused: the work was not done.
            return self.fail(
                "failed",
                f"copilot was refused permission for {plural(len(self.denied), 'tool call')}: "
                + ", ".join(self.denied),
                DENIED_HINT,
                text=self.last_text,
            )
        code = self.result.get("exitCode")  # the result line carries its own exit code
        if isinstance(code, int) and code != 0:
            exit_code = code
        return self.succeeded(
            exit_code, self.last_text, "read the tool results in the events", claim="finished"
        )


class CopilotDriver(NpmCliDriver):
    name = "copilot"
    executable = "copilot"
    npm_package: str | None = "@github/copilot"
    prompt_via = "arg"
    default_permission_mode = "allow-all-tools"
    permission_modes = PERMISSION_FLAGS
    version_re = _VERSION_RE
    extra_env: ClassVar[dict[str, str]] = {"COPILOT_AUTO_UPDATE": "false"}
    parser_class = CopilotParser

    def provider_env(self, endpoint: RehearsalEndpoint, step: str | None) -> ProviderEnv:
        env = {
            "COPILOT_OFFLINE": "true",
            "COPILOT_PROVIDER_BASE_URL": endpoint.base_url(self.name, step) + "/v1",
            "COPILOT_PROVIDER_TYPE": "openai",
            "COPILOT_PROVIDER_API_KEY": endpoint.key(self.name),
            "COPILOT_MODEL": endpoint.default_model(self.name),
            "COPILOT_AUTO_UPDATE": "false",
            "COPILOT_HOME": str(endpoint.home_path / ".copilot"),
        }
        if endpoint.package_cache is not None:
            # Copilot unpacks ~235 MB of itself on first start: a shared cache saves that.
            env["COPILOT_PKG_CACHE_HOME"] = str(Path(endpoint.package_cache) / "copilot")
        return ProviderEnv(env)

    def build_argv(self, request: AgentRequest) -> list[str]:
        mode = self.permission_mode(request)
        # "--prompt=" / "--resume=": a prompt starting with "-" stays a value, and the optional
        # value of --resume can never be confused with the next argument.
        argv = [request.executable, f"--prompt={request.prompt}", "--output-format", "json"]
        argv += ["--no-auto-update", "--no-ask-user", "--disable-client-telemetry"]
        argv += ["-C", str(request.workspace), *PERMISSION_FLAGS[mode]]
        if request.model:
            argv += ["--model", request.model]
        if request.resume:
            argv.append(f"--resume={request.resume}")
        return argv + request.extra_args
