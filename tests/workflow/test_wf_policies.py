"""Budgets, circuit breakers, rate limits and concurrency limits, on a clock the tests drive."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from orchestrator_nb.errors import ConfigError, OrchestratorError
from orchestrator_nb.events import Usage
from orchestrator_nb.workflow.models import Budget, Limits
from orchestrator_nb.workflow.policies import (
    Breakers,
    BudgetExceeded,
    BudgetNearLimit,
    BudgetTracker,
    CircuitBreaker,
    CircuitOpen,
    ConcurrencyLimits,
    RateLimiters,
    TokenBucket,
)


class FakeClock:
    """A clock that only moves when told to; its sleep records the delay and moves nothing."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(0)


# --- budgets --------------------------------------------------------------------------------


def test_no_budget_never_stops() -> None:
    clock = FakeClock()
    tracker = BudgetTracker(Budget(), clock)
    tracker.add(Usage(10**9, 10**9, cost_usd=1e6))
    clock.advance(10**6)
    assert tracker.check() is None
    assert tracker.warnings() == []


def test_token_budget_warns_once_at_80_percent_then_stops_past_the_limit() -> None:
    tracker = BudgetTracker(Budget(max_tokens=1000), FakeClock())
    tracker.add(Usage(input_tokens=500, output_tokens=200, cached_tokens=400))
    assert tracker.warnings() == []
    tracker.add(Usage(input_tokens=100))
    assert tracker.warnings() == [BudgetNearLimit("max_tokens", 800, 1000)]
    assert tracker.warnings() == []
    tracker.add(Usage(output_tokens=200))
    assert tracker.check() is None  # exactly at the limit is not past it
    tracker.add(Usage(output_tokens=1))
    exceeded = tracker.check()
    assert isinstance(exceeded, BudgetExceeded)
    assert (exceeded.budget, exceeded.used, exceeded.limit) == ("max_tokens", 1001, 1000)
    assert "budget max_tokens exceeded: used 1,001 tokens of 1,000 tokens" in str(exceeded)
    assert exceeded.hint is not None and "max_tokens" in exceeded.hint
    assert tracker.warnings() == []


def test_cost_budget_ignores_unreported_cost() -> None:
    tracker = BudgetTracker(Budget(max_cost_usd=1.0), FakeClock())
    tracker.add(Usage(input_tokens=10**6))
    assert tracker.check() is None
    tracker.add(Usage(cost_usd=0.85))
    (warning,) = tracker.warnings()
    assert warning.budget == "max_cost_usd"
    assert warning.used == pytest.approx(0.85)
    tracker.add(Usage(cost_usd=0.2))
    exceeded = tracker.check()
    assert exceeded is not None and exceeded.budget == "max_cost_usd"
    assert "1.05 USD of 1.00 USD" in str(exceeded)


def test_wall_budget_runs_from_construction() -> None:
    clock = FakeClock()
    tracker = BudgetTracker(Budget(max_wall_s=100), clock)
    clock.advance(79)
    assert tracker.warnings() == []
    clock.advance(1)
    assert tracker.warnings() == [BudgetNearLimit("max_wall_s", 80.0, 100.0)]
    clock.advance(21)
    exceeded = tracker.check()
    assert exceeded is not None and exceeded.budget == "max_wall_s"
    assert tracker.elapsed_s == 101


def test_a_jump_past_several_budgets_warns_each_once_and_reports_cost_first() -> None:
    tracker = BudgetTracker(Budget(max_cost_usd=1, max_tokens=10, max_wall_s=5), FakeClock())
    tracker.add(Usage(input_tokens=50, cost_usd=3.0))
    assert [w.budget for w in tracker.warnings()] == ["max_cost_usd", "max_tokens"]
    exceeded = tracker.check()
    assert exceeded is not None and exceeded.budget == "max_cost_usd"
    assert tracker.usage == Usage(input_tokens=50, cost_usd=3.0)


def test_budget_exceeded_is_an_orchestrator_error_and_pickles() -> None:
    error = BudgetExceeded("max_tokens", 12, 10)
    assert isinstance(error, OrchestratorError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.budget, copy.used, copy.limit, str(copy)) == ("max_tokens", 12, 10, str(error))


