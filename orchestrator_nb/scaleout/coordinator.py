"""The batch's coordinator: one Ray actor that every task of the batch talks to.

It holds the per-agent caps as leases (so the caps hold across the cluster, whichever node a
call runs on), adds up what the tasks spend (so a batch budget sees runs still in flight), and
queues what the workers report (a task started, a step started) for the driver's progress.

A lease belongs to an *owner*, one attempt of one task. When the driver learns that an attempt
ended in any way (finished, failed, cancelled, its worker killed), it calls
:meth:`Coordinator.release_owner`, which frees the attempt's leases and refuses it any new one;
so a worker killed in the middle of a call cannot keep a cap taken.

The class is plain asyncio; :func:`orchestrator_nb.scaleout.ray_executor` makes it a Ray actor
(all methods ``async``, so Ray runs them on one event loop, many waiting at once).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Spend:
    """Tokens and dollars reported by one attempt's finished steps."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, other: Mapping[str, Any]) -> None:
        self.input_tokens += int(other.get("input_tokens") or 0)
        self.output_tokens += int(other.get("output_tokens") or 0)
        self.cost_usd += float(other.get("cost_usd") or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
        }


@dataclass
class _Agent:
    cap: int
    leases: dict[str, str] = field(default_factory=dict)  # lease → owner
    peak: int = 0
    waited: int = 0  # acquires that had to wait for a lease


class Coordinator:
    """Caps as leases, the batch's spend, and the workers' reports."""

    def __init__(self, caps: Mapping[str, int]) -> None:
        for agent, cap in caps.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise ValueError(f"the cap of {agent!r} must be a whole number >= 1, not {cap!r}")
        self._agents = {agent: _Agent(cap) for agent, cap in caps.items()}
        self._changed = asyncio.Condition()
        self._gone: set[str] = set()
        self._finishing: set[str] = set()  # owners whose workflow is done: commit, then return
        self._stopping: set[str] = set()
        self._ids = itertools.count(1)
        self._spend: dict[str, Spend] = {}
        self._reports: list[dict[str, Any]] = []

    # -- caps -----------------------------------------------------------------------------

    async def acquire(self, agent: str, owner: str) -> str | None:
        """Wait for a lease on ``agent``; ``""`` when the agent has no cap, ``None`` when the
        owner was released meanwhile (its task is over: the call must not start)."""
        state = self._agents.get(agent)
        if state is None:
            return ""
        async with self._changed:
            if owner not in self._gone and len(state.leases) >= state.cap:
                state.waited += 1
            await self._changed.wait_for(
                lambda: owner in self._gone or len(state.leases) < state.cap
            )
            if owner in self._gone:
                return None
            lease = f"{agent}#{next(self._ids)}"
            state.leases[lease] = owner
            state.peak = max(state.peak, len(state.leases))
            return lease

    async def release(self, lease: str) -> None:
        """Give a lease back (unknown or already freed leases are ignored)."""
        async with self._changed:
            for state in self._agents.values():
                if state.leases.pop(lease, None) is not None:
                    self._changed.notify_all()
                    return

    async def release_owner(self, owner: str) -> int:
        """Free every lease of ``owner`` and refuse it new ones; returns how many were freed."""
        async with self._changed:
            self._gone.add(owner)
            freed = 0
            for state in self._agents.values():
                for lease in [k for k, v in state.leases.items() if v == owner]:
                    del state.leases[lease]
                    freed += 1
            self._changed.notify_all()
            return freed

    # -- stopping -------------------------------------------------------------------------

    async def finishing(self, owner: str) -> bool:
        """A worker whose workflow is over says so before it commits; False when the batch is
        already stopping that attempt (the cancel is on its way)."""
        if owner in self._stopping:
            return False
        self._finishing.add(owner)
        return True

    async def stopping(self, owners: list[str]) -> list[str]:
        """The driver is about to cancel ``owners``: the ones already finishing are spared (their
        agents are done and paid for; only the commit is left) and returned."""
        spared = [owner for owner in owners if owner in self._finishing]
        self._stopping.update(owner for owner in owners if owner not in self._finishing)
        return spared

    # -- spend and reports ----------------------------------------------------------------

    async def report(self, owner: str, kind: str, data: Mapping[str, Any]) -> None:
        """A worker's news: ``started`` (``node``), ``step`` (``step``), ``usage`` (a step's)."""
        if kind == "usage":
            self._spend.setdefault(owner, Spend()).add(data)
            return
        self._reports.append({"owner": owner, "kind": kind, **data})

    async def poll(self, since: int) -> dict[str, Any]:
        """Reports after the first ``since``, and every owner's spend so far."""
        return {
            "next": len(self._reports),
            "reports": self._reports[since:],
            "spend": {owner: s.to_dict() for owner, s in self._spend.items()},
        }

    async def stats(self) -> dict[str, dict[str, int]]:
        """Per capped agent: its cap, leases out now, the most at once, acquires that waited."""
        return {
            agent: {
                "cap": s.cap,
                "active": len(s.leases),
                "peak": s.peak,
                "waited": s.waited,
            }
            for agent, s in self._agents.items()
        }


__all__ = ["Coordinator", "Spend"]
