"""Cluster caps as leases: the coordinator's logic and the engine's limits around it, in-process."""

from __future__ import annotations

import asyncio
import random

import pytest

from orchestrator_nb.errors import ConfigError
from orchestrator_nb.scaleout.caps import (
    AgentCall,
    ClusterLimits,
    InProcessCaps,
    overlaps,
    resolve_caps,
)
from orchestrator_nb.scaleout.coordinator import Coordinator
from orchestrator_nb.workflow.policies import ConcurrencyLimits


async def test_a_cap_holds_for_many_owners_at_once() -> None:
    coordinator = Coordinator({"claude": 2})
    running = peak = 0
    rng = random.Random(7)

    async def call(owner: str) -> None:
        nonlocal running, peak
        lease = await coordinator.acquire("claude", owner)
        assert lease
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(rng.random() / 100)
        running -= 1
        await coordinator.release(lease)

    await asyncio.gather(*(call(f"t{i}@x") for i in range(20)))
    assert peak == 2
    stats = (await coordinator.stats())["claude"]
    assert stats["peak"] == 2 and stats["active"] == 0
    assert stats["waited"] > 0  # the cap held calls back, it was not just never reached


async def test_uncapped_agents_need_no_lease() -> None:
    coordinator = Coordinator({"claude": 1})
    assert await coordinator.acquire("codex", "t1@x") == ""
    assert await coordinator.stats() == {"claude": {"cap": 1, "active": 0, "peak": 0, "waited": 0}}


async def test_releasing_an_owner_frees_its_leases_and_refuses_it_more() -> None:
    coordinator = Coordinator({"claude": 1})
    held = await coordinator.acquire("claude", "dead@1")
    assert held
    waiting_same = asyncio.ensure_future(coordinator.acquire("claude", "dead@1"))
    waiting_other = asyncio.ensure_future(coordinator.acquire("claude", "live@2"))
    await asyncio.sleep(0.01)
    assert not waiting_other.done()
    # The driver learns that the attempt is over (its worker was killed mid-call).
    assert await coordinator.release_owner("dead@1") == 1
    assert await waiting_same is None
    assert await waiting_other
    assert await coordinator.acquire("claude", "dead@1") is None
    await coordinator.release("no-such-lease")  # ignored


async def test_reports_and_spend_come_back_in_order() -> None:
    coordinator = Coordinator({})
    await coordinator.report("a@1", "started", {"task": "a", "node": "n1"})
    await coordinator.report("a@1", "usage", {"input_tokens": 10, "output_tokens": 2})
    await coordinator.report("a@1", "usage", {"input_tokens": 5, "cost_usd": 0.5})
    await coordinator.report("a@1", "step", {"task": "a", "step": "write"})
    first = await coordinator.poll(0)
    assert [r["kind"] for r in first["reports"]] == ["started", "step"]
    assert first["spend"] == {"a@1": {"input_tokens": 15, "output_tokens": 2, "cost_usd": 0.5}}
    assert (await coordinator.poll(first["next"]))["reports"] == []


def test_caps_are_checked() -> None:
    assert resolve_caps(None, {"claude": 2}) == {"claude": 2}
    assert resolve_caps({"codex": 1}, {"claude": 2}) == {"codex": 1}
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="whole number"):
            resolve_caps({"claude": bad}, {})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="whole number"):
        Coordinator({"claude": 0})


async def test_cluster_limits_wrap_every_capped_call_in_a_lease() -> None:
    coordinator = Coordinator({"claude": 1})
    service = InProcessCaps(coordinator)

    def limits(task: str) -> ClusterLimits:
        local = ConcurrencyLimits(4, {})
        return ClusterLimits(
            local, service, owner=f"{task}@x", task_id=task, node="n", capped=frozenset({"claude"})
        )

    runs = [limits(f"t{i}") for i in range(4)]

    async def call(run: ClusterLimits, agent: str) -> None:
        async with run.slot(agent):
            await asyncio.sleep(0.02)

    await asyncio.gather(*(call(r, a) for r in runs for a in ("claude", "codex")))
    calls = [c for r in runs for c in r.calls]
    assert len(calls) == 8
    assert overlaps(calls)["claude"] == 1
    assert overlaps(calls)["codex"] > 1  # not capped: the runs' calls did overlap
    await asyncio.sleep(0)  # the last release is sent without waiting
    assert (await coordinator.stats())["claude"]["active"] == 0


async def test_a_cancelled_call_gives_its_lease_back() -> None:
    coordinator = Coordinator({"claude": 1})
    run = ClusterLimits(
        ConcurrencyLimits(1, {}),
        InProcessCaps(coordinator),
        owner="t@x",
        task_id="t",
        node="n",
        capped=frozenset({"claude"}),
    )
    entered = asyncio.Event()

    async def call() -> None:
        async with run.slot("claude"):
            entered.set()
            await asyncio.sleep(60)

    job = asyncio.ensure_future(call())
    await entered.wait()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    for _ in range(10):
        await asyncio.sleep(0)
    assert (await coordinator.stats())["claude"]["active"] == 0
    assert len(run.calls) == 1


async def test_a_released_owner_starts_no_new_call() -> None:
    coordinator = Coordinator({"claude": 1})
    await coordinator.release_owner("t@x")
    run = ClusterLimits(
        ConcurrencyLimits(1, {}),
        InProcessCaps(coordinator),
        owner="t@x",
        task_id="t",
        node="n",
        capped=frozenset({"claude"}),
    )
    with pytest.raises(asyncio.CancelledError):
        async with run.slot("claude"):
            pytest.fail("the call must not start")


def test_overlaps_counts_calls_held_at_the_same_moment() -> None:
    def call(agent: str, start: float, end: float) -> AgentCall:
        return AgentCall("t", agent, "n", start, end)

    back_to_back = [call("a", 0, 1), call("a", 1, 2), call("a", 2, 3)]
    assert overlaps(back_to_back) == {"a": 1}
    nested = [call("a", 0, 10), call("a", 1, 2), call("a", 1.5, 3), call("b", 0, 1)]
    assert overlaps(nested) == {"a": 3, "b": 1}
    assert AgentCall.from_dict(nested[0].to_dict()) == nested[0]
