"""What every JSON-lines parser shares: tolerant decoding, typed field access, verdict building.

The CLIs' streams are not contracts: keys move, types change, stray text and truncated lines
appear. Everything here degrades to "no value" instead of raising, so a parser's ``feed`` never
takes a run down with it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ..display import plural
from ..errors import RETRYABLE_KINDS, AgentErrorKind
from ..events import (
    ChangeKind,
    Event,
    FileChange,
    FileChangeEvent,
    RawEvent,
    ToolResultEvent,
    Usage,
    WarningEvent,
)
from ..observe.redact import clip, redact
from .base import Verdict

# Prefix of the warning emitted when a handler hit a shape it did not expect (tests look for it).
PARSER_ERROR = "parser error:"

RATE_LIMIT_RE = re.compile(
    r"\b429\b|rate[ _-]?limit|too many requests|quota|resource has been exhausted"
    r"|resource_exhausted|overloaded",
    re.IGNORECASE,
)
AUTH_RE = re.compile(
    r"not logged in|authenticat|unauthori[sz]ed|invalid api key|api key|\b401\b|credential"
    r"|/login\b",
    re.IGNORECASE,
)
USAGE_ERROR_RE = re.compile(
    r"unknown option|unexpected argument|unrecognized (?:argument|option)|invalid value"
    r"|not enough arguments|invalid command format|^usage:",
    re.IGNORECASE | re.MULTILINE,
)
# A resume of a session the CLI does not know (wrong id, or another HOME / project folder).
UNKNOWN_SESSION_RE = re.compile(
    r"no conversation found|no previous sessions|no session, task, or name matched"
    r"|no rollout found|session[^\n]{0,80}not found",
    re.IGNORECASE,
)
UNKNOWN_SESSION_HINT = (
    "the CLI keeps its sessions under the user's home directory, per project folder: resume "
    "from the same HOME and workspace, or start a new session"
)
_ERROR_LINE_RE = re.compile(r"^\s*(?:\w*error|fatal)\b[:\s].*$", re.IGNORECASE | re.MULTILINE)
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def decode(line: str) -> dict[str, Any] | RawEvent | None:
    """One stdout line: a JSON object, a RawEvent for anything else, None for a blank line."""
    text = line.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return RawEvent(line)
    if isinstance(value, dict):
        return value
    return RawEvent(value)


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def as_int(value: Any) -> int:
    """A count (tokens, attempts, status): a non-negative int; anything else is 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(0, value)
    if isinstance(value, float) and math.isfinite(value):
        return max(0, int(value))
    return 0


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # a JSON integer with hundreds of digits
        return None
    return number if math.isfinite(number) else None


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text)


def stderr_tail(stderr: str, lines: int = 8, chars: int = 1200) -> str:
    """The last meaningful lines of stderr, for an error message."""
    kept = [ln.rstrip() for ln in strip_ansi(stderr).splitlines() if ln.strip()]
    text = redact("\n".join(kept[-lines:]))  # before the cut, which could split a secret
    return text[-chars:]


def stderr_message(stderr: str) -> str:
    """A CLI's error on stderr: a JSON ``error.message`` if there is one, else the tail."""
    for line in reversed(stderr.splitlines()):
        obj = decode(line)
        if isinstance(obj, dict):
            error = obj.get("error")
            message = as_str(as_dict(error).get("message")) or as_str(error)
            if message:
                return message
    whole = decode(stderr.replace("\n", " "))  # a pretty-printed JSON object on several lines
    if isinstance(whole, dict):
        message = as_str(as_dict(whole.get("error")).get("message"))
        if message:
            return message
    # "Error: ..." beats the tail, which is often a stack backtrace.
    errors = _ERROR_LINE_RE.findall(strip_ansi(stderr))
    return clip(errors[-1].strip(), 500) if errors else stderr_tail(stderr)


def change_kind(word: str | None) -> ChangeKind:
    """Map the CLIs' words for a change (create/add/update/edit/delete) onto ours."""
    word = (word or "").lower()
    if word in ("create", "add", "added", "created", "new"):
        return "added"
    if word in ("delete", "deleted", "remove", "removed"):
        return "deleted"
    if word in ("rename", "renamed", "move", "moved"):
        return "renamed"
    return "modified"


