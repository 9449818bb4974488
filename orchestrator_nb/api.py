"""Run one agent: resolve it, start its CLI through the runner, parse, decide, retry.

The driver only knows its CLI; everything shared (finding the binary, environment, timeouts,
cancel, retries, logs, the events cap) happens here, once.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenacity import RetryCallState, wait_exponential, wait_random

from . import fsio
from ._sync import run_sync
from .agents.availability import locate
from .agents.base import AgentRequest, Driver, Verdict
from .agents.registry import DriverRegistry, default_registry
from .config import AgentConfig, Settings, agent_config, load_settings
from .errors import AgentError, AgentNotInstalled, ConfigError
from .events import (
    Attempt,
    Event,
    FileChange,
    FileChangeEvent,
    StepResult,
    Usage,
    WarningEvent,
)
from .observe.checks import check_name, check_task
from .observe.redact import clip_tail
from .process import base_env, run_process
from .trust_store import refuse_untrusted_cli

if TYPE_CHECKING:
    from .rehearsal.endpoint import RehearsalArg, RehearsalEndpoint

STATE_DIR = ".orchestrator"
EventCallback = Callable[[Event], None]


class RetryableAttempt(Exception):
    """Carries a retryable attempt's result through tenacity."""

    def __init__(self, result: StepResult) -> None:
        super().__init__(result.error_kind)
        self.result = result


@dataclass
class _Run:
    """What one call resolved before its first attempt."""

    name: str
    config: AgentConfig
    driver: Driver
    request: AgentRequest
    env: dict[str, str]
    log_root: Path
    max_events: int
    previous_usage: Usage | None = None
    permissions: Any = None  # ACP agents: the PermissionHandler that answers their requests


def _settings(
    config: Settings | str | os.PathLike[str] | None, workspace: Path, trust: bool | None = None
) -> Settings:
    if isinstance(config, Settings):
        return config.with_trust(workspace, trust)
    if config is None:
        return load_settings(cwd=workspace, trust=trust)
    return load_settings(config).with_trust(workspace, trust)


def _relative_changes(verdict: Verdict, workspace: Path) -> list[FileChange]:
    seen: dict[str, FileChange] = {}
    for change in verdict.changes:
        path = Path(change.path)
        try:
            rel = path.resolve().relative_to(workspace) if path.is_absolute() else path
        except ValueError:
            rel = path  # outside the workspace: keep it absolute so the user notices
        seen[str(rel)] = FileChange(str(rel), change.kind)
    return list(seen.values())


