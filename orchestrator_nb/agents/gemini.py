"""Gemini CLI (``gemini``): ``gemini --prompt=PROMPT -o stream-json ...``.

permission_mode: gemini's ``--approval-mode`` (default, auto_edit, yolo, plan); ``auto_edit`` by
default, the counterpart of claude's acceptEdits. max_turns has no flag (it is the
``maxSessionTurns`` setting) and is ignored.

Gemini reports fatal errors through its exit code (41 auth, 52 config, 55 untrusted folder,
173 = 429 mod 256 ...), often with plain text on stderr and nothing on stdout.
"""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import AgentErrorKind
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
    UNKNOWN_SESSION_HINT,
    UNKNOWN_SESSION_RE,
    JsonlParser,
    as_dict,
    as_int,
    as_str,
    stderr_message,
)
from ._npm import NpmCliDriver
from .base import AgentRequest, ProviderEnv, Verdict

if TYPE_CHECKING:
    from ..rehearsal.endpoint import RehearsalEndpoint

APPROVAL_MODES = ("default", "auto_edit", "yolo", "plan")
AUTH_HINT = "set GEMINI_API_KEY, or run `gemini` once interactively to sign in with Google"
RATE_HINT = "wait and retry, or use another model"
_FILE_TOOLS = ("write_file", "replace", "edit")
_VERSION_RE = re.compile(r"^\s*\d+\.\d+\.\d+(?:-[\w.]+)?\s*$", re.MULTILINE)
_MAX_BUFFER = 4_000_000  # characters of non-JSON stdout kept for the `-o json` fallback
# Exit codes of gemini's Fatal*Error classes when no result line was written.
_EXIT_KINDS: dict[int, tuple[AgentErrorKind, str, str]] = {
    41: ("auth", "gemini could not authenticate", AUTH_HINT),
    42: ("config", "gemini rejected its input", "check the prompt and extra_args"),
    44: ("config", "gemini's sandbox failed", "check the sandbox settings, or run without -s"),
    52: ("config", "gemini's configuration is invalid", "check ~/.gemini/settings.json"),
    53: ("failed", "gemini hit its turn limit", "raise maxSessionTurns in ~/.gemini/settings.json"),
    54: ("failed", "a gemini tool failed fatally", "read the message; free disk space if full"),
    55: (
        "config",
        "gemini refused an untrusted folder",
        "trust the workspace first: `orchestrator-nb trust PATH` or `%orchestrate trust PATH`",
    ),
    130: ("cancelled", "gemini was cancelled", "run it again"),
    173: ("rate_limit", "gemini hit a rate limit (HTTP 429)", RATE_HINT),
}


def _stats_usage(stats: dict[str, Any]) -> Usage:
    # input_tokens is gemini's prompt count, cached tokens included (gemini's own "input" field is
    # the uncached part).
    return Usage(
        as_int(stats.get("input_tokens")),
        as_int(stats.get("output_tokens")),
        as_int(stats.get("cached")),
        None,
    )


def _json_doc_usage(stats: dict[str, Any]) -> Usage:
    usage = Usage()
    for model in as_dict(stats.get("models")).values():
        tokens = as_dict(as_dict(model).get("tokens"))
        usage = usage + Usage(
            as_int(tokens.get("prompt")),
            as_int(tokens.get("candidates")),
            as_int(tokens.get("cached")),
        )
    return usage


