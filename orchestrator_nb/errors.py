"""The one exception tree of orchestrator-nb.

::

    OrchestratorError
    ├── ConfigError (ValueError)            bad agents.yaml / workflows.yaml / scenario / options
    │   └── ScenarioError                   a rehearsal scenario that does not validate
    ├── AgentError                          an agent run that did not succeed; ``.kind`` says how
    │   ├── AgentNotInstalled (FileNotFoundError)   kind "not_installed"
    │   ├── AgentAuthError (PermissionError)        kind "auth"
    │   ├── AgentRateLimited                        kind "rate_limit"
    │   ├── AgentTimeout (TimeoutError)             kind "timeout"
    │   ├── AgentCancelled                          kind "cancelled"
    │   ├── AgentCrashed                            kind "crashed"   (no final result)
    │   ├── AgentFailed                             kind "failed"    (the agent said it failed)
    │   └── AgentConfigError                        kind "config"    (bad flags or setup)
    ├── RunError                            a run that did not complete; ``.kind`` says how
    │   ├── BudgetExceeded                  kind "budget_exceeded"
    │   ├── CircuitOpen                     kind "circuit_open"
    │   ├── RunTimeout (TimeoutError)       kind "timeout"   (``--timeout`` / ``timeout=``)
    │   ├── RunCancelled                    kind "cancelled"
    │   └── RunFailed                       kind "failed"    (a step or a template failed)
    ├── WorkspaceError
    │   ├── UnsafePathError (ValueError)    a write the safe writer refuses; names path and rule
    │   └── RevertConflict                  a file changed again since the step being undone
    └── RehearsalError                      the scripted model server could not start or run

Every error carries context (agent, argv, exit code, stderr tail) and a ``hint`` that says what
to do next. All of them pickle, so they survive nbclient, multiprocessing and Ray.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar, Literal

from .display import plural
from .observe.redact import redact

AgentErrorKind = Literal[
    "not_installed", "auth", "rate_limit", "timeout", "cancelled", "crashed", "failed", "config"
]
# What can end a run, besides what ends an agent step.
RunErrorKind = Literal["budget_exceeded", "circuit_open", "timeout", "cancelled", "failed"]
ErrorKind = AgentErrorKind | RunErrorKind
ERROR_KINDS: tuple[AgentErrorKind, ...] = (
    "not_installed",
    "auth",
    "rate_limit",
    "timeout",
    "cancelled",
    "crashed",
    "failed",
    "config",
)
# Kinds worth another attempt: the same request may well succeed a little later.
RETRYABLE_KINDS: frozenset[str] = frozenset({"rate_limit", "transient"})


class OrchestratorError(Exception):
    """Base of every error this package raises on purpose."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        # Messages often quote an agent's stderr; a key in there must not reach the notebook.
        message = redact(message)
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = redact(hint)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message

    def __setattr__(self, name: str, value: Any) -> None:
        # A hint or message set after construction is shown in tracebacks just the same.
        if name in ("hint", "message") and isinstance(value, str):
            value = redact(value)
        super().__setattr__(name, value)

    if sys.version_info >= (3, 11):

        def add_note(self, note: str, /) -> None:
            """Notes are printed under the traceback: redacted like the message."""
            super().add_note(redact(note))

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only context would be lost by Exception's default pickling.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[OrchestratorError], message: str, state: dict[str, Any]) -> Any:
    obj = cls.__new__(cls)
    Exception.__init__(obj, message)
    obj.__dict__.update(state)
    return obj


