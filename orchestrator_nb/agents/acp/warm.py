"""Warm agents: one live ACP process and session per agent for the length of a workflow run.

``async with warm_agents():`` (the workflow engine opens one per run) makes every ACP step of
the same agent in the same workspace a new ``session/prompt`` on the process the first step
started, so the agent keeps its context and no step pays the start-up again. The processes end
when the block ends, however it ends; a process that timed out or was cancelled is stopped at
once and the next step starts a fresh one. Two steps of one agent running in parallel cannot
share a session: the second gets a process of its own for that step.

Under rehearsal the warm process keeps the environment of the step that started it, so the
server records its later steps' requests under that first step.

Across cells: a session's runs in a kernel (blocking cells, which share one loop, see
``_sync.kernel_loop``) use one pool kept for the session (:func:`session_agents`). Its
processes stay warm between runs: a follow-up, whose step resumes the ACP session the process
still holds, is one more ``session/prompt`` (no ``session/load``, no replay); a new task opens a
new session (``session/new``) on the same process, opened at the run's beginning (prestart.py).
They end with :func:`close_session_agents` (``Session.close_agents()``), at interpreter exit,
or when a run under a different rehearsal server starts (they point at the old one; a
session's rehearsed runs share one server per scenario, see runs/rehearsals.py).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..._sync import kernel_loop, on_kernel_loop
from ...proctree import kill_now

# Every run enters :func:`warm_agents`; only a run with an ACP agent needs the client (and the
# ACP SDK under it), so it is imported for annotations only.
if TYPE_CHECKING:
    from .client import AcpProcess

WarmKey = tuple[str, str, tuple[str, ...]]  # agent, workspace, argv
CLOSE_WAIT_S = 10.0  # a session's agents closing: each gets EOF, then at most 1.5 s of signals


@dataclass
class WarmPool:
    processes: dict[WarmKey, AcpProcess] = field(default_factory=dict)
    busy: set[WarmKey] = field(default_factory=set)
    starts: dict[str, int] = field(default_factory=dict)  # agent -> processes started
    persistent: bool = False  # a session's pool: outlives its runs
    active: bool = False  # a run is using this (session's) pool
    tag: str | None = None  # the rehearsal server its processes were started for
    claimed: set[WarmKey] = field(default_factory=set)  # keys the current run has used
    starting: dict[WarmKey, asyncio.Event] = field(default_factory=dict)  # prestarts under way
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # prestarts (prestart.py)

    async def started(self, key: WarmKey) -> None:
        """Wait for a prestart of ``key`` under way, if any (the step then takes it)."""
        pending = self.starting.get(key)
        if pending is not None:
            await pending.wait()

    @contextlib.contextmanager
    def start_under_way(self, key: WarmKey) -> Iterator[None]:
        """Mark ``key`` as starting for the block: :meth:`started` waits for it to end."""
        done = self.starting[key] = asyncio.Event()
        try:
            yield
        finally:
            self.starting.pop(key, None)
            done.set()

    def first_use(self, key: WarmKey) -> bool:
        """True the first time the current run takes ``key`` (a kept process: a new turn)."""
        if key in self.claimed:
            return False
        self.claimed.add(key)
        return True

    def take(self, key: WarmKey) -> AcpProcess | None:
        """The live process for ``key`` (marked busy), or None if there is none yet.

        A caller finding ``key`` busy does not take: its process is its own (see acp_attempt).
        """
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
        tasks, self.tasks = self.tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        procs = list(self.processes.values())
        self.processes.clear()
        await asyncio.gather(*(p.close() for p in procs), return_exceptions=True)

    def kill(self) -> None:
        """Stop every process now, from any thread (their loop may be busy or gone)."""
        procs = list(self.processes.values())
        self.processes.clear()
        for proc in procs:
            if proc.proc is not None and proc.proc.returncode is None:
                kill_now(proc.proc.pid, None)


_POOL: ContextVar[WarmPool | None] = ContextVar("orchestrator_nb_acp_warm", default=None)


def current_pool() -> WarmPool | None:
    return _POOL.get()


_SESSION: ContextVar[str | None] = ContextVar("orchestrator_nb_acp_session", default=None)
_SESSIONS: dict[str, WarmPool] = {}
_SESSIONS_LOCK = threading.Lock()


@asynccontextmanager
async def session_agents(session_id: str | None) -> AsyncIterator[None]:
    """Runs inside use the session's warm pool (when they run on the kernel's loop)."""
    token = _SESSION.set(session_id)
    try:
        yield
    finally:
        _SESSION.reset(token)


def close_session_agents(session_id: str) -> None:
    """End the session's warm agents (from any thread); nothing is left running.

    Closed on the kernel's loop, where they run, when no run is using them: a process killed
    from here would leave its connection's tasks pending there, logging errors when collected.
    """
    with _SESSIONS_LOCK:
        pool = _SESSIONS.pop(session_id, None)
    if pool is None:
        return
    if pool.processes and not pool.active and not on_kernel_loop():
        closing = asyncio.run_coroutine_threadsafe(pool.close(), kernel_loop())
        with contextlib.suppress(Exception):
            closing.result(timeout=CLOSE_WAIT_S)
    pool.kill()  # what is left: a run using them, a close that did not end, or the loop's own


@atexit.register
def _close_all() -> None:
    with _SESSIONS_LOCK:
        pools = list(_SESSIONS.values())
        _SESSIONS.clear()
    for pool in pools:
        pool.kill()


def _session_pool(tag: str | None) -> tuple[WarmPool | None, list[AcpProcess]]:
    """The session's pool for this run (None: a pool of the run's own), and the processes
    to stop first (started for another rehearsal server, so of no use to this run)."""
    session_id = _SESSION.get()
    if session_id is None or not on_kernel_loop():
        return None, []
    with _SESSIONS_LOCK:
        pool = _SESSIONS.setdefault(session_id, WarmPool(persistent=True))
    if pool.active:  # another run of the session is using it: this one keeps its own
        return None, []
    pool.active = True
    stale: list[AcpProcess] = []
    if pool.tag != tag:
        stale = list(pool.processes.values())
        pool.processes.clear()
        pool.tag = tag
    pool.claimed.clear()
    return pool, stale


@asynccontextmanager
async def warm_agents(tag: str | None = None) -> AsyncIterator[WarmPool]:
    """Keep ACP agents warm inside the block; every process is stopped when it ends, unless
    the block runs for a session in a kernel (its pool outlives the run, see the module)."""
    kept, stale = _session_pool(tag)
    await asyncio.gather(*(p.close() for p in stale), return_exceptions=True)
    if kept is not None:
        token = _POOL.set(kept)
        try:
            yield kept
        finally:
            with contextlib.suppress(ValueError):
                _POOL.reset(token)
            kept.busy.clear()
            kept.tasks = [t for t in kept.tasks if not t.done()]  # a kept pool lives on
            kept.active = False
        return
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


__all__ = [
    "WarmPool",
    "close_session_agents",
    "current_pool",
    "session_agents",
    "warm_agents",
]
