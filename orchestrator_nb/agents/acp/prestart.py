"""Start a run's ACP agents together at its beginning, so later steps find them warm.

Start-up is most of a first step (an adapter spawns its CLI underneath), and a workflow's
agents start one after another when each waits for its first step. :func:`prestart` starts
every ACP agent the workflow names (its first step's configuration and rehearsal environment:
the same process the step would have started) in the background while the first steps run;
a step whose agent is still starting waits for that start instead of starting another.
Best effort: a prestart that fails leaves nothing behind, and the step starts the agent
itself, with its usual errors. Agents that a follow-up resumes are left to their step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .warm import WarmKey, WarmPool

# What the engine hands over per agent: (agent, step id) -> the prepared call or None.
Prepare = Callable[[str, str], Awaitable[Any]]


async def _start_one(pool: WarmPool, prepare: Prepare, agent: str, step: str, log: Path) -> None:
    run = await prepare(agent, step)
    if run is None or getattr(run.driver, "prompt_via", None) != "acp":
        return
    from .client import AcpProcess  # the ACP SDK, only for a run that has an ACP agent

    argv = run.driver.build_argv(run.request)
    key: WarmKey = (agent, str(run.request.workspace), tuple(argv))
    if key in pool.processes or key in pool.busy or key in pool.starting:
        return
    proc = AcpProcess(argv, cwd=run.request.workspace, env=run.env, log_dir=log / agent)
    done = pool.starting[key] = asyncio.Event()
    try:
        await asyncio.wait_for(proc.start(), run.config.timeout)
        await asyncio.wait_for(proc.open_session(None), run.config.timeout)
    except BaseException:
        await proc.close()
        raise
    else:
        pool.count_start(agent)
        pool.keep(key, proc)
        pool.claimed.add(key)  # its session is this run's already: the step opens none
    finally:
        pool.starting.pop(key, None)
        done.set()


def first_steps(steps: list[Any], skip: set[str]) -> list[tuple[str, str]]:
    """(agent, id of its first step) for every agent the steps name, except ``skip``."""
    from ...workflow.models import AgentStep, iter_steps

    found: dict[str, str] = {}
    for step in iter_steps(steps):
        if isinstance(step, AgentStep) and step.agent not in skip:
            found.setdefault(step.agent, step.id)
    return list(found.items())


def prestart(pool: WarmPool, prepare: Prepare, firsts: list[tuple[str, str]], log: Path) -> None:
    """Start the agents of ``firsts`` ((agent, its first step id)) in the background."""
    for agent, step in firsts:
        task = asyncio.ensure_future(_start_one(pool, prepare, agent, step, log))
        task.add_done_callback(_quiet)
        pool.tasks.append(task)


def _quiet(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(BaseException):
        task.result()  # a failed prestart is the step's to report, when it starts the agent


__all__ = ["first_steps", "prestart"]
