"""The policy stack around one agent step: retry around breaker → slot → rate limiter → attempt.

Every attempt, retries included, passes the circuit breaker (which counts it), takes a
concurrency slot and goes through the rate limiter, so a retried 429 waits its turn like any
other call. Before each wait a ``RetryEvent`` (source "engine") goes to the bus: the live cell,
the logs and the metrics show the orchestrator's own retries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from ..api import RetryableAttempt, attempt_agent, retry_wait, retryable
from ..errors import CircuitOpen
from ..events import Attempt, Event, RetryEvent, StepResult

if TYPE_CHECKING:
    from ..api import _Run
    from .policies import Breakers, ConcurrencyLimits, RateLimiters


async def run_attempts(
    prepared: _Run,
    *,
    breakers: Breakers,
    limits: ConcurrencyLimits,
    rates: RateLimiters,
    on_event: Callable[[Event], None],
    cancel: asyncio.Event,
) -> StepResult:
    """Attempts of one prepared agent call until one is final; the last one, with all attempts.

    Raises :class:`CircuitOpen` when the agent's circuit is open before the first attempt.
    """
    attempts: list[Attempt] = []
    started = time.monotonic()

    def announce(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else None
        if isinstance(exc, RetryableAttempt) and exc.result.error is not None:
            error = exc.result.error
            reason = f"{error.kind}: {' '.join(error.message.split())[:200]}"
            on_event(RetryEvent(state.attempt_number, reason, delay, source="engine"))

    retrying = AsyncRetrying(
        stop=stop_after_attempt(prepared.config.retries + 1),
        wait=retry_wait(prepared.config),
        retry=retry_if_exception_type(RetryableAttempt),
        before_sleep=announce,
        reraise=True,
    )
    last: StepResult | None = None
    try:
        async for state in retrying:
            with state:
                number = state.retry_state.attempt_number
                last = await _one(prepared, number, breakers, limits, rates, on_event, cancel)
                message = last.error.message if last.error else None
                attempts.append(Attempt(number, last.ok, last.duration_s, last.error_kind, message))
                if retryable(last) and not cancel.is_set():
                    raise RetryableAttempt(last)
    except RetryableAttempt as exc:
        last = exc.result
    except CircuitOpen as exc:
        if last is None:
            raise  # the step never started: the engine reports the open circuit
        # The retries opened the circuit: the last attempt's failure is the step's.
        attempts.append(Attempt(len(attempts) + 1, False, 0.0, "failed", exc.message))
    assert last is not None
    last.attempts = attempts
    last.duration_s = time.monotonic() - started
    return last


async def _one(
    prepared: _Run,
    number: int,
    breakers: Breakers,
    limits: ConcurrencyLimits,
    rates: RateLimiters,
    on_event: Callable[[Event], None],
    cancel: asyncio.Event,
) -> StepResult:
    agent = prepared.name
    breaker = breakers.get(agent)
    breaker.before_call()  # CircuitOpen: no attempt goes out
    result: StepResult | None = None
    try:
        async with limits.slot(agent):
            waited = time.monotonic()
            await rates.acquire(agent)
            waited = time.monotonic() - waited
            if waited > 0.001:  # the rate limiter held this call back: count it
                from ..observe.metrics import get_metrics

                get_metrics().rate_limit_wait(agent, waited)
            result = await attempt_agent(prepared, number, on_event, cancel)
    finally:
        # Always settle the breaker, or a half-open trial that was interrupted would leave the
        # circuit waiting forever; a cancel is not the agent's failure.
        if result is None or result.error_kind == "cancelled":
            if breaker.state == "half_open":
                breaker.record(False)
        else:
            # Not logged in is no outage: it fails at once, the same way every time, and a
            # role's next agent takes the step. Counted, it would open the circuit after a few
            # runs of a shared engine (a batch) and stop them all instead of passing them on.
            breaker.record(result.ok or result.error_kind == "auth")
    return result


__all__ = ["run_attempts"]
