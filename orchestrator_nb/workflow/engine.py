"""The engine: walks a workflow inside an open run (its start and end, the wall and budget
watch, the dry-run plan); the run itself (workspace, journal, observability, seat) is opened
by the run service, see :mod:`orchestrator_nb.runs.scope`.

The steps themselves are walked by :class:`.steps.StepWalker` (agent steps through the policy
stack of :mod:`.stack`: retry around breaker, concurrency slot, rate limiter and one attempt of
:func:`orchestrator_nb.api.attempt_agent`), with the run state of :mod:`.context`. The workspace
snapshots each step for its diff; parallel children get their own git worktrees. Every finished
step is journaled before the next starts, which is what makes a resume possible.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..agents.acp.permissions import handler_for
from ..agents.acp.warm import warm_agents
from ..agents.registry import DriverRegistry, default_registry
from ..config import Settings
from ..errors import (
    OrchestratorError,
    RunError,
)
from ..lifecycle import EventBus, RunFinished, RunStarted
from .cache import StepCache
from .context import GateDecision, GateHandler, RunContext, Stop, resume_point
from .models import CHILD_STEPS, AgentStep, BranchStep, LoopStep, ParallelStep, Step, Workflow
from .policies import Breakers, BudgetTracker, ConcurrencyLimits, RateLimiters
from .result import Outcome, PlannedStep, WorkflowResult
from .steps import StepWalker
from .templates import TemplateError, render

if TYPE_CHECKING:
    from ..rehearsal.endpoint import RehearsalEndpoint
    from ..runs.scope import RunScope


class Engine(StepWalker):
    """Runs workflows; policy state (breakers, rate limits, cache) lives as long as the engine."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: DriverRegistry | None = None,
        bus: EventBus | None = None,
        limits: ConcurrencyLimits | None = None,
        breakers: Breakers | None = None,
        rates: RateLimiters | None = None,
    ) -> None:
        """``limits``, ``breakers`` and ``rates`` default to new ones from ``settings.limits``;
        pass another engine's to share its policy state (the tasks of one batch do)."""
        self.settings = settings
        self.registry = registry or default_registry()
        self.bus = bus or EventBus()
        configured = settings.limits
        self.limits = limits or ConcurrencyLimits.from_limits(configured)
        self.breakers = breakers or Breakers.from_limits(configured)
        self.rates = rates or RateLimiters.from_limits(configured)
        self._caches: dict[Path, StepCache] = {}

    # -- entry ----------------------------------------------------------------------------

    def workflow_for(
        self,
        task: str,
        workflow: str,
        overrides: dict[str, Any] | None = None,
        *,
        definition: Workflow | None = None,
        check: bool = True,
    ) -> Workflow:
        """The workflow a run walks (``definition``, journaled as ``workflow``, or the named
        one) with its overrides; with ``check`` a template past a size, loop or time bound is
        refused here, before the run opens and any agent starts."""
        wf = self._workflow(workflow, overrides or {}, definition)
        if check:
            self.plan(task, workflow, overrides, definition=definition)
        return wf

    async def run(
        self,
        scope: RunScope,
        wf: Workflow,
        *,
        task: str,
        name: str,
        rehearsal: RehearsalEndpoint | None = None,
        gate: GateHandler | None = None,
        variables: dict[str, Any] | None = None,
        history: list[dict[str, Any]] | None = None,
        resume_ids: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        settings: Settings | None = None,
        approvals: Any = None,
    ) -> WorkflowResult:
        """Walk ``wf`` on ``task`` inside an open run (:func:`orchestrator_nb.runs.scope.open_run`).

        Callers go through :class:`orchestrator_nb.runs.RunService`, which opens the run (its
        workspace, journal, observed bus and seat), starts the rehearsal (``rehearsal`` here is
        a running one or None) and decides what to resume. ``timeout``: the run's wall-clock
        limit (outcome ``timeout``). ``scope.context``: a follow-up's summary of the previous
        turn, put before the task for the agents that do not resume their own native
        conversation (one that resumes has the turn already).
        """
        ctx = RunContext(
            run_id=scope.run_id,
            task=task,
            name=name,
            workflow=wf,
            ws=scope.seat.ws,
            bus=scope.bus,
            journal=scope.journal,
            done=scope.done,
            rehearsal=None,
            gate=gate,
            cancel=scope.cancel,
            budget=BudgetTracker(wf.budget),
            variables=dict(variables or {}),
            history=list(history or []),
            resume_ids={a: resume_point(p) for a, p in (resume_ids or {}).items()},
            settings=settings or self.settings,
            timeout=timeout,
            # One handler per run: an "always for this run" answer holds in every step.
            approvals=handler_for(approvals, (settings or self.settings).approvals),
            context=scope.context,
            seat=scope.seat,
            notes=scope.notes,
        )
        return await self._walk(ctx, rehearsal, scope.started)

    async def _walk(
        self, ctx: RunContext, rehearsal: RehearsalEndpoint | None, started: float
    ) -> WorkflowResult:
        ws = ctx.ws
        ctx.bus.emit(
            RunStarted(
                ctx.run_id, ctx.name, ctx.task, str(ws.root), rehearsal=rehearsal is not None
            )
        )
        outcome: Outcome = "completed"
        error: RunError | None = None
        watchdog = asyncio.ensure_future(self._watch_wall(ctx))
        try:
            # ACP agents stay warm for the run: one process and session per agent, all stopped
            # when the run ends, however it ends.
            async with warm_agents(rehearsal.url if rehearsal is not None else None) as pool:
                ctx.rehearsal = rehearsal
                self._prestart(ctx, pool)
                await self._steps(ctx, ctx.workflow.steps, "", ws.root)
        except Stop as stop:
            outcome, error = stop.outcome, stop.error
        except asyncio.CancelledError:
            self._finish(ctx, "cancelled", RunError.for_kind("cancelled", "interrupted"), started)
            raise
        finally:
            watchdog.cancel()
            if ws.is_git:
                ws.worktrees.cleanup()
        if outcome != "completed":
            if ctx.timeout_stop is not None:
                outcome, error = "timeout", ctx.timeout_stop
            elif ctx.budget_stop is not None:
                outcome, error = "budget_exceeded", ctx.budget_stop
            elif ctx.circuit is not None:
                outcome, error = "circuit_open", ctx.circuit
            elif ctx.cancel.is_set():
                outcome = "cancelled"
                if error is None or error.kind != "cancelled":
                    error = RunError.for_kind("cancelled", "stopped on request")
        if ctx.seat is not None:
            await ctx.seat.settle(outcome)  # an isolated run brings its changes back
        return self._finish(ctx, outcome, error, started)

    def _finish(
        self, ctx: RunContext, outcome: Outcome, error: RunError | None, started: float
    ) -> WorkflowResult:
        changes = ctx.seat.changes(outcome) if ctx.seat else ctx.ws.run_changes()
        result = WorkflowResult(
            run_id=ctx.run_id,
            workflow=ctx.name,
            task=ctx.task,
            outcome=outcome,
            steps=list(ctx.results),
            changes=changes.file_changes(),
            diff=changes.diff,
            error=error,
            duration_s=time.monotonic() - started,
            notes=list(ctx.notes),
            workspace=str(ctx.seat.root if ctx.seat else ctx.ws.root),
            rehearsal=ctx.rehearsal is not None,
        )
        message = error.message if error is not None else None
        kind = error.kind if error is not None else None
        ctx.journal.finish({"outcome": outcome, "error": message, "error_kind": kind})
        ctx.bus.emit(
            RunFinished(
                ctx.run_id, ctx.name, outcome, result.ok, result.usage, result.duration_s, message
            )
        )
        return result

    def _workflow(
        self, name: str, overrides: dict[str, Any], definition: Workflow | None = None
    ) -> Workflow:
        if definition is not None:
            return apply_overrides(definition, overrides)
        try:
            wf = self.settings.workflows[name]
        except KeyError:
            from ..errors import ConfigError

            known = ", ".join(sorted(self.settings.workflows)) or "none"
            raise ConfigError(
                f"unknown workflow {name!r} (known: {known})",
                key=f"workflows.{name}",
                hint="define it under `workflows:` in ./orchestrator.yaml",
            ) from None
        return apply_overrides(wf, overrides)

    async def _watch_wall(self, ctx: RunContext) -> None:
        while True:
            await asyncio.sleep(0.2)
            self._check_budget(ctx)

    # -- dry run --------------------------------------------------------------------------

    def plan(
        self,
        task: str,
        workflow: str,
        overrides: dict[str, Any] | None = None,
        *,
        definition: Workflow | None = None,
    ) -> list[PlannedStep]:
        wf = self._workflow(workflow, overrides or {}, definition)
        context = {"task": task, "steps": {}, "iteration": 1, "history": [], "vars": {}}
        out: list[PlannedStep] = []

        def walk(steps: list[Step], depth: int) -> None:
            for s in steps:
                if isinstance(s, AgentStep):
                    try:
                        prompt: str | None = render(s.prompt, context, step_id=s.id)
                        note = ""
                    except TemplateError as exc:
                        if exc.bound:  # refused whatever the earlier steps say
                            raise
                        prompt, note = None, "(prompt depends on earlier steps)"
                    except OrchestratorError:
                        prompt, note = None, "(prompt depends on earlier steps)"
                    out.append(PlannedStep(s.id, "agent", s.agent, depth, prompt, note))
                elif isinstance(s, ParallelStep):
                    out.append(PlannedStep(s.id, "parallel", None, depth, note=f"merge={s.merge}"))
                    walk(list(s.steps), depth + 1)
                elif isinstance(s, LoopStep):
                    note = f"up to {s.max_iterations}×"
                    if s.min_suggestions_threshold is not None:
                        note += (
                            f", until {s.review_step} < {s.min_suggestions_threshold} suggestions"
                        )
                    out.append(PlannedStep(s.id, "loop", None, depth, note=note))
                    walk(s.steps, depth + 1)
                elif isinstance(s, BranchStep):
                    out.append(PlannedStep(s.id, "branch", None, depth, note=f"when {s.when}"))
                    walk(s.then, depth + 1)
                    walk(s.otherwise, depth + 1)
                else:
                    out.append(PlannedStep(s.id, "gate", None, depth, note=s.policy or ""))

        walk(wf.steps, 0)
        return out


