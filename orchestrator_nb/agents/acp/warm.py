"""Warm agents: one live ACP process and session per agent for the length of a workflow run.

``async with warm_agents():`` (the workflow engine opens one per run) makes every ACP step of
the same agent in the same workspace a new ``session/prompt`` on the process the first step
started, so the agent keeps its context and no step pays the start-up again. The processes end
when the block ends, however it ends; a process that timed out or was cancelled is stopped at
once and the next step starts a fresh one. Two steps of one agent running in parallel cannot
share a session: the second gets a process of its own for that step.

Under rehearsal the warm process keeps the environment of the step that started it, so the
server records its later steps' requests under that first step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

# Every run enters :func:`warm_agents`; only a run with an ACP agent needs the client (and the
# ACP SDK under it), so it is imported for annotations only.
if TYPE_CHECKING:
    from .client import AcpProcess

WarmKey = tuple[str, str, tuple[str, ...]]  # agent, workspace, argv


@dataclass
class WarmPool:
    processes: dict[WarmKey, AcpProcess] = field(default_factory=dict)
    busy: set[WarmKey] = field(default_factory=set)
    starts: dict[str, int] = field(default_factory=dict)  # agent -> processes started

    def take(self, key: WarmKey) -> AcpProcess | None:
        """The live process for ``key`` (marked busy), or None if none or it is busy."""
        if key in self.busy:
            return None
        proc = self.processes.get(key)
        if proc is not None and not proc.alive:
            self.processes.pop(key, None)
            proc = None
        self.busy.add(key)
        return proc

    def keep(self, key: WarmKey, proc: AcpProcess) -> None:
        self.processes[key] = proc

    def release(self, key: WarmKey) -> None:
        self.busy.discard(key)

    def forget(self, key: WarmKey) -> None:
        self.processes.pop(key, None)
        self.busy.discard(key)

    def count_start(self, agent: str) -> None:
        self.starts[agent] = self.starts.get(agent, 0) + 1

    async def close(self) -> None:
        procs = list(self.processes.values())
        self.processes.clear()
        await asyncio.gather(*(p.close() for p in procs), return_exceptions=True)


_POOL: ContextVar[WarmPool | None] = ContextVar("orchestrator_nb_acp_warm", default=None)


def current_pool() -> WarmPool | None:
    return _POOL.get()


@asynccontextmanager
async def warm_agents() -> AsyncIterator[WarmPool]:
    """Keep ACP agents warm inside the block; every process is stopped when it ends."""
    pool = WarmPool()
    token = _POOL.set(pool)
    try:
        yield pool
    finally:
        with contextlib.suppress(ValueError):  # closed from another context: it still goes
            _POOL.reset(token)
        # Shielded: a cancelled run must still stop its agents, never orphan them.
        task = asyncio.ensure_future(pool.close())
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                continue


__all__ = ["WarmPool", "current_pool", "warm_agents"]