# --- circuit breakers -----------------------------------------------------------------------


def _state(breaker: CircuitBreaker) -> str:
    # Read through a function: mypy would otherwise keep the state narrowed from an earlier
    # assert, though record() changed it.
    return breaker.state


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(3, 60, clock, agent="codex")
    for ok in (False, False, True, False, False):
        breaker.before_call()
        breaker.record(ok)
    assert breaker.state == "closed"  # the success reset the count
    breaker.before_call()
    breaker.record(False)
    assert _state(breaker) == "open"
    clock.advance(15)
    with pytest.raises(CircuitOpen) as caught:
        breaker.before_call()
    err = caught.value
    assert err.agent == "codex"
    assert err.retry_in_s == pytest.approx(45)
    assert err.failures == 3
    assert "circuit for agent 'codex' is open after 3" in str(err)
    assert "in 45s" in str(err)
    assert err.hint is not None and "breaker_cooldown_s" in err.hint


def test_half_open_lets_exactly_one_trial_through_and_success_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 10, clock, agent="gemini")
    breaker.record(False)
    clock.advance(10)
    assert breaker.state == "half_open"
    breaker.before_call()
    with pytest.raises(CircuitOpen, match="trial call is in flight") as caught:
        breaker.before_call()
    assert caught.value.retry_in_s == 0
    assert breaker.state == "half_open"
    breaker.record(True)
    assert _state(breaker) == "closed"
    assert breaker.failures == 0
    breaker.before_call()
    breaker.before_call()


def test_a_failed_trial_opens_for_another_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(2, 30, clock)
    breaker.record(False)
    breaker.record(False)
    clock.advance(31)
    breaker.before_call()
    breaker.record(False)
    assert breaker.state == "open"
    clock.advance(29)
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.advance(1)
    breaker.before_call()


def test_a_late_failure_does_not_extend_an_open_circuit() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 10, clock)
    breaker.record(False)
    clock.advance(9)
    breaker.record(False)  # a call that started before the circuit opened
    clock.advance(1)
    assert breaker.state == "half_open"


def test_zero_cooldown_goes_straight_to_half_open() -> None:
    breaker = CircuitBreaker(1, 0, FakeClock())
    breaker.record(False)
    assert breaker.state == "half_open"
    breaker.before_call()


def test_reset_closes_by_hand() -> None:
    breaker = CircuitBreaker(1, 1000, FakeClock())
    breaker.record(False)
    breaker.reset()
    assert breaker.state == "closed"
    breaker.before_call()


def test_breaker_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0, 1)
    with pytest.raises(ValueError):
        CircuitBreaker(1, -1)


def test_circuit_open_pickles() -> None:
    error = CircuitOpen("claude", 12.5, failures=4)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.agent, copy.retry_in_s, copy.failures, str(copy)) == (
        "claude",
        12.5,
        4,
        str(error),
    )


def test_breakers_are_kept_per_agent() -> None:
    clock = FakeClock()
    breakers = Breakers.from_limits(Limits(breaker_threshold=2, breaker_cooldown_s=5), clock)
    breakers.record("codex", False)
    breakers.record("codex", False)
    breakers.before_call("claude")
    with pytest.raises(CircuitOpen) as caught:
        breakers.before_call("codex")
    assert caught.value.agent == "codex"
    assert breakers.states() == {"codex": "open", "claude": "closed"}
    assert breakers.get("codex") is breakers["codex"]
    breakers.reset("claude")
    assert breakers.states()["codex"] == "open"
    breakers.reset()
    assert breakers.states() == {"codex": "closed", "claude": "closed"}


# --- rate limits ----------------------------------------------------------------------------


async def test_bucket_allows_a_burst_then_spaces_calls() -> None:
    clock = FakeClock()
    bucket = TokenBucket(30, burst=2, clock=clock, sleep=clock.sleep)
    await bucket.acquire()
    await bucket.acquire()
    assert clock.slept == []
    await bucket.acquire()
    assert clock.slept == [pytest.approx(2.0)]