class ConfigError(OrchestratorError, ValueError):
    """A configuration file, scenario or option is wrong. Names the file, line and key."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = ""
        if path:
            where = f"{path}:{line}" if line else str(path)
            if key:
                where += f" ({key})"
            where += ": "
        super().__init__(where + message, hint=hint)
        self.path = path
        self.line = line
        self.key = key


class ScenarioError(ConfigError):
    """A rehearsal scenario file that does not validate."""


class AgentError(OrchestratorError):
    """An agent run that did not succeed. ``kind`` is one of :data:`ERROR_KINDS`."""

    kind: ClassVar[AgentErrorKind] = "failed"

    def __init__(
        self,
        message: str,
        *,
        agent: str | None = None,
        argv: list[str] | None = None,
        exit_code: int | None = None,
        stderr_tail: str = "",
        hint: str | None = None,
        retryable: bool | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.agent = agent
        self.argv = [redact(a) for a in argv] if argv else None
        self.exit_code = exit_code
        self.stderr_tail = redact(stderr_tail)
        self.retryable = self.kind in RETRYABLE_KINDS if retryable is None else retryable
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        head = f"[{self.agent}] " if self.agent else ""
        text = f"{head}{self.kind}: {self.message}"
        if self.exit_code is not None:
            text += f" (exit {self.exit_code})"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    @staticmethod
    def for_kind(kind: str, message: str, **context: Any) -> AgentError:
        """Build the subclass that matches ``kind``."""
        cls = _BY_KIND.get(kind, AgentFailed)
        return cls(message, **context)


class AgentNotInstalled(AgentError, FileNotFoundError):
    kind = "not_installed"


class AgentAuthError(AgentError, PermissionError):
    kind = "auth"


class AgentRateLimited(AgentError):
    kind = "rate_limit"


class AgentTimeout(AgentError, TimeoutError):
    kind = "timeout"


class AgentCancelled(AgentError):
    kind = "cancelled"


class AgentCrashed(AgentError):
    kind = "crashed"


class AgentFailed(AgentError):
    kind = "failed"


class AgentConfigError(AgentError):
    kind = "config"


_BY_KIND: dict[str, type[AgentError]] = {
    cls.kind: cls
    for cls in (
        AgentNotInstalled,
        AgentAuthError,
        AgentRateLimited,
        AgentTimeout,
        AgentCancelled,
        AgentCrashed,
        AgentFailed,
        AgentConfigError,
    )
}


class RunError(OrchestratorError):
    """A run that did not complete. ``kind`` is one of :data:`RunErrorKind`."""

    kind: ClassVar[RunErrorKind] = "failed"

    def __contains__(self, text: object) -> bool:
        # `"max_wall_s" in result.error` reads as naturally as it did when errors were strings.
        return isinstance(text, str) and text in str(self)

    @staticmethod
    def for_kind(kind: str, message: str, *, hint: str | None = None) -> RunError:
        """A plain error of ``kind`` (budget and circuit errors carry more: build those)."""
        return _RUN_BY_KIND.get(kind, RunFailed)(message, hint=hint)


class BudgetExceeded(RunError):
    """A run went past one of its budgets."""

    kind = "budget_exceeded"

    def __init__(self, budget: str, used: float, limit: float) -> None:
        unit = {"max_cost_usd": "USD", "max_tokens": "tokens", "max_wall_s": "s"}.get(budget, "")
        super().__init__(
            f"budget {budget} exceeded: used {_fmt(used)} {unit} of {_fmt(limit)} {unit}",
            hint=f"raise `{budget}` under the workflow's `budget:` (or pass a larger budget "
            "for this run), or shorten the task",
        )
        self.budget = budget
        self.used = used
        self.limit = limit


def _fmt(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


class CircuitOpen(RunError):
    """Calls to an agent are paused after repeated failures."""

    kind = "circuit_open"

    def __init__(
        self, agent: str, retry_in_s: float, *, failures: int, trial: bool = False
    ) -> None:
        if trial:
            when = "a trial call is in flight; the next call waits for its outcome"
        else:
            when = f"the next trial call is allowed in {retry_in_s:.0f}s"
        super().__init__(
            f"circuit for agent {agent!r} is open after "
            f"{plural(failures, 'consecutive failure')}; {when}",
            hint=f"look at {agent}'s last errors (login, quota, network, flags); the pause is "
            "`limits.breaker_cooldown_s`, and `breaker_threshold` sets how many failures open it",
        )
        self.agent = agent
        self.retry_in_s = retry_in_s
        self.failures = failures


class RunTimeout(RunError, TimeoutError):
    kind = "timeout"


class RunCancelled(RunError):
    kind = "cancelled"


class RunFailed(RunError):
    kind = "failed"


_RUN_BY_KIND: dict[str, type[RunError]] = {
    cls.kind: cls for cls in (RunTimeout, RunCancelled, RunFailed)
}


class WorkspaceError(OrchestratorError):
    """Something about the workspace (files, git, worktrees) went wrong."""


class UnsafePathError(WorkspaceError, ValueError):
    """The safe writer refused a path; nothing was written."""

    def __init__(self, path: str, rule: str, *, hint: str | None = None) -> None:
        super().__init__(f"refused to write {path!r}: {rule}", hint=hint)
        self.path = path
        self.rule = rule


class RevertConflict(WorkspaceError):
    """A file to restore changed again after the step that is being undone."""

    def __init__(self, paths: list[str], *, hint: str | None = None) -> None:
        shown = ", ".join(paths[:5]) + (" …" if len(paths) > 5 else "")
        super().__init__(
            f"{plural(len(paths), 'file')} changed again since that step: {shown}",
            hint=hint or "inspect them, or pass force=True to overwrite those changes",
        )
        self.paths = list(paths)


class RehearsalError(OrchestratorError):
    """The scripted model server could not start, or a rehearsal was used wrongly."""


__all__ = [
    "ERROR_KINDS",
    "RETRYABLE_KINDS",
    "AgentAuthError",
    "AgentCancelled",
    "AgentConfigError",
    "AgentCrashed",
    "AgentError",
    "AgentErrorKind",
    "AgentFailed",
    "AgentNotInstalled",
    "AgentRateLimited",
    "AgentTimeout",
    "BudgetExceeded",
    "CircuitOpen",
    "ConfigError",
    "ErrorKind",
    "OrchestratorError",
    "RehearsalError",
    "RevertConflict",
    "RunCancelled",
    "RunError",
    "RunErrorKind",
    "RunFailed",
    "RunTimeout",
    "ScenarioError",
    "UnsafePathError",
    "WorkspaceError",
]
