"""The normalized event model every driver produces, and the result of one agent step.

A driver turns its CLI's own stream into these events; everything downstream (live display,
sessions, logs, metrics) reads only these. Unknown lines are kept as :class:`RawEvent`, never
dropped silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from .errors import AgentError, AgentErrorKind, ErrorKind
from .observe.redact import redact

ChangeKind = Literal["added", "modified", "deleted", "renamed"]


@dataclass(frozen=True)
class SessionEvent:
    """The CLI's native session (thread) id and the model it uses."""

    type: ClassVar[str] = "session"
    session_id: str | None
    model: str | None = None


@dataclass(frozen=True)
class TextEvent:
    """Assistant text: a whole message, or a piece of one when ``delta`` is true."""

    type: ClassVar[str] = "text"
    text: str
    delta: bool = False


@dataclass(frozen=True)
class ToolCallEvent:
    type: ClassVar[str] = "tool_call"
    id: str | None
    name: str
    input: Any = None


@dataclass(frozen=True)
class ToolResultEvent:
    type: ClassVar[str] = "tool_result"
    id: str | None
    ok: bool
    output: str = ""


@dataclass(frozen=True)
class FileChangeEvent:
    """A file the CLI says it changed (paths as the CLI wrote them)."""

    type: ClassVar[str] = "file_change"
    path: str
    kind: ChangeKind = "modified"


