"""One run started from the panel: the request its inputs make, and the worker that runs it.

:func:`build_request` checks the inputs before anything starts, so a mistake is shown at once
rather than from a worker thread. :func:`start_run` has the run service execute the request
(session turn, rehearsal, follow-up, engine) on a fresh loop in a worker thread
(:func:`~orchestrator_nb.notebook.background.launch`).

Run is always a new task (it never resumes an agent's native conversation); Follow-up
continues the last turn in this workspace.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import ConfigError
from ..lifecycle import Subscriber
from ..notebook.background import Run, launch
from ..notebook.live import LiveDisplay
from ..runs import RunOptions, RunRequest, RunService
from ..sessions import Session
from ..workflow.result import WorkflowResult

if TYPE_CHECKING:
    pass

TICK_S = 0.5


def build_request(
    text: str,
    *,
    force_followup: bool | None,
    workflow: str | None,
    scenario: str | None,
    overrides: dict[str, Any],
    session: Session,
    settings: Settings,
    workspace: Path,
) -> RunRequest:
    """The run the panel's inputs ask for; a ConfigError names the input to fix."""
    task = text.strip()
    if not task:
        raise ConfigError("the task is empty", key="task", hint="type what the agents do")
    if workflow is None or workflow not in settings.workflows:
        known = ", ".join(settings.workflows) or "none"
        raise ConfigError(f"unknown workflow {workflow!r} (known: {known})", key="workflow")
    return RunRequest.build(
        task,
        workflow=workflow,
        workspace=workspace,
        config=settings,
        session=session,
        force_followup=force_followup,
        rehearsal=scenario,
        options=RunOptions.from_overrides(overrides),
    )


async def _tick(poke: Callable[[], None]) -> None:
    """While a step runs, its elapsed time moves even when the agent is silent."""
    while True:
        await asyncio.sleep(TICK_S)
        poke()


def start_run(
    request: RunRequest,
    live: LiveDisplay,
    *,
    subscribers: list[Subscriber],
    finished: Callable[[WorkflowResult], object],
    failed: Callable[[BaseException], object],
    tick: Callable[[], None],
) -> Run:
    """Start ``request`` in a worker thread; ``finished``/``failed`` run there at its end."""
    everyone: list[Subscriber] = [*subscribers, live]

    async def body(cancel: asyncio.Event) -> WorkflowResult:
        ticker = asyncio.ensure_future(_tick(tick))
        try:
            result = await RunService().execute(request, subscribers=everyone, cancel=cancel)
        except BaseException as exc:
            failed(exc)
            raise
        finally:
            ticker.cancel()
            live.close()
        finished(result)
        return result

    return launch(body, request.label)


async def wait_for(run: Run, timeout: float | None) -> None:
    """Until ``run`` is done, without blocking the kernel's loop; TimeoutError past ``timeout``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not run.done():
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"the run did not finish within {timeout}s")
        await asyncio.sleep(0.05)


def join(run: Run, timeout: float | None) -> None:
    """The blocking form of :func:`wait_for` (what the run raised is the panel's to show)."""
    with contextlib.suppress(Exception):
        run.result(timeout)
    if not run.done():
        raise TimeoutError(f"the run did not finish within {timeout}s")


__all__ = ["build_request", "join", "start_run", "wait_for"]
