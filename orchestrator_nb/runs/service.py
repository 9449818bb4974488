"""The one place a run is executed: every entry point hands its :class:`RunRequest` here.

The service owns what used to be repeated at each edge: loading the settings (with the
request's trust), opening the run's rehearsal (:mod:`.rehearsals`), opening and closing the
session turn, acting on the follow-up decision (which native sessions to resume, which turns
the templates see), and opening the run itself (its journal, its observed bus for the logs,
metrics and audit trail, its workspace seat: :mod:`.scope`) around the engine, which walks the
steps. ``-a AGENT`` and ``run_agent`` are one-step workflows through the same engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from ..agents.acp.warm import session_agents
from ..agents.registry import DriverRegistry
from ..config import AgentConfig, Settings, agent_config
from ..errors import ConfigError
from ..events import Event
from ..lifecycle import AgentEventEmitted, LifecycleEvent, RunStarted, StepFinished, Subscriber
from ..sessions import Session, Turn
from ..workflow.engine import Engine, GateHandler
from ..workflow.models import AgentStep, Workflow
from ..workflow.result import WorkflowResult
from .rehearsals import open_rehearsal
from .request import RunRequest
from .scope import open_run


class SessionRecorder:
    """A lifecycle subscriber that puts every finished step into the turn (autosaved)."""

    def __init__(self, session: Session, turn: Turn) -> None:
        self.session = session
        self.turn = turn

    def __call__(self, event: LifecycleEvent) -> None:
        if isinstance(event, RunStarted):
            self.turn.run_id = event.run_id
            # Saved now: if the kernel dies in the first step, the next start finds this turn
            # by its run and marks it interrupted.
            self.session.autosave(self.turn.workspace)
        elif isinstance(event, StepFinished):
            self.session.record_step(self.turn, event.result)


def settings_for(request: RunRequest, default: Settings | None = None) -> Settings:
    """The request's settings: given, the engine's (``default``), or loaded for its workspace
    with the request's trust."""
    from ..api import _settings

    if request.settings is not None:
        settings = request.settings.with_trust(request.workspace, request.trust)
    elif default is not None and request.config is None:
        settings = default.with_trust(request.workspace, request.trust)
    else:
        settings = _settings(request.config, request.workspace, request.trust)
    if request.agent is None:
        return settings
    base = agent_config(settings, request.agent)  # unknown agent: a ConfigError naming the known
    if not request.options.agent_options:
        return settings
    try:
        cfg = AgentConfig.model_validate({**base.model_dump(), **request.options.agent_options})
    except Exception as exc:
        raise ConfigError(f"bad option for agent {request.agent!r}: {exc}", key="options") from None
    return settings.model_copy(update={"agents": {**settings.agents, request.agent: cfg}})


def one_step(request: RunRequest) -> Workflow:
    """``-a AGENT``: a workflow of one agent step, run by the same engine as any other."""
    assert request.agent is not None
    step = AgentStep(id=request.step or request.agent, agent=request.agent)
    what = f"one step of agent {request.agent}"
    return Workflow(description=what, steps=[step])


class RunService:
    """Executes run requests. Give it an engine to share policy state (breakers, rate limits)."""

    def __init__(
        self, *, engine: Engine | None = None, registry: DriverRegistry | None = None
    ) -> None:
        self.engine = engine
        self.registry = registry

    def engine_for(self, settings: Settings) -> Engine:
        return self.engine or Engine(settings, registry=self.registry)

    async def execute(
        self,
        request: RunRequest,
        *,
        subscribers: Sequence[Subscriber] = (),
        gate: GateHandler | None = None,
        cancel: asyncio.Event | None = None,
        on_agent_event: Callable[[Event], None] | None = None,
    ) -> WorkflowResult:
        settings = settings_for(request, self.engine.settings if self.engine else None)
        engine = self.engine_for(settings)
        definition = one_step(request) if request.agent else None
        overrides = request.options.workflow_overrides()
        if request.dry_run:
            plan = engine.plan(request.prompt, request.workflow, overrides, definition=definition)
            return WorkflowResult("dry-run", request.name, request.task, "completed", plan=plan)
        everyone: list[Subscriber] = list(subscribers)
        if on_agent_event is not None:
            everyone.append(_agent_events(on_agent_event))
        session, turn = request.session, None
        if session is not None:
            turn = session.begin_turn(
                request.task,
                workflow=None if request.agent else request.workflow,
                agent=request.agent,
                workspace=request.workspace,
                decision=request.decision,
                rehearsal=request.rehearsal,
            )
            everyone.append(SessionRecorder(session, turn))
        resume = request.resume_run is not None
        wf = engine.workflow_for(
            request.task, request.name, overrides, definition=definition, check=not resume
        )
        unsubscribe = [engine.bus.subscribe(s) for s in everyone]
        try:
            async with (
                open_run(
                    request.workspace,
                    run_id=request.resume_run,
                    resume=resume,
                    start=_journal_start(request, overrides),
                    forward_to=engine.bus,
                    breakers=engine.breakers,
                    cancel=cancel or asyncio.Event(),
                    isolation=request.options.isolation,
                ) as scope,
                open_rehearsal(
                    request.rehearsal, workspace=request.workspace, session=session
                ) as running,
                session_agents(session.id if session is not None else None),
            ):
                result = await engine.run(
                    scope,
                    wf,
                    task=request.task,
                    name=request.name,
                    rehearsal=running,
                    gate=gate,
                    variables=dict(request.variables),
                    history=_history(request),
                    resume_ids=request.resume_points(),
                    timeout=request.options.timeout,
                    settings=settings,
                    approvals=request.approvals,
                )
        except BaseException as exc:
            if session is not None and turn is not None:
                stopped = isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError))
                session.finish_turn(
                    turn,
                    "cancelled" if stopped else "failed",
                    error=str(exc) or type(exc).__name__,
                )
            raise
        finally:
            for off in unsubscribe:
                off()
        if session is not None and turn is not None:
            error = result.error.message if result.error is not None else None
            session.finish_turn(turn, result.outcome, error=error, run_id=result.run_id)
        return result


def _journal_start(request: RunRequest, overrides: dict[str, Any]) -> dict[str, Any]:
    """What the journal records of a new run: enough to resume it."""
    meta: dict[str, Any] = {"task": request.task, "workflow": request.name, "overrides": overrides}
    if request.followup_context:
        meta["context"] = request.followup_context
    meta |= {k: v for k, v in {"agent": request.agent, "step": request.step}.items() if v}
    if request.options.timeout is not None:
        meta["timeout"] = request.options.timeout
    return meta


def _history(request: RunRequest) -> list[dict[str, Any]]:
    """Earlier turns of this workspace for the templates' ``history``."""
    if request.session is None:
        return []
    return request.session.history_in(request.workspace)


def _agent_events(callback: Callable[[Event], None]) -> Subscriber:
    def forward(event: LifecycleEvent) -> None:
        if isinstance(event, AgentEventEmitted):
            callback(event.event)

    return forward


__all__ = [
    "RunService",
    "SessionRecorder",
    "one_step",
    "settings_for",
]
