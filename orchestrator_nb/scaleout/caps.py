"""Per-agent concurrency caps that hold across a Ray cluster.

Each agent CLI talks to one provider (claude → Anthropic, codex → OpenAI, gemini → Google,
copilot → GitHub), so a cap per agent is a cap per provider. The caps are the configured
``limits.per_agent`` unless ``caps=`` says otherwise; on a cluster every agent call takes a
lease from the batch's :class:`~orchestrator_nb.scaleout.coordinator.Coordinator` for exactly
as long as the CLI runs, so 500 tasks on 50 nodes never run more calls of one agent at once
than its cap. Why leases from an actor, not Ray custom resources: a task's workflow calls
several agents one after another, and a resource would be held by the task for all of them;
resources also have to be declared on every node when it starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ..errors import ConfigError
from ..workflow.policies import ConcurrencyLimits
from .coordinator import Coordinator


@dataclass(frozen=True)
class AgentCall:
    """One agent call of a task on a worker: when it held its cap (wall clock, seconds)."""

    task_id: str
    agent: str
    node: str
    start: float
    end: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentCall:
        return cls(
            str(data["task_id"]),
            str(data["agent"]),
            str(data["node"]),
            float(data["start"]),
            float(data["end"]),
        )


class CapService(Protocol):
    """Where leases come from: the batch's coordinator actor, or :class:`InProcessCaps`."""

    async def acquire(self, agent: str, owner: str) -> str | None: ...

    def release(self, lease: str) -> None:
        """Give the lease back without waiting (also from a call being cancelled)."""


class InProcessCaps:
    """A :class:`Coordinator` in this process as a :class:`CapService` (tests, one machine)."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self._pending: set[asyncio.Future[None]] = set()

    async def acquire(self, agent: str, owner: str) -> str | None:
        return await self.coordinator.acquire(agent, owner)

    def release(self, lease: str) -> None:
        future = asyncio.ensure_future(self.coordinator.release(lease))
        self._pending.add(future)  # held until done, or the loop could collect it half-way
        future.add_done_callback(self._pending.discard)


def resolve_caps(caps: Mapping[str, int] | None, per_agent: Mapping[str, int]) -> dict[str, int]:
    """The cluster-wide caps: ``caps`` if given, else the configured ``limits.per_agent``."""
    chosen = dict(per_agent if caps is None else caps)
    for agent, cap in chosen.items():
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ConfigError(
                f"the cap of agent {agent!r} must be a whole number >= 1, not {cap!r}",
                key=f"caps.{agent}",
                hint="leave an agent out to not cap it; 1 runs its calls one at a time",
            )
    return chosen


class ClusterLimits(ConcurrencyLimits):
    """The engine's concurrency limits with a cluster-wide lease around every capped call.

    The run's own limits are taken first, the cluster lease second: a call queued behind its
    own run's limit never holds a lease that a call elsewhere in the cluster could use.
    """

    def __init__(
        self,
        local: ConcurrencyLimits,
        service: CapService,
        *,
        owner: str,
        task_id: str,
        node: str,
        capped: frozenset[str],
    ) -> None:
        super().__init__(local.max_concurrency, local.per_agent_limits)
        self.service = service
        self.owner = owner
        self.task_id = task_id
        self.node = node
        self.capped = capped
        self.calls: list[AgentCall] = []

    @asynccontextmanager
    async def slot(self, agent: str) -> AsyncIterator[None]:
        async with super().slot(agent):
            lease = await self.service.acquire(agent, self.owner) if agent in self.capped else ""
            if lease is None:
                # The driver released this task (cancelled or over budget): no new call.
                raise asyncio.CancelledError(f"task {self.task_id} was released by the batch")
            start = time.time()
            try:
                yield
            finally:
                self.calls.append(AgentCall(self.task_id, agent, self.node, start, time.time()))
                if lease:
                    # Not awaited: a cancelled call must give its lease back all the same.
                    self.service.release(lease)


def overlaps(calls: list[AgentCall]) -> dict[str, int]:
    """The most calls of each agent that held their cap at the same moment."""
    peaks: dict[str, int] = {}
    for agent in {c.agent for c in calls}:
        marks = sorted(
            [(c.start, 1) for c in calls if c.agent == agent]
            + [(c.end, -1) for c in calls if c.agent == agent],
            key=lambda m: (m[0], m[1]),  # an end and a start at the same instant do not overlap
        )
        running = peak = 0
        for _, step in marks:
            running += step
            peak = max(peak, running)
        peaks[agent] = peak
    return peaks


__all__ = [
    "AgentCall",
    "CapService",
    "ClusterLimits",
    "InProcessCaps",
    "overlaps",
    "resolve_caps",
]