def apply_overrides(wf: Workflow, overrides: dict[str, Any]) -> Workflow:
    """Per-run overrides: ``max_iterations`` (every loop), budget fields, ``gate_policy``."""
    from ..errors import ConfigError

    known = {"max_iterations", "max_cost_usd", "max_tokens", "max_wall_s", "gate_policy"}
    unknown = set(overrides) - known
    if unknown:
        raise ConfigError(
            f"unknown override(s) {', '.join(sorted(unknown))}",
            key="overrides",
            hint=f"accepted: {', '.join(sorted(known))}",
        )
    data = wf.model_dump(by_alias=True)
    budget = {k: v for k, v in overrides.items() if k.startswith("max_") and k != "max_iterations"}
    data["budget"].update({k: v for k, v in budget.items() if v is not None})
    if overrides.get("gate_policy"):
        data["gate_policy"] = overrides["gate_policy"]
    if overrides.get("max_iterations") is not None:

        def bump(steps: list[dict[str, Any]]) -> None:
            for s in steps:
                if s.get("kind") == "loop":
                    s["max_iterations"] = overrides["max_iterations"]
                for child in CHILD_STEPS:
                    if isinstance(s.get(child), list):
                        bump(s[child])

        bump(data["steps"])
    try:
        return Workflow.model_validate(data)
    except Exception as exc:
        raise ConfigError(f"bad override: {exc}", key="overrides") from None


__all__ = ["Engine", "GateDecision", "GateHandler", "apply_overrides"]
