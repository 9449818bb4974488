"""What a session keeps of each turn: the turn, its steps, their changes and usage.

Pydantic models, so a session file is validated when it is read back; :mod:`.sessions` holds
the session that owns them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import ErrorKind
from .events import StepResult, Usage

# Outcomes a follow-up may continue; failed, refused, interrupted and running turns never.
CONTINUABLE = frozenset({"completed", "budget_exceeded", "timeout", "cancelled"})


class ChangeRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    kind: Literal["added", "modified", "deleted", "renamed"] = "modified"


class UsageRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cached_tokens: int = Field(default=0, ge=0)
    cost_usd: float | None = None

    def to_usage(self) -> Usage:
        return Usage(self.input_tokens, self.output_tokens, self.cached_tokens, self.cost_usd)


def _record(usage: Usage | None) -> UsageRecord | None:
    if usage is None:
        return None
    return UsageRecord(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
        cost_usd=usage.cost_usd,
    )


@dataclass(frozen=True)
class ResumePoint:
    """A native session to continue, and what it had used so far (None: not reported).

    ``usage`` is passed to the driver's parser so that a CLI reporting the thread's running
    total (codex) still gives the resumed step's own usage.
    """

    session_id: str
    usage: Usage | None = None


class StepRecord(BaseModel):
    """One finished step of a turn."""

    model_config = ConfigDict(extra="forbid")
    step_id: str | None = None
    agent: str
    ok: bool
    text: str = ""
    changes: list[ChangeRecord] = Field(default_factory=list)
    diff: str = ""
    usage: UsageRecord = Field(default_factory=UsageRecord)
    native_session_id: str | None = Field(
        default=None, description="The agent CLI's own session id, for --resume."
    )
    model: str | None = None
    error_kind: ErrorKind | None = None
    error: str | None = None
    iteration: int | None = None
    cached: bool = False
    session_usage: UsageRecord | None = Field(
        default=None,
        description="The native session's running total after this step, where the CLI "
        "reports one (codex); a resume subtracts it so usage stays the step's own.",
    )
    finished_at: str

    @classmethod
    def from_result(cls, result: StepResult, finished_at: str) -> StepRecord:
        u = result.usage
        return cls(
            step_id=result.step_id,
            agent=result.agent,
            ok=result.ok,
            text=result.text,
            changes=[ChangeRecord(path=c.path, kind=c.kind) for c in result.changes],
            diff=result.diff,
            usage=UsageRecord(
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                cached_tokens=u.cached_tokens,
                cost_usd=u.cost_usd,
            ),
            native_session_id=result.session_id,
            model=result.model,
            error_kind=result.error_kind,
            error=result.error.message if result.error is not None else None,
            iteration=result.iteration,
            cached=result.cached,
            session_usage=_record(result.session_usage),
            finished_at=finished_at,
        )

    @property
    def label(self) -> str:
        name = (
            f"{self.step_id} ({self.agent})"
            if self.step_id not in (None, self.agent)
            else self.agent
        )
        return f"{name} #{self.iteration}" if self.iteration else name


class Turn(BaseModel):
    """One cell's run: the task as written, what ran, and each step's result."""

    model_config = ConfigDict(extra="forbid")
    number: int = Field(ge=1)
    task: str
    workflow: str | None = None
    agent: str | None = None
    workspace: str | None = None
    followup: bool = False
    decision: str = ""
    rehearsal: str | None = Field(
        default=None,
        description="The rehearsal scenario it ran under (its tokens and cost are scripted).",
    )
    run_id: str | None = None
    # running | completed | failed | cancelled | budget_exceeded | interrupted (its process died)
    outcome: str = "running"
    error: str | None = None
    started_at: str
    finished_at: str | None = None
    steps: list[StepRecord] = Field(default_factory=list)

    @property
    def what(self) -> str:
        return f"agent {self.agent}" if self.agent else f"workflow {self.workflow}"

    @property
    def text(self) -> str:
        """The final answer: the last successful step's text."""
        return next((s.text for s in reversed(self.steps) if s.ok and s.text), "")

    @property
    def changed_paths(self) -> list[str]:
        seen: dict[str, None] = {}
        for step in self.steps:
            for change in step.changes:
                seen.setdefault(change.path, None)
        return list(seen)

    @property
    def usage(self) -> Usage:
        total = Usage()
        for step in self.steps:
            if not step.cached:
                total = total + step.usage.to_usage()
        return total

    @property
    def continuable(self) -> bool:
        """Whether a follow-up may continue this turn: it finished and got somewhere."""
        if self.outcome not in CONTINUABLE:
            return False
        return self.outcome == "completed" or any(s.ok for s in self.steps)

    def summary(self) -> str:
        from .display import usage_line

        parts = [(s.agent, s.usage.to_usage()) for s in self.steps if not s.cached]
        n = len(self.steps)
        line = (
            f"turn {self.number}: {self.what}, {self.outcome}, {n} step{'' if n == 1 else 's'}, "
            f"{usage_line(self.usage, parts)}"
        )
        if self.rehearsal:
            line += f" (rehearsal {self.rehearsal}: scripted, nothing spent)"
        return line


__all__ = ["CONTINUABLE", "ChangeRecord", "ResumePoint", "StepRecord", "Turn", "UsageRecord"]
