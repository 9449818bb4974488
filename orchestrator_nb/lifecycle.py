"""Lifecycle events and the bus that hands them to subscribers.

The engine emits; the live display, the session store, logs, metrics and the audit trail
subscribe. A subscriber that raises is reported once as a warning and never stops a run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .events import Event, StepResult, Usage

log = logging.getLogger("orchestrator_nb")


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    workflow: str
    task: str
    workspace: str
    session: str | None = None
    rehearsal: bool = False


@dataclass(frozen=True)
class RunFinished:
    run_id: str
    workflow: str
    outcome: str  # completed | failed | cancelled | budget_exceeded
    ok: bool
    usage: Usage
    duration_s: float
    error: str | None = None


@dataclass(frozen=True)
class StepStarted:
    run_id: str
    step_id: str
    agent: str | None
    kind: str  # agent | parallel | loop | branch | gate
    iteration: int | None = None
    prompt: str | None = None


@dataclass(frozen=True)
class StepFinished:
    run_id: str
    step_id: str
    agent: str | None
    result: StepResult
    iteration: int | None = None
    cached: bool = False


@dataclass(frozen=True)
class AgentEventEmitted:
    """One normalized event from a running agent, as it arrives."""

    run_id: str
    step_id: str
    agent: str
    event: Event


@dataclass(frozen=True)
class AgentFallback:
    """The step's agent could not run it (not installed, not logged in): the next one takes it."""

    run_id: str
    step_id: str
    from_agent: str
    to_agent: str
    kind: str  # the error kind that passed the step on: not_installed | auth
    reason: str  # the first agent's error message
    iteration: int | None = None


@dataclass(frozen=True)
class GateRequested:
    run_id: str
    step_id: str
    message: str


@dataclass(frozen=True)
class GateDecided:
    run_id: str
    step_id: str
    decision: str  # approve | reject | edit | fail
    by: str  # "user" or "policy"


@dataclass(frozen=True)
class BudgetWarning:
    run_id: str
    budget: str  # max_cost_usd | max_tokens | max_wall_s
    used: float
    limit: float


@dataclass(frozen=True)
class FileWritten:
    run_id: str
    step_id: str
    path: str
    backup: str | None = None


@dataclass(frozen=True)
class Reverted:
    run_id: str
    step_id: str | None
    paths: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WorkspaceWaiting:
    """The run waits for ``holder`` (another run, or a revert) writing in the same workspace."""

    run_id: str
    holder: str  # "run 20250101-120000-3f9a1c", as shown to the user
    workspace: str

    @property
    def message(self) -> str:
        return f"waiting for {self.holder} in this workspace"


LifecycleEvent = (
    RunStarted
    | RunFinished
    | StepStarted
    | StepFinished
    | AgentEventEmitted
    | AgentFallback
    | GateRequested
    | GateDecided
    | BudgetWarning
    | FileWritten
    | Reverted
    | WorkspaceWaiting
)
Subscriber = Callable[[LifecycleEvent], Any]


class EventBus:
    """Synchronous fan-out to subscribers, safe to call from any thread."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._failed: set[int] = set()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns the function that removes it."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def emit(self, event: LifecycleEvent) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(event)
            except Exception:  # a display or metrics bug must never break a run
                if id(subscriber) not in self._failed:
                    self._failed.add(id(subscriber))
                    log.warning(
                        "subscriber %r failed; later failures are silent", subscriber, exc_info=True
                    )


__all__ = [
    "AgentEventEmitted",
    "AgentFallback",
    "BudgetWarning",
    "EventBus",
    "FileWritten",
    "GateDecided",
    "GateRequested",
    "LifecycleEvent",
    "Reverted",
    "RunFinished",
    "RunStarted",
    "StepFinished",
    "StepStarted",
    "Subscriber",
    "WorkspaceWaiting",
]
