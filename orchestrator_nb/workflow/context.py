"""What one run carries while the engine walks it, and how a walk ends early.

:class:`RunContext` is the state of one run (its workspace, journal, bus, budget, the results so
far); :class:`Stop` ends the walk with an outcome other than completed. Shared by the engine
(:mod:`.engine`) and the step runners (:mod:`.steps`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import BudgetExceeded, CircuitOpen, RunError, RunTimeout
from ..events import StepResult
from ..lifecycle import EventBus
from ..workspace import Workspace
from ..workspace.lock import Seat
from .journal import RunJournal
from .models import GateStep, ParallelStep, Workflow
from .policies import BudgetTracker
from .result import Outcome
from .templates import StepView

if TYPE_CHECKING:
    from ..rehearsal.endpoint import RehearsalEndpoint

# What a gate handler returns: "approve", "reject", ("edit", new_task), or None (use the policy).
GateDecision = str | tuple[str, str] | None
GateHandler = Callable[[GateStep, str], Awaitable[GateDecision]]


class Stop(Exception):
    """Ends the walk with an outcome other than completed."""

    def __init__(self, outcome: Outcome, error: RunError | str) -> None:
        if isinstance(error, str):
            error = RunError.for_kind(outcome, error)
        super().__init__(error.message)
        self.outcome = outcome
        self.error = error


def resume_point(value: Any) -> Any:
    """A ResumePoint from a bare native session id too (older callers pass strings)."""
    from ..sessions import ResumePoint

    return value if isinstance(value, ResumePoint) else ResumePoint(str(value))


@dataclass
class RunContext:
    run_id: str
    task: str
    name: str
    workflow: Workflow
    ws: Workspace
    bus: EventBus
    journal: RunJournal
    done: dict[str, StepResult]
    rehearsal: RehearsalEndpoint | None
    gate: GateHandler | None
    cancel: asyncio.Event
    budget: BudgetTracker
    variables: dict[str, Any]
    history: list[dict[str, Any]]
    results: list[StepResult] = field(default_factory=list)
    views: dict[str, StepView] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # pick_by step id → (the parallel group, its key prefix), applied once that step answered
    pending_picks: dict[str, tuple[ParallelStep, str]] = field(default_factory=dict)
    settings: Settings | None = None
    budget_stop: BudgetExceeded | None = None
    timeout: float | None = None
    timeout_stop: RunTimeout | None = None
    circuit: CircuitOpen | None = None
    iteration: int | None = None
    # agent → the native session a follow-up resumes (with its usage so far), used by that
    # agent's first step
    resume_ids: dict[str, Any] = field(default_factory=dict)
    seat: Seat | None = None  # the workspace lock, or the run's own worktree
    approvals: Any = None  # what answers ACP agents' permission requests (None: settings)
    context: str = ""  # a follow-up's summary of the previous turn (see RunScope)

    def template_context(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "steps": dict(self.views),
            "iteration": self.iteration or 1,
            "history": self.history,
            "vars": self.variables,
            **self.variables,
        }


async def all_or_none(coros: list[Awaitable[StepResult]]) -> list[StepResult]:
    """Run children at once; if this is cancelled, wait until every child has cleaned up.

    A bare ``gather`` returns as soon as the first child is cancelled, while the others are
    still stopping their agents' process groups: the loop could close on them and leave
    agent processes running.
    """
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