@dataclass(frozen=True)
class Usage:
    """Token usage and cost. ``cost_usd`` is None where the CLI does not report it."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None

    def __add__(self, other: Usage) -> Usage:
        cost: float | None
        if self.cost_usd is None and other.cost_usd is None:
            cost = None
        else:
            cost = (self.cost_usd or 0.0) + (other.cost_usd or 0.0)
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            cost,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class UsageEvent:
    type: ClassVar[str] = "usage"
    usage: Usage


@dataclass(frozen=True)
class RetryEvent:
    """The CLI (or the engine) is retrying; ``delay_s`` where known.

    ``source`` "engine": the orchestrator's own retry, emitted before it waits; the next attempt
    goes through the breaker, a concurrency slot and the rate limiter again.
    """

    type: ClassVar[str] = "retry"
    attempt: int
    reason: str
    delay_s: float | None = None
    source: Literal["cli", "engine"] = "cli"


@dataclass(frozen=True)
class WarningEvent:
    type: ClassVar[str] = "warning"
    message: str


@dataclass(frozen=True)
class PermissionAsked:
    """An agent asks to use a tool and waits for the answer (a :class:`PermissionEvent` follows).

    Shown while nobody has answered yet ("waiting for approval"); the decision itself is the
    PermissionEvent, which is what the audit trail records.
    """

    type: ClassVar[str] = "permission_asked"
    tool_call_id: str | None
    tool: str
    kind: str
    target: str


@dataclass(frozen=True)
class PermissionEvent:
    """An agent asked to use a tool (ACP ``session/request_permission``) and got an answer.

    ``decision`` is allow_once, allow_always or reject; ``by`` says who decided (policy, user,
    timeout); ``target`` is the command or the paths the tool wanted.
    """

    type: ClassVar[str] = "permission"
    tool_call_id: str | None
    tool: str
    kind: str
    target: str
    decision: str
    by: str
    reason: str = ""


@dataclass(frozen=True)
class RawEvent:
    """A line the parser did not recognize, kept as it came (decoded JSON or the text)."""

    type: ClassVar[str] = "raw"
    data: Any


Event = (
    SessionEvent
    | TextEvent
    | ToolCallEvent
    | ToolResultEvent
    | FileChangeEvent
    | UsageEvent
    | RetryEvent
    | WarningEvent
    | PermissionAsked
    | PermissionEvent
    | RawEvent
)


@dataclass(frozen=True)
class FileChange:
    """One changed path, relative to the workspace where it lies inside it."""

    path: str
    kind: ChangeKind = "modified"


@dataclass(frozen=True)
class Attempt:
    """One try of a step; retries append more."""

    number: int
    ok: bool
    duration_s: float
    error_kind: ErrorKind | None = None
    message: str | None = None


@dataclass(frozen=True)
class PassedOver:
    """An agent that could not take a step (the role's next agent took it), and why."""

    agent: str
    kind: str  # not_installed | auth
    reason: str


@dataclass
class StepResult:
    """What one agent run produced, and whether it succeeded (decided from its events)."""

    agent: str
    ok: bool
    text: str = ""
    session_id: str | None = None
    model: str | None = None
    usage: Usage = field(default_factory=Usage)
    changes: list[FileChange] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    events_dropped: int = 0
    error: AgentError | None = None
    attempts: list[Attempt] = field(default_factory=list)
    duration_s: float = 0.0
    exit_code: int | None = None
    stderr_tail: str = ""
    argv: list[str] = field(default_factory=list)
    log_path: str | None = None
    # Set when the step ran inside a workflow.
    step_id: str | None = None
    iteration: int | None = None
    diff: str = ""
    cached: bool = False
    skipped: bool = False
    # The native session's running total after this step, for CLIs that report one (codex):
    # what a later resume subtracts so that a step's usage stays its own.
    session_usage: Usage | None = None
    # The agents of the step's role that were tried first and could not run it, in order.
    passed_over: list[PassedOver] = field(default_factory=list)

    @property
    def error_kind(self) -> AgentErrorKind | None:
        return self.error.kind if self.error else None

    @property
    def permissions(self) -> list[PermissionEvent]:
        """Every tool permission the agent asked for in this step, with its decision."""
        return [e for e in self.events if isinstance(e, PermissionEvent)]

    def raise_for_error(self) -> StepResult:
        """Raise the step's error if it failed; return self otherwise (for chaining)."""
        if self.error is not None:
            raise self.error
        return self

    def to_dict(self, *, events: bool = False) -> dict[str, Any]:
        """A JSON-ready form (the journal, the cache and session exports use it)."""
        data: dict[str, Any] = {
            "agent": self.agent,
            "ok": self.ok,
            "text": self.text,
            "session_id": self.session_id,
            "model": self.model,
            "usage": asdict(self.usage),
            "changes": [asdict(c) for c in self.changes],
            "error": None
            if self.error is None
            else {"kind": self.error.kind, "message": self.error.message, "hint": self.error.hint},
            "attempts": [asdict(a) for a in self.attempts],
            "duration_s": self.duration_s,
            "exit_code": self.exit_code,
            "step_id": self.step_id,
            "iteration": self.iteration,
            "diff": self.diff,
            "cached": self.cached,
            "skipped": self.skipped,
            "session_usage": None if self.session_usage is None else asdict(self.session_usage),
            "passed_over": [asdict(p) for p in self.passed_over],
            "permissions": [asdict(p) for p in self.permissions],
        }
        if events:
            data["events"] = [{"type": e.type, **asdict(e)} for e in self.events]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepResult:
        err = data.get("error")
        error = (
            AgentError.for_kind(err["kind"], err["message"], agent=data["agent"], hint=err["hint"])
            if err
            else None
        )
        return cls(
            agent=data["agent"],
            ok=bool(data["ok"]),
            text=data.get("text", ""),
            session_id=data.get("session_id"),
            model=data.get("model"),
            usage=Usage(**data.get("usage", {})),
            changes=[FileChange(**c) for c in data.get("changes", [])],
            error=error,
            attempts=[Attempt(**a) for a in data.get("attempts", [])],
            duration_s=float(data.get("duration_s", 0.0)),
            exit_code=data.get("exit_code"),
            step_id=data.get("step_id"),
            iteration=data.get("iteration"),
            diff=data.get("diff", ""),
            cached=bool(data.get("cached", False)),
            skipped=bool(data.get("skipped", False)),
            session_usage=Usage(**data["session_usage"]) if data.get("session_usage") else None,
            passed_over=[PassedOver(**p) for p in data.get("passed_over", [])],
            # The decisions outlive the journal and the cache; the other events are not kept.
            events=[PermissionEvent(**p) for p in data.get("permissions", [])],
        )

    def _summary_line(self, *, scripted: bool = False) -> str:
        status = "ok" if self.ok else f"FAILED ({self.error_kind})"
        if self.cached:
            status += ", cached"
        from .display import usage_line

        name = (
            f"{self.step_id} ({self.agent})"
            if self.step_id not in (None, self.agent)
            else self.agent
        )
        if self.iteration:
            name += f" #{self.iteration}"
        line = f"{name}: {status}, {usage_line(self.usage, scripted=scripted)}"
        if self.passed_over:  # which agent took the step, and why the ones before did not
            from .display import fallback_line

            takers = [p.agent for p in self.passed_over[1:]] + [self.agent]
            pairs = zip(self.passed_over, takers, strict=True)
            notes = (fallback_line(p.agent, t, p.kind) for p, t in pairs)
            line += " — " + "; ".join(notes)
        return line

    def __str__(self) -> str:
        lines = [self._summary_line()]
        if self.session_id:
            lines.append(f"session: {self.session_id}")
        for change in self.changes:
            lines.append(f"  {change.kind:<8} {change.path}")
        if self.text:
            lines.append("")
            lines.append(self.text)
        if self.error is not None:
            lines.append("")
            lines.append(str(self.error))
        return redact("\n".join(lines))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from .display import step_html

        return {"text/plain": str(self), "text/html": step_html(self)}


__all__ = [
    "Attempt",
    "ChangeKind",
    "Event",
    "FileChange",
    "FileChangeEvent",
    "PassedOver",
    "PermissionAsked",
    "PermissionEvent",
    "RawEvent",
    "RetryEvent",
    "SessionEvent",
    "StepResult",
    "TextEvent",
    "ToolCallEvent",
    "ToolResultEvent",
    "Usage",
    "UsageEvent",
    "WarningEvent",
]
