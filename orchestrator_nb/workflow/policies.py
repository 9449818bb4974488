"""Run policies the engine applies around agent calls: budgets, circuit breakers, rate limits
and concurrency limits.

Each takes its clock (and, for waiting, its ``sleep``) as an argument so tests drive time
themselves instead of patching it. All of them are meant for one run on one event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Literal, NamedTuple

from ..errors import BudgetExceeded, CircuitOpen, ConfigError
from ..events import Usage
from .models import Budget, Limits

BudgetName = Literal["max_cost_usd", "max_tokens", "max_wall_s"]
BreakerState = Literal["closed", "open", "half_open"]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]

WARN_FRACTION = 0.8


class BudgetNearLimit(NamedTuple):
    """A budget that has just passed :data:`WARN_FRACTION` of its limit."""

    budget: BudgetName
    used: float
    limit: float


class BudgetTracker:
    """Adds up a run's usage and says when a budget is near or past; wall time starts now."""

    def __init__(self, budget: Budget, clock: Clock = time.monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self._started = clock()
        self.usage = Usage()
        self._warned: set[BudgetName] = set()

    def add(self, usage: Usage) -> None:
        self.usage = self.usage + usage

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._started

    def _spent(self) -> list[tuple[BudgetName, float, float]]:
        """(budget, used, limit) for every budget that is set, cost first."""
        spent: list[tuple[BudgetName, float, float]] = []
        # A CLI that reports no cost cannot overrun a cost budget; it counts as 0 USD.
        if self.budget.max_cost_usd is not None:
            spent.append(("max_cost_usd", self.usage.cost_usd or 0.0, self.budget.max_cost_usd))
        if self.budget.max_tokens is not None:
            spent.append(("max_tokens", self.usage.total_tokens, self.budget.max_tokens))
        if self.budget.max_wall_s is not None:
            spent.append(("max_wall_s", self.elapsed_s, self.budget.max_wall_s))
        return spent

    def check(self) -> BudgetExceeded | None:
        """The first budget that has been gone past, as an error to raise; None if none has."""
        for name, used, limit in self._spent():
            if used > limit:
                return BudgetExceeded(name, used, limit)
        return None

    def warnings(self) -> list[BudgetNearLimit]:
        """Budgets that crossed 80% since the last call; each is reported once per run."""
        crossed = [
            BudgetNearLimit(name, used, limit)
            for name, used, limit in self._spent()
            if name not in self._warned and used >= WARN_FRACTION * limit
        ]
        self._warned.update(warning.budget for warning in crossed)
        return crossed


# --- circuit breakers -----------------------------------------------------------------------


class CircuitBreaker:
    """Stops calling an agent after ``threshold`` failures in a row.

    Closed: calls go through. Open: :meth:`before_call` raises :class:`CircuitOpen` until
    ``cooldown_s`` has passed. Half-open: exactly one trial call goes through; its
    :meth:`record` closes the circuit (success) or opens it for another cooldown (failure).
    Every call let through must be recorded, also when it is cancelled, or a half-open
    circuit keeps waiting for its trial.
    """

    def __init__(
        self, threshold: int, cooldown_s: float, clock: Clock = time.monotonic, *, agent: str = ""
    ) -> None:
        if threshold < 1 or cooldown_s < 0:
            raise ValueError("threshold must be at least 1 and cooldown_s not negative")
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.agent = agent
        self._clock = clock
        self.failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._trial_in_flight or self._clock() - self._opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def before_call(self) -> None:
        """Raise :class:`CircuitOpen` if the call must not go out now."""
        opened_at = self._opened_at
        if opened_at is None:
            return
        if self.state == "open":
            remaining = self.cooldown_s - (self._clock() - opened_at)
            raise CircuitOpen(self.agent, max(remaining, 0.0), failures=self.failures)
        if self._trial_in_flight:
            raise CircuitOpen(self.agent, 0.0, failures=self.failures, trial=True)
        self._trial_in_flight = True

    def record(self, ok: bool) -> None:
        was_trial, self._trial_in_flight = self._trial_in_flight, False
        # Any success closes the circuit, also a late one from a call started before it opened:
        # the agent evidently works again.
        if ok:
            self.failures = 0
            self._opened_at = None
            return
        self.failures += 1
        if was_trial or (self._opened_at is None and self.failures >= self.threshold):
            self._opened_at = self._clock()
        # A late failure of a call that started before the circuit opened changes nothing.

    def reset(self) -> None:
        """Close the circuit by hand (after fixing what made the agent fail)."""
        self.failures = 0
        self._opened_at = None
        self._trial_in_flight = False


class Breakers:
    """One :class:`CircuitBreaker` per agent name, made on first use."""

    def __init__(self, threshold: int, cooldown_s: float, clock: Clock = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._by_agent: dict[str, CircuitBreaker] = {}

    @classmethod
    def from_limits(cls, limits: Limits, clock: Clock = time.monotonic) -> Breakers:
        return cls(limits.breaker_threshold, limits.breaker_cooldown_s, clock)

    def get(self, agent: str) -> CircuitBreaker:
        """The agent's breaker, made closed on first use."""
        breaker = self._by_agent.get(agent)
        if breaker is None:
            breaker = CircuitBreaker(self.threshold, self.cooldown_s, self._clock, agent=agent)
            self._by_agent[agent] = breaker
        return breaker

    __getitem__ = get

    def before_call(self, agent: str) -> None:
        self.get(agent).before_call()

    def record(self, agent: str, ok: bool) -> None:
        self.get(agent).record(ok)

    def states(self) -> dict[str, BreakerState]:
        return {agent: breaker.state for agent, breaker in self._by_agent.items()}

    def reset(self, agent: str | None = None) -> None:
        """Close one agent's circuit, or every circuit."""
        for name, breaker in self._by_agent.items():
            if agent is None or name == agent:
                breaker.reset()


# --- rate limits ----------------------------------------------------------------------------


class TokenBucket:
    """At most ``rate_per_minute`` calls a minute, with bursts of up to ``burst`` at once.

    Each :meth:`acquire` takes a token at once, letting the count go negative; a caller that
    took a borrowed token sleeps until the bucket has refilled up to it. So waiters are served
    in order without a lock (which would tie the bucket to one event loop).
    """

    def __init__(
        self,
        rate_per_minute: float,
        burst: int = 1,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate_per_minute <= 0 or burst < 1:
            raise ValueError("rate_per_minute must be positive and burst at least 1")
        self.rate_per_s = rate_per_minute / 60.0
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()

    @property
    def tokens(self) -> float:
        """Tokens available now (negative while callers are waiting)."""
        self._refill()
        return self._tokens

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(
            float(self.burst), self._tokens + (now - self._updated) * self.rate_per_s
        )
        self._updated = now

    async def acquire(self) -> None:
        self._refill()
        self._tokens -= 1.0
        if self._tokens >= 0:
            return
        try:
            await self._sleep(-self._tokens / self.rate_per_s)
        except BaseException:
            # Cancelled while waiting: hand the borrowed token back for the callers after us.
            self._tokens += 1.0
            raise


class RateLimiters:
    """A :class:`TokenBucket` per agent that has a rate; other agents are not limited."""

    def __init__(
        self,
        rates: dict[str, float],
        *,
        burst: int = 1,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        for agent, rate in rates.items():
            if rate <= 0:
                raise ConfigError(
                    f"limits.rate_per_minute.{agent} must be positive, not {rate}",
                    key=f"limits.rate_per_minute.{agent}",
                    hint="leave the agent out to not limit its rate",
                )
        self.buckets = {
            agent: TokenBucket(rate, burst, clock, sleep) for agent, rate in rates.items()
        }

    @classmethod
    def from_limits(
        cls, limits: Limits, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> RateLimiters:
        return cls(limits.rate_per_minute, clock=clock, sleep=sleep)

    async def acquire(self, agent: str) -> None:
        bucket = self.buckets.get(agent)
        if bucket is not None:
            await bucket.acquire()


# --- concurrency ----------------------------------------------------------------------------


class ConcurrencyLimits:
    """How many agents run at once, overall and per agent.

    ``async with limits.slot("codex"):`` waits for a per-agent slot first and an overall one
    second, so a call queued behind its own agent's limit never holds an overall slot that
    another agent could use.
    """

    def __init__(self, max_concurrency: int, per_agent: dict[str, int] | None = None) -> None:
        if max_concurrency < 1 or any(n < 1 for n in (per_agent or {}).values()):
            raise ValueError("concurrency limits must be at least 1")
        self.max_concurrency = max_concurrency
        self.per_agent_limits = dict(per_agent or {})
        self._overall = asyncio.Semaphore(max_concurrency)
        self._per_agent = {a: asyncio.Semaphore(n) for a, n in self.per_agent_limits.items()}
        self.active = 0
        self.active_by_agent: dict[str, int] = {}
        self.peak_overall = 0
        self.peak: dict[str, int] = {}

    @classmethod
    def from_limits(cls, limits: Limits) -> ConcurrencyLimits:
        return cls(limits.max_concurrency, limits.per_agent)

    @asynccontextmanager
    async def slot(self, agent: str) -> AsyncIterator[None]:
        own = self._per_agent.get(agent)
        if own is not None:
            await own.acquire()
        try:
            async with self._overall:
                self._enter(agent)
                try:
                    yield
                finally:
                    self._leave(agent)
        finally:
            if own is not None:
                own.release()

    def _enter(self, agent: str) -> None:
        self.active += 1
        count = self.active_by_agent.get(agent, 0) + 1
        self.active_by_agent[agent] = count
        self.peak_overall = max(self.peak_overall, self.active)
        self.peak[agent] = max(self.peak.get(agent, 0), count)

    def _leave(self, agent: str) -> None:
        self.active -= 1
        self.active_by_agent[agent] -= 1


__all__ = [
    "WARN_FRACTION",
    "BreakerState",
    "Breakers",
    "BudgetExceeded",
    "BudgetName",
    "BudgetNearLimit",
    "BudgetTracker",
    "CircuitBreaker",
    "CircuitOpen",
    "ConcurrencyLimits",
    "RateLimiters",
    "TokenBucket",
]
