"""Run one agent: resolve it, start its CLI through the runner, parse, decide, retry.

The driver only knows its CLI; everything shared (finding the binary, environment, timeouts,
cancel, retries, logs, the events cap) happens here, once.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from ._sync import run_sync
from .agents.base import AgentRequest, Driver, Verdict
from .agents.registry import DriverRegistry, default_registry
from .agents.status import locate
from .config import AgentConfig, Settings, agent_config, load_settings
from .errors import AgentError, AgentNotInstalled, ConfigError, WorkspaceError
from .events import (
    Attempt,
    Event,
    FileChange,
    FileChangeEvent,
    StepResult,
    Usage,
    WarningEvent,
)
from .process import base_env, run_process

if TYPE_CHECKING:
    from .rehearsal.endpoint import RehearsalArg, RehearsalEndpoint

STATE_DIR = ".orchestrator"
EventCallback = Callable[[Event], None]


class _RetryableAttempt(Exception):
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


def _settings(config: Settings | str | os.PathLike[str] | None, workspace: Path) -> Settings:
    if isinstance(config, Settings):
        return config
    return load_settings(config, cwd=workspace if config is None else None)


def _workspace(workspace: str | os.PathLike[str]) -> Path:
    path = Path(workspace).expanduser()
    if not path.is_dir():
        raise WorkspaceError(
            f"workspace {str(path)!r} is not an existing folder",
            hint="create it first, or pass the folder the agent should edit",
        )
    return path.resolve()


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


@asynccontextmanager
async def _rehearsal_scope(rehearsal: RehearsalArg) -> AsyncIterator[RehearsalEndpoint | None]:
    """A running rehearsal's endpoint, or one started (and stopped) here from a scenario."""
    from .rehearsal.endpoint import rehearsal_scope

    with rehearsal_scope(rehearsal) as endpoint:
        yield endpoint


