"""How each kind of step runs: agent steps (through the policy stack), parallel groups, loops,
branches and gates. :class:`StepWalker` is the part of :class:`~.engine.Engine` that walks a
workflow's steps; the engine owns the run around the walk (its start, end and budgets).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..agents.acp.prestart import first_steps, prestart
from ..agents.registry import DriverRegistry
from ..api import prepare_agent
from ..config import Settings, agent_config
from ..display import plural
from ..errors import AgentError, CircuitOpen, ConfigError, RunTimeout
from ..events import Attempt, PassedOver, StepResult
from ..lifecycle import (
    AgentEventEmitted,
    AgentFallback,
    BudgetWarning,
    GateDecided,
    GateRequested,
    StepFinished,
    StepStarted,
)
from ..observe.redact import redact_obj
from ..sessions import with_context as with_context_of
from .cache import StepCache
from .context import RunContext, Stop, all_or_none
from .models import AgentStep, BranchStep, GateStep, LoopStep, ParallelStep, Step
from .policies import Breakers, ConcurrencyLimits, RateLimiters
from .stack import run_attempts
from .suggestions import count_suggestions
from .templates import StepView, TemplateError, evaluate, render

if TYPE_CHECKING:
    pass

_PICK = re.compile(r"^\s*PICK:\s*([A-Za-z][A-Za-z0-9_-]*)", re.MULTILINE)
# Failures that say "this agent cannot run here", not "this task went wrong": the role's next
# agent takes the step. A rate limit, a timeout or a failed task stays the step's own.
FALLBACK_KINDS = frozenset({"not_installed", "auth"})


class StepWalker:
    """The step runners of :class:`~.engine.Engine` (which provides these attributes)."""

    settings: Settings
    registry: DriverRegistry
    limits: ConcurrencyLimits
    breakers: Breakers
    rates: RateLimiters
    _caches: dict[Path, StepCache]

    def _check_budget(self, ctx: RunContext) -> None:
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

    async def _steps(self, ctx: RunContext, steps: list[Step], prefix: str, cwd: Path) -> None:
        for step in steps:
            if ctx.timeout_stop is not None:
                raise Stop("timeout", ctx.timeout_stop)
            if ctx.budget_stop is not None:
                raise Stop("budget_exceeded", ctx.budget_stop)
            if ctx.cancel.is_set():
                raise Stop("cancelled", "stopped on request")
            if isinstance(step, AgentStep):
                result = await self._agent(ctx, step, prefix, cwd, track=True)
                if not result.ok and not step.optional:
                    raise Stop("failed", f"step {step.id} failed: {result.error}")
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

    def _eval(self, ctx: RunContext, expression: str, step_id: str, what: str) -> bool:
        try:
            return evaluate(expression, ctx.template_context(), step_id=step_id, what=what)
        except TemplateError as exc:
            raise Stop("failed", f"{what} of step {step_id}: {exc}") from exc

    async def _agent(
        self, ctx: RunContext, step: AgentStep, prefix: str, cwd: Path, *, track: bool
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
            raise Stop("failed", str(exc)) from exc
        ctx.bus.emit(StepStarted(ctx.run_id, step.id, step.agent, "agent", ctx.iteration, prompt))
        result = await self._call(ctx, step, prompt, cwd, track, key, fresh=fresh)
        result.step_id, result.iteration = step.id, ctx.iteration
        self._record(ctx, step, result, journal=True, key=key)
        return result

    @staticmethod
    def _render(ctx: RunContext, step: AgentStep, *, with_context: bool) -> str:
        values = ctx.template_context()
        if with_context and ctx.context:
            values["task"] = with_context_of(ctx.context, ctx.task)
        return render(step.prompt, values, step_id=step.id)

    async def _call(
        self,
        ctx: RunContext,
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
                if step.fallback:
                    # Another agent starts its own conversation: the follow-up's summary too.
                    again = fresh or prompt
                    result = await self._fallback(ctx, step, again, cwd, key, result, track)
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

    def _prestart(self, ctx: RunContext, pool: Any) -> None:
        """Start the run's ACP agents now, in the background (see agents/acp/prestart.py)."""
        settings = ctx.settings or self.settings
        log = ctx.journal.dir / "agents" / "prestart"

        async def prepare(agent: str, step: str) -> Any:
            if agent_config(settings, agent).driver != "acp":
                return None
            run = await self._prepare(ctx, agent, "", step, ctx.ws.root, log)
            return None if isinstance(run, StepResult) else run

        prestart(pool, prepare, first_steps(ctx.workflow.steps, set(ctx.resume_ids)), log)

    async def _prepare(
        self,
        ctx: RunContext,
        agent: str,
        prompt: str,
        step: str,
        cwd: Path,
        log: Path,
        **more: Any,
    ) -> Any:
        """An agent's invocation in this run (a prestart's or a step's), or the StepResult
        that says why it cannot start; its logs under the run's journal."""
        return await prepare_agent(
            agent,
            prompt,
            workspace=cwd,
            settings=ctx.settings or self.settings,
            rehearsal=ctx.rehearsal,
            step=step,
            registry=self.registry,
            log_root=log,
            approvals=ctx.approvals,
            state_root=ctx.journal.dir.parents[2],  # the workspace whose state holds the logs
            **more,
        )

    async def _attempts(
        self, ctx: RunContext, step: AgentStep, prompt: str, cwd: Path, key: str, resume: Any
    ) -> StepResult:
        try:
            prepared = await self._prepare(
                ctx,
                step.agent,
                prompt,
                step.id,
                cwd,
                ctx.journal.dir / "agents" / key.replace("/", "."),
                resume=resume.session_id if resume is not None else None,
                previous_usage=resume.usage if resume is not None else None,
                timeout=step.timeout,
                model=step.model,
            )
        except ConfigError as exc:
            if not ctx.results:
                raise  # nothing ran yet: the run is refused, as on every entry point
            # An earlier step changed what the folder asks to run (a CLI's settings file, say):
            # this step cannot start, and the run ends with what the others did, to review
            # or revert, rather than an exception that leaves no result.
            error = AgentError.for_kind("config", exc.message, hint=exc.hint, agent=step.agent)
            return StepResult(
                step.agent,
                False,
                error=error,
                attempts=[Attempt(1, False, 0.0, "config", exc.message)],
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

    async def _fallback(
        self,
        ctx: RunContext,
        step: AgentStep,
        prompt: str,
        cwd: Path,
        key: str,
        result: StepResult,
        track: bool,
    ) -> StepResult:
        """Pass the step down the role's agents while each is not installed or not logged in."""
        passed: list[PassedOver] = []
        hints: list[str] = []
        for agent in step.fallback:
            kind = result.error_kind
            if kind not in FALLBACK_KINDS or ctx.cancel.is_set() or result.error is None:
                break
            reason, hint = result.error.message, result.error.hint
            hints += [hint] if hint else []
            passed.append(PassedOver(result.agent, str(kind), reason))
            ctx.bus.emit(
                AgentFallback(
                    ctx.run_id, step.id, result.agent, agent, str(kind), reason, ctx.iteration
                )
            )
            # A step's own model names a model of its first agent; the others use their own.
            other = step.model_copy(update={"agent": agent, "fallback": [], "model": None})
            resume = ctx.resume_ids.pop(agent, None) if track else None
            result = await self._attempts(ctx, other, prompt, cwd, key, resume)
        if not passed:
            return result
        last = result.error
        if last is not None and last.kind in FALLBACK_KINDS:  # nobody in the list could take it
            from ..display import passed_over_text

            every = [*passed, PassedOver(result.agent, last.kind, last.message)]
            reasons = "; ".join(passed_over_text(p.agent, p.kind, p.reason) for p in every)
            hints += [last.hint] if last.hint else []
            result.error = AgentError.for_kind(
                last.kind,
                f"no agent could take step {step.id}: {reasons}",
                agent=result.agent,
                hint="; ".join(["install or log in to one of them", *dict.fromkeys(hints)]),
            )
        result.passed_over = passed
        return result

    @contextlib.contextmanager
    def _tracked(self, ctx: RunContext, key: str, track: bool) -> Iterator[Any]:
        if not track:
            yield None
            return
        with ctx.ws.step(key) as tracker:
            yield tracker

    def _cache_lookup(
        self, ctx: RunContext, step: AgentStep, prompt: str
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
        self, ctx: RunContext, step: AgentStep, result: StepResult, *, journal: bool, key: str = ""
    ) -> None:
        if journal:
            ctx.journal.record(key, result)
        if not result.cached:
            ctx.budget.add(result.usage)
        ctx.results.append(result)
        ctx.views[step.id] = StepView.from_result(
            result, result.diff, suggestions=count_suggestions(result.text)
        )
        # The agent that ran it: the role's fallback when the first could not.
        agent = result.agent or step.agent
        ctx.bus.emit(StepFinished(ctx.run_id, step.id, agent, result, ctx.iteration, result.cached))
        self._check_budget(ctx)

    async def _parallel(self, ctx: RunContext, step: ParallelStep, prefix: str, cwd: Path) -> None:
        isolation = step.isolation
        if isolation == "auto":
            isolation = "worktree" if ctx.ws.is_git else "shared"
        if isolation == "worktree" and not ctx.ws.is_git:
            raise Stop("failed", f"step {step.id}: worktree isolation needs a git workspace")
        ctx.bus.emit(StepStarted(ctx.run_id, step.id, None, "parallel", ctx.iteration))
        gate = asyncio.Semaphore(step.max_concurrency or len(step.steps))
        trees: dict[str, Path] = {}
        if isolation == "worktree":
            # Every child starts from the same state: one base commit, checkouts side by side,
            # all made before the first child starts.
            keys = [f"{prefix}{c.id}" for c in step.steps]
            trees = await asyncio.to_thread(ctx.ws.worktrees.create_many, keys)

        async def child(c: AgentStep) -> StepResult:
            async with gate:
                if isolation == "worktree":
                    where = trees[f"{prefix}{c.id}"]
                    result = await self._agent(ctx, c, prefix, where, track=False)
                    # Off the loop: one child's diff must not hold up its running siblings.
                    patch = await asyncio.to_thread(ctx.ws.worktrees.diff, f"{prefix}{c.id}")
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
                results = await all_or_none([child(c) for c in step.steps])
        else:
            results = await all_or_none([child(c) for c in step.steps])
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
            raise Stop("failed", f"step {step.id}: every branch failed ({failed[0].error})")
        if isolation == "worktree":
            self._merge(ctx, step, prefix, results)

    def _merge(
        self, ctx: RunContext, step: ParallelStep, prefix: str, results: list[StepResult]
    ) -> None:
        if step.merge == "none":
            kept = plural(len(results), "branch")
            ctx.notes.append(f"{step.id}: changes of {kept} kept aside")
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

    def _apply_pick(
        self, ctx: RunContext, group: ParallelStep, prefix: str, judge_text: str
    ) -> None:
        ids = [c.id for c in group.steps]
        picks = [m for m in _PICK.findall(judge_text) if m in ids]
        if not picks:
            ctx.notes.append(f"{group.id}: no valid `PICK: <id>` line (one of {ids}); none applied")
            return
        self._apply_children(ctx, group, prefix, [picks[-1]])

    def _apply_children(
        self, ctx: RunContext, step: ParallelStep, prefix: str, child_ids: list[str]
    ) -> None:
        for child_id in child_ids:
            key = f"{prefix}{child_id}"
            with ctx.ws.step(f"{key}.merge") as tracker:
                applied = ctx.ws.worktrees.apply(key, as_diffed=True)  # what the step reported
            if applied.ok:
                files = plural(len(tracker.changes), "file")
                ctx.notes.append(f"{step.id}: applied {child_id} ({files})")
            else:
                shown = ", ".join(applied.conflicts) or "see the patch"
                ctx.notes.append(f"{step.id}: {child_id} NOT applied, conflicts in {shown}")

    async def _loop(self, ctx: RunContext, step: LoopStep, prefix: str, cwd: Path) -> None:
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
                    ctx.notes.append(
                        f"{step.id}: done after {plural(i, 'round')}: its stop condition "
                        f"({step.until}) was met"
                    )
                    return
            ctx.notes.append(
                f"{step.id}: stopped after {plural(step.max_iterations, 'round')}, the most it "
                f"may run (max_iterations={step.max_iterations})"
            )
        finally:
            ctx.iteration = outer

    def _threshold_reached(self, ctx: RunContext, step: LoopStep, child_id: str, i: int) -> bool:
        if step.min_suggestions_threshold is None or child_id != step.review_step:
            return False
        view = ctx.views.get(child_id)
        count = view.suggestions if view is not None and view.suggestions is not None else 0
        if count < step.min_suggestions_threshold:
            ctx.notes.append(
                f"{step.id}: done after {plural(i, 'round')}: the review in round {i} made "
                f"{plural(count, 'suggestion')}, fewer than {step.min_suggestions_threshold}"
            )
            return True
        return False

    async def _gate(self, ctx: RunContext, step: GateStep, prefix: str) -> None:
        key = f"{prefix}{step.id}"
        if key in ctx.done:
            decision, by = ctx.done[key].text.split(" by ", 1)
        else:
            try:
                message = render(
                    step.message, ctx.template_context(), step_id=step.id, what="message"
                )
            except TemplateError as exc:
                raise Stop("failed", str(exc)) from exc
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
            raise Stop("cancelled", f"rejected at gate {step.id} by {by}")
        if decision == "fail":
            raise Stop("failed", f"gate {step.id}: no one could decide and its policy is fail")
