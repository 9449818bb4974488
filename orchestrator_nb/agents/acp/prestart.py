"""Start a run's ACP agents at its beginning, so later steps find them warm.

Start-up is most of a first step (an adapter spawns its CLI underneath), and a workflow's
agents start one after another when each waits for its first step. :func:`prestart` starts
every ACP agent the workflow names (its first step's configuration and rehearsal environment:
the same process the step would have started) in the background while the first steps run;
a step whose agent is still starting waits for that start instead of starting another. An
agent kept warm from the session's last run (warm.py) gets this run's new session the same way.
Best effort: a prestart that fails leaves nothing behind, and the step starts the agent
itself, with its usual errors. Agents that a follow-up resumes are left to their step.

Starting a Node CLI is CPU-bound (most of a second each), so starting more of them than there
are cores slows every one, the first step's agent too, which the whole run waits for. They
start in the order the workflow first needs them, at most one per usable core at a time: on
two cores the third agent starts once the first is up, while the first step runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .warm import WarmKey, WarmPool

# What the engine hands over per agent: (agent, step id) -> the prepared call or None.
Prepare = Callable[[str, str], Awaitable[Any]]


def _cores() -> int:
    """Cores this process may run on (its affinity, which a container or taskset narrows)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


async def _start_one(
    pool: WarmPool, gate: asyncio.Semaphore, agent: str, run: Any, log: Path
) -> None:
    if run is None or getattr(run.driver, "prompt_via", None) != "acp":
        return
    from .client import AcpProcess  # the ACP SDK, only for a run that has an ACP agent

    argv = run.driver.build_argv(run.request)
    key: WarmKey = (agent, str(run.request.workspace), tuple(argv))
    async with gate:
        if key in pool.starting:  # its step is starting it: that start holds this core
            await pool.started(key)
            return
        # Checked once the turn comes: a step that needed the agent meanwhile started it.
        if key in pool.busy or key in pool.claimed:
            return
        kept = pool.processes.get(key)
        if kept is not None:
            await _open_on_kept(pool, key, kept, run, log / agent)
            return
        proc = AcpProcess(
            argv,
            cwd=run.request.workspace,
            env=run.env,
            log_dir=log / agent,
            mode=run.config.permission_mode,
        )
        with pool.start_under_way(key):
            try:
                await asyncio.wait_for(proc.start(), run.config.timeout)
                await asyncio.wait_for(proc.open_session(None), run.config.timeout)
            except BaseException:
                await proc.close()
                raise
            pool.count_start(agent)
            pool.keep(key, proc)
            pool.claimed.add(key)  # its session is this run's already: the step opens none


async def _open_on_kept(pool: WarmPool, key: WarmKey, proc: Any, run: Any, log: Path) -> None:
    """A process kept from the session's last run: open this run's session on it now (the
    claude adapter starts a Claude Code process per session). On failure the step opens it."""
    if not proc.alive:
        return
    proc.on_message = None  # the last run's step no longer listens
    proc.set_log_dir(log)
    with pool.start_under_way(key):
        try:
            await asyncio.wait_for(proc.open_session(None), run.config.timeout)
        except Exception:  # the step opens the session itself, and reports what goes wrong
            return
        pool.claimed.add(key)


async def _start_all(
    pool: WarmPool, prepare: Prepare, firsts: list[tuple[str, str]], log: Path
) -> None:
    runs = await asyncio.gather(*(prepare(a, s) for a, s in firsts), return_exceptions=True)
    gate = asyncio.Semaphore(_cores())  # taken in the order of the tasks: the order of need
    starts = [
        asyncio.ensure_future(_start_one(pool, gate, agent, run, log))
        for (agent, _), run in zip(firsts, runs, strict=True)
        if not isinstance(run, BaseException)  # the step reports it, when it starts the agent
    ]
    try:
        await asyncio.gather(*starts, return_exceptions=True)
    finally:
        for task in starts:
            task.cancel()
        await asyncio.gather(*starts, return_exceptions=True)


def first_steps(steps: list[Any], skip: set[str]) -> list[tuple[str, str]]:
    """(agent, id of its first step) for every agent the steps name, except ``skip``."""
    from ...workflow.models import AgentStep, iter_steps

    found: dict[str, str] = {}
    for step in iter_steps(steps):
        if isinstance(step, AgentStep) and step.agent not in skip:
            found.setdefault(step.agent, step.id)
    return list(found.items())


def prestart(pool: WarmPool, prepare: Prepare, firsts: list[tuple[str, str]], log: Path) -> None:
    """Start the agents of ``firsts`` ((agent, its first step id), in order of need) in the
    background."""
    task = asyncio.ensure_future(_start_all(pool, prepare, firsts, log))
    task.add_done_callback(_quiet)
    pool.tasks.append(task)


def _quiet(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(BaseException):
        task.result()  # a failed prestart is the step's to report, when it starts the agent


__all__ = ["first_steps", "prestart"]