async def _attempt(
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
    except (FileNotFoundError, PermissionError) as exc:
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
        "stderr_tail": proc.stderr_tail[-2000:],
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
        if isinstance(exc, _RetryableAttempt) and exc.result.error and initial > 0:
            # A server that says when to come back knows better than our backoff.
            return max(base, exc.result.error.retry_after_s or 0.0)
        return base

    return wait


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
    log_dir: str | os.PathLike[str] | None = None,
    previous_usage: Usage | None = None,
    approvals: Any = None,
    **options: Any,
) -> StepResult:
    """Run ``agent`` once on ``prompt`` in ``workspace`` and return what happened.

    Failures come back as ``result.error`` (never raised) so a workflow can decide; bad
    arguments and configuration raise. Raw streams go under ``log_dir`` (default: the
    workspace's ``.orchestrator/runs/``). With ``resume``, ``previous_usage`` (what the native
    session used before) keeps a CLI that reports running totals from counting twice. Options
    override the agent's config: ``idle_timeout``, ``retries``, ``retry_wait``,
    ``permission_mode``, ``max_turns``, ``extra_args``, ``env``. ``approvals`` answers an ACP
    agent's permission requests: an :class:`~orchestrator_nb.agents.acp.ApprovalPolicy` (or its
    dict form), or an async callable asked for each request (the settings' policy decides when
    it does not answer in time); default: the ``approvals:`` policy of the settings.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError("the prompt is empty", key="prompt", hint="pass the task as a string")
    root = _workspace(workspace)
    settings = _settings(config, root)
    unknown = set(options) - set(AgentConfig.model_fields)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(sorted(unknown))}",
            key="options",
            hint=f"accepted: {', '.join(sorted(AgentConfig.model_fields))}",
        )
    overrides = {k: v for k, v in options.items() if v is not None}
    if timeout is not None:
        overrides["timeout"] = timeout
    if model is not None:
        overrides["model"] = model
    base = agent_config(settings, agent)
    try:
        cfg = AgentConfig.model_validate({**base.model_dump(), **overrides})
    except Exception as exc:
        raise ConfigError(f"bad option for agent {agent!r}: {exc}", key="options") from None
    driver = (registry or default_registry()).create(agent, cfg)
    try:
        executable, _version = await asyncio.to_thread(locate, agent, driver, cfg, probe=False)
    except AgentNotInstalled as exc:
        return StepResult(
            agent, False, error=exc, attempts=[Attempt(1, False, 0.0, exc.kind, exc.message)]
        )
    if log_dir is not None:
        log_root = Path(log_dir)
    else:
        log_root = root / STATE_DIR / "runs" / uuid.uuid4().hex[:12] / (step or agent)
    async with _rehearsal_scope(rehearsal) as reh:
        extra_env = {**driver.env(AgentRequest(prompt, root, executable)), **cfg.env}
        drop: frozenset[str] = frozenset()
        provider_args: list[str] = []
        if reh is not None:
            from .rehearsal.endpoint import provider_settings

            provider = provider_settings(reh, driver, step, workspace=root)
            extra_env.update(provider.env)
            drop = reh.drop_env
            provider_args = list(provider.args)
        request = AgentRequest(
            prompt=prompt,
            workspace=root,
            executable=executable,
            model=cfg.model,
            resume=resume,
            max_turns=cfg.max_turns,
            permission_mode=cfg.permission_mode,
            extra_args=provider_args + list(cfg.extra_args),
        )
        env = base_env(extra_env, drop)
        run = _Run(agent, cfg, driver, request, env, log_root, settings.max_events, previous_usage)
        if driver.prompt_via == "acp":
            from .agents.acp.permissions import handler_for

            run.permissions = handler_for(approvals, settings.approvals)
        return await _with_retries(run, on_event, cancel, options.get("retry_wait"))


async def _with_retries(
    run: _Run,
    on_event: EventCallback | None,
    cancel: asyncio.Event | None,
    wait_override: float | None,
) -> StepResult:
    attempts: list[Attempt] = []
    last: StepResult | None = None
    started = time.monotonic()
    retrying = AsyncRetrying(
        stop=stop_after_attempt(run.config.retries + 1),
        wait=_wait(run.config, wait_override),
        retry=retry_if_exception_type(_RetryableAttempt),
        reraise=True,
    )
    try:
        async for attempt_state in retrying:
            with attempt_state:
                number = attempt_state.retry_state.attempt_number
                last = await _attempt(run, number, on_event, cancel)
                attempts.append(
                    Attempt(
                        number,
                        last.ok,
                        last.duration_s,
                        last.error_kind,
                        last.error.message if last.error else None,
                    )
                )
                if (
                    last.error is not None
                    and last.error.retryable
                    and not (cancel and cancel.is_set())
                ):
                    raise _RetryableAttempt(last)
    except _RetryableAttempt as exc:
        last = exc.result
    assert last is not None
    last.attempts = attempts
    last.duration_s = time.monotonic() - started
    return last


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
) -> StepResult:
    """The verdict logic over a recorded stream, e.g. a saved ``stdout.log``.

    ``agent`` is an agent from the configuration or a driver name (claude, codex, ...).
    """
    settings = config or load_settings()
    cfg = settings.agents.get(agent) or AgentConfig(driver=agent)
    driver = (registry or default_registry()).create(agent, cfg)
    parser = driver.new_parser()
    if isinstance(lines, str):
        lines = lines.splitlines()
    events: list[Event] = []
    for line in lines:
        events.extend(parser.feed(line.rstrip("\r\n")))
    verdict = parser.finish(exit_code, stderr)
    error = verdict_error(verdict, agent=agent, exit_code=exit_code, stderr_tail=stderr[-2000:])
    changes = [FileChange(e.path, e.kind) for e in events if isinstance(e, FileChangeEvent)]
    return StepResult(
        agent=agent,
        ok=verdict.ok,
        text=verdict.text,
        session_id=verdict.session_id,
        model=verdict.model,
        usage=verdict.usage,
        changes=verdict.changes or changes,
        events=events,
        error=error,
        exit_code=exit_code,
        stderr_tail=stderr,
    )


__all__ = ["arun_agent", "parse_transcript", "run_agent"]