class GeminiParser(JsonlParser):
    agent = "gemini"

    def __init__(self) -> None:
        super().__init__()
        self.result: dict[str, Any] | None = None
        self.last_error: str | None = None
        self._pieces: list[str] = []  # assistant text since the last tool call
        self._last_text = ""
        self._file_tools: dict[str, str] = {}
        self._new_files: set[str] = set()
        self._buffer: list[str] = []
        self._buffered = 0

    def raw_line(self, line: str) -> None:
        # `-o json` (in extra_args) prints one pretty-printed object over many lines.
        if self._buffered < _MAX_BUFFER:
            self._buffer.append(line)
            self._buffered += len(line)

    def _cut_text(self) -> None:
        if self._pieces:
            self._last_text = "".join(self._pieces)
            self._pieces = []

    @property
    def text(self) -> str:
        return "".join(self._pieces) or self._last_text

    def handle(self, obj: dict[str, Any]) -> list[Event] | None:
        kind = obj.get("type")
        if kind == "init":
            self.session_id = as_str(obj.get("session_id")) or self.session_id
            self.model = as_str(obj.get("model")) or self.model
            return [SessionEvent(self.session_id, self.model)]
        if kind == "message":
            content = as_str(obj.get("content"))
            if obj.get("role") != "assistant" or not content:
                return []
            self._pieces.append(content)
            return [TextEvent(content, delta=obj.get("delta") is True)]
        if kind == "tool_use":
            self._cut_text()
            tool_id, name = as_str(obj.get("tool_id")), as_str(obj.get("tool_name")) or "?"
            params = as_dict(obj.get("parameters"))
            path = as_str(params.get("file_path")) or as_str(params.get("absolute_path"))
            if tool_id and path and name in _FILE_TOOLS:
                self._file_tools[tool_id] = path
                # gemini's tool_result does not say whether write_file created the file, and its
                # tool_use line comes before the tool runs: look now (edits need a file anyway).
                # A file written before this line was read still counts as modified.
                if name == "write_file" and os.path.isabs(path) and not os.path.lexists(path):
                    self._new_files.add(path)
            return [ToolCallEvent(tool_id, name, obj.get("parameters"))]
        if kind == "tool_result":
            self._cut_text()
            tool_id = as_str(obj.get("tool_id"))
            ok = obj.get("status") == "success"
            error = as_str(as_dict(obj.get("error")).get("message"))
            output = as_str(obj.get("output")) or error or ""
            events: list[Event] = [self.tool_result(tool_id, ok, output)]
            path = self._file_tools.pop(tool_id, None) if tool_id else None
            if ok and path:
                events.append(self.change(path, "added" if path in self._new_files else "modified"))
            return events
        if kind == "error":
            message = as_str(obj.get("message")) or "error"
            if obj.get("severity") == "error":
                # gemini reports a turn limit this way and may still end with "success".
                self.last_error = self.stream_error = message
            return [WarningEvent(message)]
        if kind == "result":
            self.result = obj
            self.usage = _stats_usage(as_dict(obj.get("stats")))
            return [UsageEvent(self.usage)]
        return None

    def _classify(self, message: str, exit_code: int | None) -> Verdict:
        if exit_code == 173 or RATE_LIMIT_RE.search(message):
            return self.fail("rate_limit", message, RATE_HINT)
        if exit_code == 41 or AUTH_RE.search(message):
            return self.fail("auth", message, AUTH_HINT)
        return self.fail("failed", message, "read the message", text=self.text)

    def decide(self, exit_code: int | None, stderr: str) -> Verdict:
        result = self.result
        if result is None and self._buffer:
            result = self._json_document()
        if result is not None:
            if result.get("status", "success") != "success" or "error" in result:
                error = as_dict(result.get("error"))
                message = as_str(error.get("message")) or self.last_error or "gemini failed"
                return self._classify(message, exit_code)
            return self.succeeded(
                exit_code,
                self.text,
                "read the tool results; for refused tools use permission_mode: yolo "
                "(--approval-mode yolo)",
            )
        if exit_code in _EXIT_KINDS:
            kind, what, hint = _EXIT_KINDS[exit_code]
            message = stderr_message(stderr)
            if UNKNOWN_SESSION_RE.search(message):
                kind, what, hint = "config", "gemini could not resume", UNKNOWN_SESSION_HINT
            return self.fail(kind, f"{what}: {message}" if message else what, hint)
        return self.no_result(exit_code, stderr, AUTH_HINT, text=self.text)

    def _json_document(self) -> dict[str, Any] | None:
        """The `-o json` output: one object with session_id, response, stats (or error)."""
        try:
            doc = json.loads("\n".join(self._buffer))
        except (ValueError, RecursionError):
            return None
        if not isinstance(doc, dict) or not ({"response", "session_id", "error"} & doc.keys()):
            return None
        self.session_id = as_str(doc.get("session_id")) or self.session_id
        self._pieces = [as_str(doc.get("response")) or ""]
        self.usage = _json_doc_usage(as_dict(doc.get("stats")))
        return doc


class GeminiDriver(NpmCliDriver):
    name = "gemini"
    executable = "gemini"
    npm_package: str | None = "@google/gemini-cli"
    prompt_via = "arg"
    default_permission_mode = "auto_edit"
    permission_modes = APPROVAL_MODES
    mode_label = "approval mode"
    version_re = _VERSION_RE
    extra_env: ClassVar[dict[str, str]] = {
        "GEMINI_TELEMETRY_ENABLED": "false",
        # Without it the launcher starts the real CLI again in a second node process (to
        # raise its heap limit): twice the start-up, 0.6 s of CPU on every step.
        "GEMINI_CLI_NO_RELAUNCH": "true",
    }
    parser_class = GeminiParser

    def provider_env(self, endpoint: RehearsalEndpoint, step: str | None) -> ProviderEnv:
        home = endpoint.home_path
        env = {
            "GOOGLE_GEMINI_BASE_URL": endpoint.base_url(self.name, step),
            "GEMINI_API_KEY": endpoint.key(self.name),
            "GEMINI_CLI_HOME": endpoint.home,
            # Machine-wide settings (/etc/gemini-cli) outrank the user's and could switch the
            # auth type: point them at files that do not exist. (Existing files under /tmp
            # would be skipped with a warning anyway: gemini distrusts world-writable dirs.)
            "GEMINI_CLI_SYSTEM_SETTINGS_PATH": str(home / ".gemini" / "no-system.json"),
            "GEMINI_CLI_SYSTEM_DEFAULTS_PATH": str(home / ".gemini" / "no-defaults.json"),
        }
        model = endpoint.model_for(self.name)
        if model:
            env["GEMINI_MODEL"] = model
        return ProviderEnv(env)

    def build_argv(self, request: AgentRequest) -> list[str]:
        mode = self.permission_mode(request)
        # "--prompt=" keeps a prompt that starts with "-" from being parsed as a flag.
        argv = [request.executable, f"--prompt={request.prompt}", "-o", "stream-json"]
        # Folder trust is the user's to give (orchestrator_nb.trust_store), not a default; a
        # rehearsal runs in a throwaway HOME (and an untrusted .gemini/ is refused before).
        argv += ["--skip-trust"] if request.trusted or request.rehearsal else []
        argv += ["--approval-mode", mode]
        if request.model:
            argv += ["-m", request.model]
        if request.resume:
            argv += ["--resume", request.resume]
        return argv + request.extra_args