async def attempt_agent(
    run: _Run, number: int, on_event: EventCallback | None, cancel: asyncio.Event | None
) -> StepResult:
    if run.driver.prompt_via == "acp":
        from .agents.acp.run import acp_attempt

        return await acp_attempt(
            name=run.name,
            config=run.config,
            driver=run.driver,  # type: ignore[arg-type]
            request=run.request,
            env=run.env,
            log_dir=run.log_root / f"attempt-{number}",
            max_events=run.max_events,
            permissions=run.permissions,
            on_event=on_event,
            cancel=cancel,
            previous_usage=run.previous_usage,
        )
    parser = run.driver.new_parser(previous_usage=run.previous_usage)
    events: list[Event] = []
    dropped = 0

    def on_line(line: str) -> None:
        nonlocal dropped
        for event in parser.feed(line):
            if len(events) < run.max_events:
                events.append(event)
            else:
                dropped += 1
            if on_event is not None:
                on_event(event)

    argv = run.driver.build_argv(run.request)
    stdin = run.request.prompt.encode() if run.driver.prompt_via == "stdin" else None
    started = time.monotonic()
    try:
        proc = await run_process(
            argv,
            cwd=run.request.workspace,
            env=run.env,
            on_line=on_line,
            stdin_data=stdin,
            idle_timeout=run.config.idle_timeout,
            total_timeout=run.config.timeout,
            log_dir=run.log_root / f"attempt-{number}",
            cancel=cancel,
        )
    except OSError as exc:
        if not isinstance(exc, (FileNotFoundError, PermissionError)):
            if exc.errno != errno.E2BIG:
                raise
            # The OS refused the argument list: name the size rather than a bare OSError.
            size = max(len(a.encode("utf-8", "surrogatepass")) for a in argv)
            too_big = AgentError.for_kind(
                "config",
                f"the prompt is {size:,} bytes, more than the OS passes as one argument",
                agent=run.name,
                argv=argv,
                hint="shorten the task, or put long material in a file and refer to it",
            )
            elapsed = time.monotonic() - started
            return StepResult(run.name, False, error=too_big, argv=argv, duration_s=elapsed)
        missing = AgentNotInstalled(
            f"cannot start {argv[0]!r}: {exc.strerror or exc}",
            agent=run.name,
            argv=argv,
            hint=run.driver.install_hint(),
        )
        elapsed = time.monotonic() - started
        return StepResult(run.name, False, error=missing, argv=argv, duration_s=elapsed)
    verdict = parser.finish(proc.exit_code, proc.stderr_tail)
    if proc.survivors:  # the OS would not let us stop them: say so where the user looks
        left = WarningEvent(
            f"could not stop process(es) {', '.join(map(str, proc.survivors))} the agent "
            "started (another user's, or stuck in the kernel); stop them by hand"
        )
        events.append(left)
        if on_event is not None:
            on_event(left)
    error: AgentError | None = None
    context: dict[str, Any] = {
        "agent": run.name,
        "argv": argv,
        "exit_code": proc.exit_code,
        "stderr_tail": clip_tail(proc.stderr_tail, 2000),
    }
    if proc.cancelled:
        error = AgentError.for_kind("cancelled", "stopped on request", **context)
    elif proc.timed_out:
        idle = proc.timed_out == "idle"
        limit = run.config.idle_timeout if idle else run.config.timeout
        key = "idle_timeout" if idle else "timeout"
        error = AgentError.for_kind(
            "timeout",
            f"{'no output' if idle else 'not finished'} after {limit:g}s ({key}); "
            "the process group was stopped",
            hint=f"raise agents.{run.name}.{key}",
            **context,
        )
    else:
        error = verdict_error(verdict, **context)
    return StepResult(
        agent=run.name,
        ok=error is None,
        text=verdict.text,
        session_id=verdict.session_id,
        model=verdict.model or run.request.model,
        usage=verdict.usage,
        session_usage=verdict.session_usage,
        changes=_relative_changes(verdict, run.request.workspace),
        events=events,
        events_dropped=dropped,
        error=error,
        duration_s=proc.duration_s,
        exit_code=proc.exit_code,
        stderr_tail=proc.stderr_tail,
        argv=argv,
        log_path=str(run.log_root / f"attempt-{number}"),
    )


def verdict_error(verdict: Verdict, **context: Any) -> AgentError | None:
    """The error a failed verdict stands for (None when it succeeded)."""
    if verdict.ok:
        return None
    return AgentError.for_kind(
        verdict.error_kind or "failed",
        verdict.error_message or "the agent did not finish successfully",
        hint=verdict.hint,
        retryable=verdict.retryable or None,
        retry_after_s=verdict.retry_after_s,
        **context,
    )


def _wait(config: AgentConfig, override: float | None) -> Callable[[RetryCallState], float]:
    initial = config.retry_wait if override is None else override
    backoff = wait_exponential(multiplier=initial, max=60) + wait_random(0, initial)

    def wait(state: RetryCallState) -> float:
        base = backoff(state) if initial > 0 else 0.0
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableAttempt) and exc.result.error and initial > 0:
            # A server that says when to come back knows better than our backoff.
            return max(base, exc.result.error.retry_after_s or 0.0)
        return base

    return wait


