"""The engine: walks a workflow's steps, applies the policies, emits lifecycle events.

Agent steps run through the policy stack of :mod:`.stack` (retry around breaker, concurrency
slot, rate limiter and one attempt of :func:`orchestrator_nb.api.attempt_agent`); the workspace
snapshots each step
for its diff; parallel children get their own git worktrees. Every finished step is journaled
before the next starts, which is what makes :meth:`Engine.run` with ``resume=True`` possible.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..agents.acp.warm import warm_agents
from ..agents.registry import DriverRegistry, default_registry
from ..api import prepare_agent
from ..config import Settings
from ..errors import (
    AgentError,
    BudgetExceeded,
    CircuitOpen,
    OrchestratorError,
    RunError,
    RunTimeout,
)
from ..events import StepResult
from ..lifecycle import (
    AgentEventEmitted,
    BudgetWarning,
    EventBus,
    GateDecided,
    GateRequested,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    WorkspaceWaiting,
)
from ..observe.redact import redact_obj
from ..sessions import with_context as with_context_of
from ..workspace import Workspace
from ..workspace.lock import Isolation, Seat, run_seat
from .cache import StepCache
from .journal import RunJournal
from .models import AgentStep, BranchStep, GateStep, LoopStep, ParallelStep, Step, Workflow
from .policies import Breakers, BudgetTracker, ConcurrencyLimits, RateLimiters
from .result import Outcome, PlannedStep, WorkflowResult
from .stack import run_attempts
from .suggestions import count_suggestions
from .templates import StepView, TemplateError, evaluate, render

# What a gate handler returns: "approve", "reject", ("edit", new_task), or None (use the policy).
GateDecision = str | tuple[str, str] | None
GateHandler = Callable[[GateStep, str], Awaitable[GateDecision]]
if TYPE_CHECKING:
    from ..rehearsal.endpoint import RehearsalEndpoint

_PICK = re.compile(r"^\s*PICK:\s*([A-Za-z][A-Za-z0-9_-]*)", re.MULTILINE)


class _Stop(Exception):
    """Ends the walk with an outcome other than completed."""

    def __init__(self, outcome: Outcome, error: RunError | str) -> None:
        if isinstance(error, str):
            error = RunError.for_kind(outcome, error)
        super().__init__(error.message)
        self.outcome = outcome
        self.error = error


def _resume_point(value: Any) -> Any:
    """A ResumePoint from a bare native session id too (older callers pass strings)."""
    from ..sessions import ResumePoint

    return value if isinstance(value, ResumePoint) else ResumePoint(str(value))


@dataclass
class _Ctx:
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
    context: str = ""  # a follow-up's summary of the previous turn (see Engine.run)

    def template_context(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "steps": dict(self.views),
            "iteration": self.iteration or 1,
            "history": self.history,
            "vars": self.variables,
            **self.variables,
        }


class Engine:
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

    async def run(
        self,
        task: str,
        workflow: str,
        *,
        workspace: Path,
        rehearsal: RehearsalEndpoint | None = None,
        run_id: str | None = None,
        resume: bool = False,
        gate: GateHandler | None = None,
        cancel: asyncio.Event | None = None,
        variables: dict[str, Any] | None = None,
        history: list[dict[str, Any]] | None = None,
        overrides: dict[str, Any] | None = None,
        resume_ids: Mapping[str, Any] | None = None,
        definition: Workflow | None = None,
        timeout: float | None = None,
        settings: Settings | None = None,
        meta: dict[str, Any] | None = None,
        isolation: Isolation = "shared",
        approvals: Any = None,
        context: str = "",
    ) -> WorkflowResult:
        """Run ``workflow`` (or ``definition``, journaled under that name) on ``task``.

        Callers go through :class:`orchestrator_nb.runs.RunService`, which starts the
        rehearsal (``rehearsal`` here is a running one or None) and decides what to resume.
        ``timeout``: the run's wall-clock limit (outcome ``timeout``). ``context``: a
        follow-up's summary of the previous turn, put before the task for the agents that do
        not resume their own native conversation (one that resumes has the turn already).
        """
        wf = self._workflow(workflow, overrides or {}, definition)
        if not resume:
            # A template past a size, loop or time bound is refused before any agent runs.
            self.plan(task, workflow, overrides, definition=definition)
        ws = Workspace(workspace, run_id=run_id)
        journal = RunJournal(ws.state.root / "runs", ws.run_id)
        done = journal.finished() if resume else {}
        if resume:
            context = context or str(journal.meta().get("context") or "")
        else:
            journal.start(
                {"task": task, "workflow": workflow, "overrides": overrides or {}}
                | ({"context": context} if context else {})
                | {k: v for k, v in (meta or {}).items() if v is not None}
                | ({"timeout": timeout} if timeout is not None else {})
            )
        ctx = _Ctx(
            run_id=ws.run_id,
            task=task,
            name=workflow,
            workflow=wf,
            ws=ws,
            bus=EventBus(),
            journal=journal,
            done=done,
            rehearsal=None,
            gate=gate,
            cancel=cancel or asyncio.Event(),
            budget=BudgetTracker(wf.budget),
            variables=dict(variables or {}),
            history=list(history or []),
            resume_ids={a: _resume_point(p) for a, p in (resume_ids or {}).items()},
            settings=settings or self.settings,
            timeout=timeout,
            approvals=approvals,
            context=context,
        )
        started = time.monotonic()
        leftovers = ws.state.worktrees
        if ws.is_git and leftovers.is_dir() and any(leftovers.iterdir()):
            ws.worktrees.cleanup_stale()  # a crashed run's worktrees (each leaves a folder)
        # Logs, metrics and the audit trail follow every run, in the workspace's state folder.
        from ..observe import install

        # Each run has its own bus: concurrent runs on one engine must not write each other's
        # events into their logs and audit trails. It forwards to the engine's bus, which is
        # what callers subscribe to.
        forward = ctx.bus.subscribe(self.bus.emit)
        uninstall = install(ctx.bus, ws.state.root, breakers=self.breakers)

        def waiting(holder: str) -> None:
            ctx.bus.emit(WorkspaceWaiting(ctx.run_id, holder, str(ws.root)))

        try:
            # One run writes in a workspace at a time (or works in its own worktree); leftovers
            # of a dead run are stopped first. See workspace/lock.py.
            async with run_seat(
                ws, on_wait=waiting, cancel=ctx.cancel, isolation=isolation, notes=ctx.notes
            ) as seat:
                ctx.seat, ctx.ws = seat, seat.ws
                return await self._walk(ctx, rehearsal, started)
        finally:
            uninstall()
            forward()

    async def _walk(
        self, ctx: _Ctx, rehearsal: RehearsalEndpoint | None, started: float
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
            async with warm_agents():
                ctx.rehearsal = rehearsal
                await self._steps(ctx, ctx.workflow.steps, "", ws.root)
        except _Stop as stop:
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
        self, ctx: _Ctx, outcome: Outcome, error: RunError | None, started: float
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

    async def _watch_wall(self, ctx: _Ctx) -> None:
        while True:
            await asyncio.sleep(0.2)
            self._check_budget(ctx)

    def _check_budget(self, ctx: _Ctx) -> None:
        for budget, used, limit in ctx.budget.warnings():
            ctx.bus.emit(BudgetWarning(ctx.run_id, budget, used, limit))
        if (
            ctx.timeout is not None
            and ctx.timeout_stop is None
            and ctx.budget.elapsed_s > ctx.timeout
        ):
            ctx.timeout_stop = RunTimeout(
                f"the run did not finish within its timeout of {ctx.timeout:g}s; "
                "its agents were stopped",
                hint="pass a longer --timeout (magic, console) or timeout= (Python), "
                "or split the task",
            )
            ctx.cancel.set()
        exceeded = ctx.budget.check()
        if exceeded is not None and ctx.budget_stop is None:
            ctx.budget_stop = exceeded
            ctx.cancel.set()  # reaches every running agent's process group

    # -- the walk -------------------------------------------------------------------------

    async def _steps(self, ctx: _Ctx, steps: list[Step], prefix: str, cwd: Path) -> None:
        for step in steps:
            if ctx.timeout_stop is not None:
                raise _Stop("timeout", ctx.timeout_stop)
            if ctx.budget_stop is not None:
                raise _Stop("budget_exceeded", ctx.budget_stop)
            if ctx.cancel.is_set():
                raise _Stop("cancelled", "stopped on request")
            if isinstance(step, AgentStep):
                result = await self._agent(ctx, step, prefix, cwd, track=True)
                if not result.ok and not step.optional:
                    raise _Stop("failed", f"step {step.id} failed: {result.error}")
                if step.id in ctx.pending_picks:
                    group, group_prefix = ctx.pending_picks.pop(step.id)
                    self._apply_pick(ctx, group, group_prefix, result.text)
            elif isinstance(step, ParallelStep):
                await self._parallel(ctx, step, prefix, cwd)
            elif isinstance(step, LoopStep):
                await self._loop(ctx, step, prefix, cwd)
            elif isinstance(step, BranchStep):
                chosen = self._eval(ctx, step.when, step.id, "when")
                ctx.notes.append(f"branch {step.id}: {'then' if chosen else 'else'}")
                await self._steps(ctx, step.then if chosen else step.otherwise, prefix, cwd)
            else:
                await self._gate(ctx, step, prefix)

    def _eval(self, ctx: _Ctx, expression: str, step_id: str, what: str) -> bool:
        try:
            return evaluate(expression, ctx.template_context(), step_id=step_id, what=what)
        except TemplateError as exc:
            raise _Stop("failed", f"{what} of step {step_id}: {exc}") from exc

    async def _agent(
        self, ctx: _Ctx, step: AgentStep, prefix: str, cwd: Path, *, track: bool
    ) -> StepResult:
        key = f"{prefix}{step.id}"
        if key in ctx.done:  # resumed: this step finished before the crash
            result = replace(ctx.done[key], step_id=step.id, iteration=ctx.iteration)
            self._record(ctx, step, result, journal=False)
            return result
        # A follow-up's summary goes to an agent only when it starts a fresh conversation: one
        # that resumes its native session has the earlier turn already (and would pay twice).
        resumes = track and step.agent in ctx.resume_ids
        try:
            prompt = self._render(ctx, step, with_context=not resumes)
            fresh = self._render(ctx, step, with_context=True) if resumes else prompt
        except TemplateError as exc:
            raise _Stop("failed", str(exc)) from exc
        ctx.bus.emit(StepStarted(ctx.run_id, step.id, step.agent, "agent", ctx.iteration, prompt))
        result = await self._call(ctx, step, prompt, cwd, track, key, fresh=fresh)
        result.step_id, result.iteration = step.id, ctx.iteration
        self._record(ctx, step, result, journal=True, key=key)
        return result

    @staticmethod
    def _render(ctx: _Ctx, step: AgentStep, *, with_context: bool) -> str:
        values = ctx.template_context()
        if with_context and ctx.context:
            values["task"] = with_context_of(ctx.context, ctx.task)
        return render(step.prompt, values, step_id=step.id)

    async def _call(
        self,
        ctx: _Ctx,
        step: AgentStep,
        prompt: str,
        cwd: Path,
        track: bool,
        key: str,
        *,
        fresh: str | None = None,
    ) -> StepResult:
        """``fresh``: the prompt for a fresh conversation, when the resumed one is gone."""
        # Worktree children run elsewhere, and the CLIs keep sessions per working folder.
        resume = ctx.resume_ids.pop(step.agent, None) if track else None
        use_cache = step.cache and resume is None
        cache, cache_key = self._cache_lookup(ctx, step, prompt) if use_cache else (None, None)
        if cache is not None and cache_key is not None:
            hit = cache.get(cache_key)
            if hit is not None:
                return replace(StepResult.from_dict(hit), cached=True)
        try:
            with self._tracked(ctx, key, track) as tracker:
                result = await self._attempts(ctx, step, prompt, cwd, key, resume)
                if resume is not None and result.error_kind == "config":
                    # The CLI no longer has that session (another HOME, pruned): start afresh.
                    result = await self._attempts(ctx, step, fresh or prompt, cwd, key, None)
                if step.write_code_blocks and result.ok and track:
                    ctx.ws.write_code_blocks(result.text, key, on_unsafe="skip")
        except CircuitOpen as exc:
            ctx.circuit = exc
            error = AgentError.for_kind("failed", exc.message, agent=step.agent, hint=exc.hint)
            return StepResult(step.agent, False, error=error)
        if tracker is not None and tracker.changes is not None:
            result.changes = tracker.changes.file_changes()
            result.diff = tracker.changes.diff
        if cache is not None and cache_key is not None and result.ok:
            cache.put(cache_key, redact_obj(result.to_dict()))
        return result

    async def _attempts(
        self, ctx: _Ctx, step: AgentStep, prompt: str, cwd: Path, key: str, resume: Any
    ) -> StepResult:
        prepared = await prepare_agent(
            step.agent,
            prompt,
            workspace=cwd,
            settings=ctx.settings or self.settings,
            rehearsal=ctx.rehearsal,
            step=step.id,
            registry=self.registry,
            log_root=ctx.journal.dir / "agents" / key.replace("/", "."),
            resume=resume.session_id if resume is not None else None,
            previous_usage=resume.usage if resume is not None else None,
            timeout=step.timeout,
            model=step.model,
            approvals=ctx.approvals,
            state_root=ctx.journal.dir.parents[2],  # the workspace whose state holds the logs
        )
        if isinstance(prepared, StepResult):  # not installed: nothing to attempt
            return prepared
        if step.retries is not None:
            prepared.config = prepared.config.model_copy(update={"retries": step.retries})
        return await run_attempts(
            prepared,
            breakers=self.breakers,
            limits=self.limits,
            rates=self.rates,
            on_event=lambda ev: ctx.bus.emit(
                AgentEventEmitted(ctx.run_id, step.id, step.agent, ev)
            ),
            cancel=ctx.cancel,
        )

    @contextlib.contextmanager
    def _tracked(self, ctx: _Ctx, key: str, track: bool) -> Iterator[Any]:
        if not track:
            yield None
            return
        with ctx.ws.step(key) as tracker:
            yield tracker

    def _cache_lookup(
        self, ctx: _Ctx, step: AgentStep, prompt: str
    ) -> tuple[StepCache | None, str | None]:
        root = ctx.ws.state.root / "cache"
        cache = self._caches.setdefault(root, StepCache(root, self.settings.limits.cache_ttl_s))
        snap = ctx.ws.snapshot()
        content = {p: getattr(s, "oid", None) for p, s in sorted(snap.files.items())}
        ws_hash = hashlib.sha256(json.dumps([snap.head, content]).encode()).hexdigest()
        agent_cfg = self.settings.agents.get(step.agent)
        model = step.model or (agent_cfg.model if agent_cfg else None)
        cli = agent_cfg.path if agent_cfg and agent_cfg.path else step.agent
        return cache, cache.key_for(step.agent, cli, model, prompt, ws_hash)

    def _record(
        self, ctx: _Ctx, step: AgentStep, result: StepResult, *, journal: bool, key: str = ""
    ) -> None:
        if journal:
            ctx.journal.record(key, result)
        if not result.cached:
            ctx.budget.add(result.usage)
        ctx.results.append(result)
        ctx.views[step.id] = StepView.from_result(
            result, result.diff, suggestions=count_suggestions(result.text)
        )
        ctx.bus.emit(
            StepFinished(ctx.run_id, step.id, step.agent, result, ctx.iteration, result.cached)
        )
        self._check_budget(ctx)

    async def _parallel(self, ctx: _Ctx, step: ParallelStep, prefix: str, cwd: Path) -> None:
        isolation = step.isolation
        if isolation == "auto":
            isolation = "worktree" if ctx.ws.is_git else "shared"
        if isolation == "worktree" and not ctx.ws.is_git:
            raise _Stop("failed", f"step {step.id}: worktree isolation needs a git workspace")
        ctx.bus.emit(StepStarted(ctx.run_id, step.id, None, "parallel", ctx.iteration))
        gate = asyncio.Semaphore(step.max_concurrency or len(step.steps))

        async def child(c: AgentStep) -> StepResult:
            async with gate:
                if isolation == "worktree":
                    where = await asyncio.to_thread(ctx.ws.worktrees.create, f"{prefix}{c.id}")
                    result = await self._agent(ctx, c, prefix, where, track=False)
                    patch = ctx.ws.worktrees.diff(f"{prefix}{c.id}")
                    result.changes = list(patch.files)
                    result.diff = patch.text
                    ctx.views[c.id] = StepView.from_result(
                        result, result.diff, suggestions=count_suggestions(result.text)
                    )
                    return result
                return await self._agent(ctx, c, prefix, cwd, track=False)

        first = len(ctx.results)
        if isolation == "shared":
            with ctx.ws.step(f"{prefix}{step.id}"):
                results = await _all_or_none([child(c) for c in step.steps])
        else:
            results = await _all_or_none([child(c) for c in step.steps])
        # Children were recorded as they finished (the live view follows them); the result
        # lists them as the workflow declares them, so the same run always reads the same.
        order = {c.id: i for i, c in enumerate(step.steps)}
        ctx.results[first:] = sorted(
            ctx.results[first:], key=lambda r: order.get(r.step_id or "", 0)
        )
        failed = [
            r for r, c in zip(results, step.steps, strict=True) if not r.ok and not c.optional
        ]
        if failed and not any(r.ok for r in results):
            raise _Stop("failed", f"step {step.id}: every branch failed ({failed[0].error})")
        if isolation == "worktree":
            self._merge(ctx, step, prefix, results)

    def _merge(self, ctx: _Ctx, step: ParallelStep, prefix: str, results: list[StepResult]) -> None:
        if step.merge == "none":
            ctx.notes.append(f"{step.id}: changes of {len(results)} branch(es) kept aside")
            return
        if step.merge == "pick":
            if step.pick_by:
                ctx.pending_picks[step.pick_by] = (step, prefix)
                return
            winner = next((c.id for c, r in zip(step.steps, results, strict=True) if r.ok), None)
            self._apply_children(ctx, step, prefix, [winner] if winner else [])
            return
        self._apply_children(
            ctx, step, prefix, [c.id for c, r in zip(step.steps, results, strict=True) if r.ok]
        )

    def _apply_pick(self, ctx: _Ctx, group: ParallelStep, prefix: str, judge_text: str) -> None:
        ids = [c.id for c in group.steps]
        picks = [m for m in _PICK.findall(judge_text) if m in ids]
        if not picks:
            ctx.notes.append(f"{group.id}: no valid `PICK: <id>` line (one of {ids}); none applied")
            return
        self._apply_children(ctx, group, prefix, [picks[-1]])

    def _apply_children(
        self, ctx: _Ctx, step: ParallelStep, prefix: str, child_ids: list[str]
    ) -> None:
        for child_id in child_ids:
            key = f"{prefix}{child_id}"
            with ctx.ws.step(f"{key}.merge") as tracker:
                applied = ctx.ws.worktrees.apply(key)
            if applied.ok:
                ctx.notes.append(f"{step.id}: applied {child_id} ({len(tracker.changes)} file(s))")
            else:
                shown = ", ".join(applied.conflicts) or "see the patch"
                ctx.notes.append(f"{step.id}: {child_id} NOT applied, conflicts in {shown}")

    async def _loop(self, ctx: _Ctx, step: LoopStep, prefix: str, cwd: Path) -> None:
        outer = ctx.iteration
        try:
            for i in range(1, step.max_iterations + 1):
                ctx.iteration = i
                inner = f"{prefix}{step.id}/{i}/"
                for child in step.steps:
                    await self._steps(ctx, [child], inner, cwd)
                    if self._threshold_reached(ctx, step, child.id, i):
                        return
                if step.until and self._eval(ctx, step.until, step.id, "until"):
                    ctx.notes.append(f"{step.id}: `until` held after iteration {i}")
                    return
            ctx.notes.append(f"{step.id}: stopped at max_iterations={step.max_iterations}")
        finally:
            ctx.iteration = outer

    def _threshold_reached(self, ctx: _Ctx, step: LoopStep, child_id: str, i: int) -> bool:
        if step.min_suggestions_threshold is None or child_id != step.review_step:
            return False
        view = ctx.views.get(child_id)
        count = view.suggestions if view is not None and view.suggestions is not None else 0
        if count < step.min_suggestions_threshold:
            ctx.notes.append(
                f"{step.id}: review had {count} suggestion(s) "
                f"(< {step.min_suggestions_threshold}) in iteration {i}; loop done"
            )
            return True
        return False

    async def _gate(self, ctx: _Ctx, step: GateStep, prefix: str) -> None:
        key = f"{prefix}{step.id}"
        if key in ctx.done:
            decision, by = ctx.done[key].text.split(" by ", 1)
        else:
            try:
                message = render(
                    step.message, ctx.template_context(), step_id=step.id, what="message"
                )
            except TemplateError as exc:
                raise _Stop("failed", str(exc)) from exc
            ctx.bus.emit(GateRequested(ctx.run_id, step.id, message))
            answer = await ctx.gate(step, message) if ctx.gate is not None else None
            by = "user" if answer is not None else "policy"
            if answer is None:
                answer = step.policy or ctx.workflow.gate_policy
            if isinstance(answer, tuple):
                decision, ctx.task = answer[0], answer[1]
            else:
                decision = answer
            record = StepResult("gate", decision != "reject", text=f"{decision} by {by}")
            record.step_id = step.id
            ctx.journal.record(key, record)
        ctx.bus.emit(GateDecided(ctx.run_id, step.id, decision, by))
        ctx.notes.append(f"gate {step.id}: {decision} by {by}")
        if decision == "reject":
            raise _Stop("cancelled", f"rejected at gate {step.id} by {by}")
        if decision == "fail":
            raise _Stop("failed", f"gate {step.id}: no one could decide and its policy is fail")

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


async def _all_or_none(coros: list[Awaitable[StepResult]]) -> list[StepResult]:
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
                for child in ("steps", "then", "else"):
                    if isinstance(s.get(child), list):
                        bump(s[child])

        bump(data["steps"])
    try:
        return Workflow.model_validate(data)
    except Exception as exc:
        raise ConfigError(f"bad override: {exc}", key="overrides") from None