async def test_bucket_refills_with_time_up_to_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(60, burst=3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        await bucket.acquire()
    clock.advance(1.5)
    assert bucket.tokens == pytest.approx(1.5)
    clock.advance(3600)
    assert bucket.tokens == 3
    for _ in range(3):
        await bucket.acquire()
    assert clock.slept == []


async def test_concurrent_waiters_are_served_in_order() -> None:
    clock = FakeClock()
    bucket = TokenBucket(60, clock=clock, sleep=clock.sleep)
    await asyncio.gather(*(bucket.acquire() for _ in range(4)))
    assert clock.slept == [pytest.approx(1.0), pytest.approx(2.0), pytest.approx(3.0)]


async def test_a_cancelled_waiter_gives_its_token_back() -> None:
    clock = FakeClock()
    never = asyncio.Event()

    async def blocking_sleep(seconds: float) -> None:
        await never.wait()

    bucket = TokenBucket(60, clock=clock, sleep=blocking_sleep)
    await bucket.acquire()
    waiter = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    assert bucket.tokens == pytest.approx(-1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bucket.tokens == pytest.approx(0)


def test_bucket_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)
    with pytest.raises(ValueError):
        TokenBucket(10, burst=0)


async def test_rate_limiters_limit_only_agents_with_a_rate() -> None:
    clock = FakeClock()
    limiters = RateLimiters.from_limits(
        Limits(rate_per_minute={"codex": 6}), clock=clock, sleep=clock.sleep
    )
    for _ in range(3):
        await limiters.acquire("claude")
    assert clock.slept == []
    await limiters.acquire("codex")
    await limiters.acquire("codex")
    assert clock.slept == [pytest.approx(10.0)]


def test_a_non_positive_rate_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"rate_per_minute\.codex"):
        RateLimiters({"codex": 0})


# --- concurrency ----------------------------------------------------------------------------


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_slots_respect_overall_and_per_agent_limits() -> None:
    limits = ConcurrencyLimits(2, {"codex": 1})
    release = asyncio.Event()

    async def run(agent: str) -> None:
        async with limits.slot(agent):
            await release.wait()

    tasks = [asyncio.create_task(run(a)) for a in ("codex", "codex", "codex", "claude", "claude")]
    await _settle()
    assert limits.active == 2
    assert limits.active_by_agent == {"codex": 1, "claude": 1}
    release.set()
    await asyncio.gather(*tasks)
    assert limits.active == 0
    assert limits.active_by_agent == {"codex": 0, "claude": 0}
    assert limits.peak["codex"] == 1
    assert limits.peak_overall == 2


async def test_waiting_for_an_agent_slot_holds_no_overall_slot() -> None:
    limits = ConcurrencyLimits(2, {"codex": 1})
    release = asyncio.Event()

    async def run(agent: str) -> None:
        async with limits.slot(agent):
            await release.wait()

    codex = [asyncio.create_task(run("codex")) for _ in range(3)]
    await _settle()
    claude = asyncio.create_task(run("claude"))
    await _settle()
    assert limits.active_by_agent["claude"] == 1
    release.set()
    await asyncio.gather(*codex, claude)


async def test_an_error_or_cancellation_frees_the_slots() -> None:
    limits = ConcurrencyLimits(1, {"codex": 1})
    with pytest.raises(RuntimeError):
        async with limits.slot("codex"):
            raise RuntimeError("agent blew up")
    assert limits.active == 0

    hold = asyncio.Event()

    async def run() -> None:
        async with limits.slot("codex"):
            await hold.wait()

    first = asyncio.create_task(run())
    queued = asyncio.create_task(run())
    await _settle()
    queued.cancel()
    first.cancel()
    await asyncio.gather(first, queued, return_exceptions=True)
    assert limits.active == 0
    async with limits.slot("codex"):
        assert limits.active_by_agent["codex"] == 1


def test_concurrency_limits_from_limits_and_bad_settings() -> None:
    limits = ConcurrencyLimits.from_limits(Limits(max_concurrency=3, per_agent={"gemini": 2}))
    assert (limits.max_concurrency, limits.per_agent_limits) == (3, {"gemini": 2})
    with pytest.raises(ValueError):
        ConcurrencyLimits(0)
    with pytest.raises(ValueError):
        ConcurrencyLimits(2, {"codex": 0})