async def prepare_agent(
    agent: str,
    prompt: str,
    *,
    workspace: Path,
    settings: Settings,
    rehearsal: RehearsalEndpoint | None,
    step: str | None,
    registry: DriverRegistry,
    log_root: Path,
    resume: str | None = None,
    previous_usage: Usage | None = None,
    timeout: float | None = None,
    model: str | None = None,
    approvals: Any = None,
    state_root: Path | None = None,
) -> _Run | StepResult:
    """Resolve one agent call (config, driver, executable, environment) for the engine.

    A StepResult instead when the CLI cannot be found: there is nothing to attempt.
    ``rehearsal`` is a running rehearsal (started by the run service) or None.
    """
    base = agent_config(settings, agent)
    overrides: dict[str, Any] = {}
    if timeout is not None:
        overrides["timeout"] = timeout
    if model is not None:
        overrides["model"] = model
    cfg = AgentConfig.model_validate({**base.model_dump(), **overrides}) if overrides else base
    driver = registry.create(agent, cfg)
    trusted = settings.trusts(workspace)
    if not trusted:
        kind = f"acp:{cfg.provider}" if driver.prompt_via == "acp" else driver.name
        refuse_untrusted_cli(kind, workspace)
    try:
        executable, _version = await asyncio.to_thread(locate, agent, driver, cfg, probe=False)
    except AgentNotInstalled as exc:
        return StepResult(
            agent, False, error=exc, attempts=[Attempt(1, False, 0.0, exc.kind, exc.message)]
        )
    # Before any process starts: a state folder that is a link (or holds one) is refused here.
    fsio.ensure_dir(log_root, anchor=state_root or workspace)
    extra_env = {**driver.env(AgentRequest(prompt, workspace, executable)), **cfg.env}
    drop: frozenset[str] = frozenset()
    provider_args: list[str] = []
    if rehearsal is not None:
        from .rehearsal.endpoint import provider_settings

        provider = provider_settings(rehearsal, driver, step, workspace=workspace)
        extra_env.update(provider.env)
        drop = rehearsal.drop_env
        provider_args = list(provider.args)
    request = AgentRequest(
        prompt=prompt,
        workspace=workspace,
        executable=executable,
        model=cfg.model,
        resume=resume,
        max_turns=cfg.max_turns,
        permission_mode=cfg.permission_mode,
        extra_args=provider_args + list(cfg.extra_args),
        trusted=trusted,
        rehearsal=rehearsal is not None,
    )
    env = base_env(extra_env, drop)
    run = _Run(agent, cfg, driver, request, env, log_root, settings.max_events, previous_usage)
    if driver.prompt_via == "acp":
        from .agents.acp.permissions import handler_for

        run.permissions = handler_for(approvals, settings.approvals, step=step)
    return run


def retry_wait(config: AgentConfig) -> Callable[[RetryCallState], float]:
    """The wait before another attempt: exponential with jitter, or what the server asked."""
    return _wait(config, None)


def retryable(result: StepResult) -> bool:
    """Whether another attempt may succeed (rate limits, transient failures)."""
    return result.error is not None and result.error.retryable