class JsonlParser:
    """Shared state and verdict plumbing; subclasses implement :meth:`handle` and :meth:`decide`.

    ``handle`` returns None for an object it does not recognize (kept as a RawEvent) and a
    possibly empty list for one it does.
    """

    agent = "agent"

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.model: str | None = None
        self.usage = Usage()
        self._changes: dict[str, ChangeKind] = {}
        self._tool_outcomes: list[tuple[bool, str]] = []
        # The last error-severity event of the stream, and the CLI's own word that the run was
        # interrupted: either outweighs a final result that says "success".
        self.stream_error: str | None = None
        self.interrupted: str | None = None

    def feed(self, line: str) -> list[Event]:
        obj = decode(line)
        if obj is None:
            return []
        if isinstance(obj, RawEvent):
            self.raw_line(line)
            return [obj]
        try:
            events = self.handle(obj)
        except Exception as exc:  # a shape nobody foresaw must not kill a live run
            return [WarningEvent(f"{PARSER_ERROR} {type(exc).__name__}: {exc}"), RawEvent(obj)]
        return [RawEvent(obj)] if events is None else events

    def finish(self, exit_code: int | None, stderr: str) -> Verdict:
        try:
            return self.decide(exit_code, stderr)
        except Exception as exc:  # same reasoning as in feed: report, do not raise
            return self.fail(
                "crashed",
                f"{PARSER_ERROR} {type(exc).__name__}: {exc}",
                "report this together with the run's log",
            )

    def raw_line(self, line: str) -> None:
        """Hook for text lines that are not JSON objects."""

    def handle(self, obj: dict[str, Any]) -> list[Event] | None:
        raise NotImplementedError

    def decide(self, exit_code: int | None, stderr: str) -> Verdict:
        raise NotImplementedError

    def change(self, path: str, kind: ChangeKind) -> FileChangeEvent:
        # The run's net effect per path: created then edited is "added", created then deleted
        # is nothing at all.
        previous = self._changes.get(path)
        if previous == "added" and kind == "deleted":
            del self._changes[path]
        elif previous != "added":
            self._changes[path] = kind
        return FileChangeEvent(path, kind)

    def tool_result(self, tool_id: str | None, ok: bool, output: str) -> ToolResultEvent:
        self._tool_outcomes.append((ok, output))
        return ToolResultEvent(tool_id, ok, output)

    def tools_all_failed(self, hint: str, text: str) -> Verdict | None:
        """A failure when the run used tools and every one of them failed.

        The CLIs exit 0 and the final text often claims success anyway (a refused or failed
        write, a sandbox that blocked every command): the work was not done, so callers must not
        build on it. A run whose tools partly worked, or that changed files, is left alone.
        """
        if not self._tool_outcomes or self._changes or any(ok for ok, _ in self._tool_outcomes):
            return None
        last = clip((self._tool_outcomes[-1][1].strip().splitlines() or [""])[0], 200)
        return self.fail(
            "failed",
            f"all {plural(len(self._tool_outcomes), 'tool call')} failed"
            + (f"; last: {last}" if last else ""),
            hint,
            text=text,
        )

    def succeeded(
        self, exit_code: int | None, text: str, tools_hint: str, *, claim: str = "reported success"
    ) -> Verdict:
        """The verdict once the stream said the run succeeded: an interruption, an error event,
        the exit code and the tools' outcomes still have a say (each has been seen to
        contradict the claim)."""
        stopped = self.interruption(text)
        if stopped is not None:
            return stopped
        if self.stream_error is not None:
            return self.fail(
                "failed",
                f"{self.agent} {claim} after an error: {self.stream_error}",
                "read the error in the events; a turn limit reached ends this way",
                text=text,
            )
        if exit_code not in (0, None):
            return self.fail(
                "failed",
                f"{self.agent} {claim} but exited with code {exit_code}",
                "look at stderr",
                text=text,
            )
        return self.tools_all_failed(tools_hint, text) or self.ok(text)

    def interruption(self, text: str = "") -> Verdict | None:
        """``cancelled`` when the stream carried the CLI's own interruption events."""
        if self.interrupted is None:
            return None
        return self.fail(
            "cancelled",
            f"{self.agent} was interrupted ({self.interrupted})",
            "run it again; resume the session to continue where it stopped",
            text=text,
        )

    @property
    def changes(self) -> list[FileChange]:
        return [FileChange(path, kind) for path, kind in self._changes.items()]

    def ok(self, text: str) -> Verdict:
        return Verdict(
            ok=True,
            text=text,
            session_id=self.session_id,
            model=self.model,
            usage=self.usage,
            changes=self.changes,
        )

    def fail(
        self,
        kind: AgentErrorKind,
        message: str,
        hint: str,
        *,
        text: str = "",
        retryable: bool | None = None,
    ) -> Verdict:
        return Verdict(
            ok=False,
            text=text,
            session_id=self.session_id,
            model=self.model,
            usage=self.usage,
            changes=self.changes,
            error_kind=kind,
            error_message=message,
            hint=hint,
            retryable=kind in RETRYABLE_KINDS if retryable is None else retryable,
        )

    def no_result(
        self, exit_code: int | None, stderr: str, auth_hint: str, *, text: str = ""
    ) -> Verdict:
        """The verdict when the stream ended without its final result line."""
        message = stderr_message(stderr)
        detail = f": {message}" if message else ""
        if exit_code is None:
            return self.fail(
                "crashed",
                f"{self.agent} was stopped before it wrote its final result",
                "see the timeout / cancel that stopped it; the partial output is in the events",
                text=text,
            )
        if UNKNOWN_SESSION_RE.search(message):
            return self.fail(
                "config", f"{self.agent} could not resume{detail}", UNKNOWN_SESSION_HINT
            )
        if RATE_LIMIT_RE.search(message):
            return self.fail(
                "rate_limit", f"{self.agent} hit a rate limit{detail}", "wait and retry", text=text
            )
        if AUTH_RE.search(message):
            return self.fail("auth", f"{self.agent} is not authenticated{detail}", auth_hint)
        if exit_code != 0 and USAGE_ERROR_RE.search(message):
            return self.fail(
                "config",
                f"{self.agent} rejected its command line{detail}",
                "check extra_args and model against the CLI's --help",
            )
        return self.fail(
            "crashed",
            f"{self.agent} exited with code {exit_code} without a final result{detail}",
            "look at stderr; a cut-off stream also ends this way",
            text=text,
        )
