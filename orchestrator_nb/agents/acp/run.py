"""One attempt of an ACP step: start (or reuse a warm) agent, prompt it, decide the verdict.

The same :class:`~orchestrator_nb.events.StepResult` as the per-step CLIs, with the same error
kinds: a missing executable is ``not_installed``; an agent that does not answer ACP at all is
``config`` naming the argv; a total or idle timeout is ``timeout``; a cancel is ``cancelled``.
A timeout or cancel first sends ``session/cancel``, waits the grace period for the turn to
end, then stops the process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from acp import RequestError

from ...config import AgentConfig
from ...errors import AgentError, AgentNotInstalled
from ...events import Event, PermissionAsked, PermissionEvent, SessionEvent, StepResult, Usage
from ...observe.redact import clip_tail
from ...process import Grace
from ..base import AgentRequest
from .client import AcpProcess, ModeError
from .driver import AcpDriver
from .events import AcpParser
from .permissions import PermissionHandler, pick_option, request_from_acp
from .warm import WarmKey, current_pool


def _relative(path: str, workspace: Path) -> str:
    p = Path(path)
    if not p.is_absolute():
        return path
    try:
        return str(p.resolve().relative_to(workspace))
    except ValueError:
        return path


async def acp_attempt(
    *,
    name: str,
    config: AgentConfig,
    driver: AcpDriver,
    request: AgentRequest,
    env: dict[str, str],
    log_dir: Path,
    max_events: int,
    permissions: PermissionHandler,
    on_event: Callable[[Event], None] | None,
    cancel: asyncio.Event | None,
    grace: Grace | None = None,
    previous_usage: Usage | None = None,
) -> StepResult:
    grace = grace or Grace()
    workspace = request.workspace
    argv = driver.build_argv(request)
    base_cost = previous_usage.cost_usd if previous_usage and previous_usage.cost_usd else 0.0
    parser = AcpParser(workspace, base_cost=base_cost)
    events: list[Event] = []
    dropped = 0

    def emit(new: list[Event]) -> None:
        nonlocal dropped
        for event in new:
            # Permission decisions are kept past the cap: result.permissions lists them all.
            if len(events) < max_events or isinstance(event, (PermissionAsked, PermissionEvent)):
                events.append(event)
            else:
                dropped += 1
            if on_event is not None:
                on_event(event)

    async def on_permission(tool_call: dict[str, Any], options: list[dict[str, Any]]) -> Any:
        call_id = tool_call.get("toolCallId")
        earlier = parser.tool_call(call_id) if call_id else None
        asked = request_from_acp(name, tool_call, options, workspace, earlier)
        emit([PermissionAsked(asked.tool_call_id, asked.title, asked.kind, asked.target)])
        decision, by, reason = await permissions.decide(asked)
        emit(
            [
                PermissionEvent(
                    asked.tool_call_id, asked.title, asked.kind, asked.target, decision, by, reason
                )
            ]
        )
        return pick_option(decision, options)

    pool = current_pool()
    counter = pool  # counts process starts for the run, whoever keeps the process
    key: WarmKey = (name, str(workspace), tuple(argv))
    if pool is not None:
        await pool.started(key)  # its agent may be starting ahead of this step
    if pool is not None and key in pool.busy:
        # Another step of this agent holds the warm session now (a parallel step): this one
        # gets a process of its own, outside the pool, stopped at the step's end.
        pool = None
    proc = pool.take(key) if pool is not None else None
    first = pool.first_use(key) if pool is not None else True
    if proc is not None:
        parser.base_cost = parser.session_cost = proc.session_cost
    started = time.monotonic()
    context: dict[str, Any] = {"agent": name, "argv": argv}

    def result(error: AgentError | None, **extra: Any) -> StepResult:
        verdict = extra.pop("verdict", None)
        return StepResult(
            agent=name,
            ok=error is None,
            text=parser.text,
            session_id=parser.session_id,
            model=parser.model or request.model,
            usage=parser.usage,
            changes=[
                type(c)(_relative(c.path, workspace), c.kind)
                for c in (verdict.changes if verdict else parser.changes.values())
            ],
            events=events,
            events_dropped=dropped,
            error=error,
            duration_s=time.monotonic() - started,
            exit_code=proc.exit_code if proc is not None else None,
            stderr_tail=proc.stderr_tail if proc is not None else "",
            argv=argv,
            log_path=str(log_dir),
        )

    try:
        if proc is None:
            proc = AcpProcess(
                argv,
                cwd=workspace,
                env=env,
                log_dir=log_dir,
                grace=grace,
                mode=config.permission_mode,
            )
            proc.on_message = lambda d, m: emit(parser.message(d, m))
            # A start under way, as a prestart's is: the prestarts wait for it (prestart.py).
            under_way = pool.start_under_way(key) if pool is not None else contextlib.nullcontext()
            with under_way:
                try:
                    stopped = await _bounded(proc.start(), config, cancel)
                    if counter is not None:
                        counter.count_start(name)
                    if stopped is None:
                        stopped = await _bounded(proc.open_session(request.resume), config, cancel)
                except (FileNotFoundError, PermissionError) as exc:
                    missing = AgentNotInstalled(
                        f"cannot start the ACP agent {argv[0]!r}: {exc.strerror or exc}",
                        agent=name,
                        argv=argv,
                        hint=driver.install_hint(),
                    )
                    await _discard(pool, key, None)
                    proc = None
                    return result(missing)
                except (ConnectionError, RequestError, ValueError) as exc:
                    raise _NotAcp(str(exc) or type(exc).__name__) from None
            if stopped == "cancelled":
                await _discard(pool, key, proc)
                return result(AgentError.for_kind("cancelled", "stopped on request", **context))
            if stopped is not None:
                limit = _start_limit(config)
                raise _NotAcp(f"no answer to initialize or session/new within {limit:g}s")
            if pool is not None:
                pool.keep(key, proc)
        else:
            proc.set_log_dir(log_dir)
            proc.on_message = lambda d, m: emit(parser.message(d, m))
            if first and request.resume != proc.session_id:
                # Kept from an earlier run of the session: a new task gets a new session on
                # the live process; a follow-up (resuming the session it holds) just prompts.
                try:
                    stopped = await _bounded(proc.open_session(request.resume), config, cancel)
                except (ConnectionError, RequestError, ValueError) as exc:
                    raise _NotAcp(str(exc) or type(exc).__name__) from None
                if stopped is not None:
                    await _discard(pool, key, proc)
                    return result(AgentError.for_kind("cancelled", "stopped on request", **context))
            parser.session_id = proc.session_id
            emit([SessionEvent(proc.session_id, None)])
        proc.on_permission = on_permission
        stopped = await _prompt(proc, request.prompt, config, cancel, grace)
    except ModeError as exc:
        await _discard(pool, key, proc)
        return result(
            AgentError.for_kind(
                "config",
                f"agents.{name}.permission_mode: {exc}",
                hint=f"set agents.{name}.permission_mode to one of its modes, or remove it",
                **context,
            )
        )
    except _NotAcp as exc:
        said = clip_tail(proc.stderr_tail, 300).strip() if proc else ""
        broken = AgentError.for_kind(
            "config",
            f"{' '.join(argv)!r} did not answer as an ACP agent: {exc}"
            + (f"; its stderr ends: {said}" if said else ""),
            hint=f"check agents.{name}.argv: it must start an agent speaking ACP on stdio",
            exit_code=proc.exit_code if proc else None,
            stderr_tail=proc.stderr_tail if proc else "",
            **context,
        )
        await _discard(pool, key, proc)
        return result(broken)
    except BaseException:
        await _discard(pool, key, proc)
        raise
    proc.session_cost = parser.session_cost
    if stopped is not None or pool is None or not proc.alive:
        await _discard(pool, key, proc)
    elif pool is not None:
        pool.release(key)
    context |= {"exit_code": proc.exit_code, "stderr_tail": clip_tail(proc.stderr_tail, 2000)}
    if stopped == "cancelled":
        return result(AgentError.for_kind("cancelled", "stopped on request", **context))
    if stopped in ("idle", "total"):
        idle = stopped == "idle"
        limit = (config.idle_timeout or config.timeout) if idle else config.timeout
        key_name = "idle_timeout" if idle else "timeout"
        message = (
            f"{'no message' if idle else 'not finished'} after {limit:g}s ({key_name}); "
            "the turn was cancelled and the process group stopped"
        )
        hint = f"raise agents.{name}.{key_name}"
        return result(AgentError.for_kind("timeout", message, hint=hint, **context))
    if stopped == "died" and parser.stop_reason is None and parser.prompt_error is None:
        parser.fatal = f"the agent exited (code {proc.exit_code}) during the turn"
        parser.crashed = True
    verdict = parser.finish(proc.exit_code, proc.stderr_tail)
    error: AgentError | None = None
    if not verdict.ok:
        error = AgentError.for_kind(
            verdict.error_kind or "failed",
            verdict.error_message or "the agent did not finish its turn",
            hint=verdict.hint,
            retryable=verdict.retryable or None,
            **context,
        )
    return result(error, verdict=verdict)


class _NotAcp(Exception):
    pass


def _start_limit(config: AgentConfig) -> float:
    # Start-up is bounded by the total timeout only: a cold adapter may be silent for a while.
    return config.timeout


async def _bounded(awaitable: Any, config: AgentConfig, cancel: asyncio.Event | None) -> str | None:
    """Await a start-up request; "cancelled" or "timeout" when it had to be abandoned."""
    task = asyncio.ensure_future(awaitable)
    watch: set[asyncio.Future[Any]] = {task}
    stop = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
    if stop is not None:
        watch.add(stop)
    try:
        await asyncio.wait(watch, timeout=_start_limit(config), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if stop is not None:
            stop.cancel()
    if task.done():
        task.result()
        return None
    task.cancel()
    return "cancelled" if cancel is not None and cancel.is_set() else "timeout"


async def _discard(pool: Any, key: WarmKey, proc: AcpProcess | None) -> None:
    if pool is not None:
        pool.forget(key)
    if proc is not None:
        await proc.close()


async def _prompt(
    proc: AcpProcess,
    text: str,
    config: AgentConfig,
    cancel: asyncio.Event | None,
    grace: Grace,
) -> str | None:
    """Run one turn; None when it ended by itself, else why it was stopped."""
    started = time.monotonic()
    proc.last_message = started
    turn = asyncio.ensure_future(proc.prompt(text))
    reason: str | None = None
    try:
        while not turn.done():
            now = time.monotonic()
            limits = [0.25, started + config.timeout - now]
            if config.idle_timeout is not None:
                limits.append(proc.last_message + config.idle_timeout - now)
            await asyncio.wait({turn}, timeout=max(0.0, min(limits)))
            if turn.done():
                break
            now = time.monotonic()
            if cancel is not None and cancel.is_set():
                reason = "cancelled"
            elif now >= started + config.timeout:
                reason = "total"
            elif config.idle_timeout is not None and now >= proc.last_message + config.idle_timeout:
                reason = "idle"
            if reason is not None:
                await proc.cancel()
                await asyncio.wait({turn}, timeout=grace.after_sigint)
                turn.cancel()
                return reason
    except asyncio.CancelledError:
        turn.cancel()
        raise
    exc = turn.exception()
    if exc is None:
        return None
    if isinstance(exc, RequestError):
        return None  # the parser saw the error response and decides from it
    return "died"


__all__ = ["acp_attempt"]