async def arun_agent(
    agent: str,
    prompt: str,
    *,
    workspace: str | os.PathLike[str],
    model: str | None = None,
    resume: str | None = None,
    timeout: float | None = None,
    config: Settings | str | os.PathLike[str] | None = None,
    rehearsal: RehearsalArg = None,
    step: str | None = None,
    on_event: EventCallback | None = None,
    cancel: asyncio.Event | None = None,
    registry: DriverRegistry | None = None,
    previous_usage: Usage | None = None,
    trust: bool | None = None,
    approvals: Any = None,
    **options: Any,
) -> StepResult:
    """Run ``agent`` once on ``prompt`` in ``workspace`` and return what happened.

    This is a one-step run through the run service and the engine: it is journaled (its
    ``run_id`` is on the result, for ``orchestrator_nb.revert``), audited, logged, counted and
    held to the breaker and rate limits. Failures come back as ``result.error`` (never raised);
    bad arguments and configuration raise. With ``resume``, ``previous_usage`` (what the native
    session used before) keeps a CLI that reports running totals from counting twice. Options
    override the agent's config: ``idle_timeout``, ``retries``, ``retry_wait``,
    ``permission_mode``, ``max_turns``, ``extra_args``, ``env``. ``trust``: True trusts the
    workspace for this call (see :mod:`orchestrator_nb.trust_store`), None asks the trust store.
    ``approvals`` answers an ACP
    agent's permission requests: an :class:`~orchestrator_nb.agents.acp.ApprovalPolicy` (or its
    dict form), or a callable (async or plain) asked for each request (the settings' policy
    decides when it does not answer in time or raises); default: the ``approvals:`` policy of
    the settings.
    """
    from .runs import ResumePoint, RunOptions, RunRequest, RunService

    check_task(prompt, what="prompt")
    check_name("agent", agent)
    unknown = set(options) - set(AgentConfig.model_fields)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(sorted(unknown))}",
            key="options",
            hint=f"accepted: {', '.join(sorted(AgentConfig.model_fields))}",
        )
    agent_options = {k: v for k, v in options.items() if v is not None}
    if timeout is not None:
        agent_options["timeout"] = timeout
    if model is not None:
        agent_options["model"] = model
    request = RunRequest.build(
        prompt,
        agent=agent,
        step=step,
        workspace=workspace,
        config=config,
        trust=trust,
        rehearsal=rehearsal,
        options=RunOptions(agent_options=agent_options),
        resume={agent: ResumePoint(resume, previous_usage)} if resume else None,
        approvals=approvals,
    )
    result = await RunService(registry=registry).execute(
        request, on_agent_event=on_event, cancel=cancel
    )
    if not result.steps:  # stopped before its step began (cancelled, circuit open)
        error = AgentError.for_kind(
            "cancelled" if result.outcome == "cancelled" else "failed",
            result.error.message if result.error else result.outcome,
            agent=agent,
            hint=result.error.hint if result.error else None,
        )
        return StepResult(agent, False, error=error)
    return result.steps[-1]


def run_agent(agent: str, prompt: str, **kwargs: Any) -> StepResult:
    """The sync form of :func:`arun_agent`; works inside a running Jupyter kernel too."""
    return run_sync(lambda: arun_agent(agent, prompt, **kwargs))


def parse_transcript(
    agent: str,
    lines: Iterable[str] | str,
    *,
    exit_code: int | None = 0,
    stderr: str = "",
    config: Settings | None = None,
    registry: DriverRegistry | None = None,
    previous_usage: Usage | None = None,
) -> StepResult:
    """The verdict logic over a recorded stream, e.g. a saved ``stdout.log``.

    ``agent`` is an agent from the configuration or a driver name (claude, codex, ...).
    ``previous_usage``: for the stream of a resumed native session, what that session had used
    before, so a CLI that reports running totals (codex) gives this run's own usage.
    """
    settings = config or load_settings()
    cfg = settings.agents.get(agent) or AgentConfig(driver=agent)
    driver = (registry or default_registry()).create(agent, cfg)
    parser = driver.new_parser(previous_usage=previous_usage)
    if isinstance(lines, str):
        lines = lines.splitlines()
    events: list[Event] = []
    for line in lines:
        events.extend(parser.feed(line.rstrip("\r\n")))
    verdict = parser.finish(exit_code, stderr)
    error = verdict_error(
        verdict, agent=agent, exit_code=exit_code, stderr_tail=clip_tail(stderr, 2000)
    )
    changes = [FileChange(e.path, e.kind) for e in events if isinstance(e, FileChangeEvent)]
    return StepResult(
        agent=agent,
        ok=verdict.ok,
        text=verdict.text,
        session_id=verdict.session_id,
        model=verdict.model,
        usage=verdict.usage,
        session_usage=verdict.session_usage,
        changes=verdict.changes or changes,
        events=events,
        error=error,
        exit_code=exit_code,
        stderr_tail=stderr,
    )


__all__ = [
    "RetryableAttempt",
    "arun_agent",
    "attempt_agent",
    "parse_transcript",
    "prepare_agent",
    "retry_wait",
    "retryable",
    "run_agent",
]
