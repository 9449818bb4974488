"""One run started from the panel: what the inputs ask for, and the worker that runs it.

:meth:`RunRequest.build` checks the inputs before anything starts, so a mistake is shown at
once rather than from a worker thread. :func:`start_run` records the turn in the session and
runs the workflow on a fresh loop in a worker thread
(:func:`~orchestrator_nb.notebook.background.launch`), inside a rehearsal when one is picked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import ConfigError
from ..lifecycle import Subscriber
from ..notebook.background import Run, launch
from ..notebook.live import LiveDisplay
from ..notebook.runner import SessionRecorder, rehearsal_home
from ..sessions import FollowupDecision, Session, decide_followup
from ..workflow.api import arun
from ..workflow.result import WorkflowResult

if TYPE_CHECKING:
    from ..rehearsal.endpoint import RehearsalEndpoint

TICK_S = 0.5


@dataclass
class RunRequest:
    task: str  # as typed (what the session records)
    prompt: str  # what the agents get: a follow-up carries the previous turn first
    workflow: str
    workspace: Path
    settings: Settings
    session: Session
    decision: FollowupDecision
    scenario: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
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
        task = text.strip()
        if not task:
            raise ConfigError("the task is empty", key="task", hint="type what the agents do")
        if workflow is None or workflow not in settings.workflows:
            known = ", ".join(settings.workflows) or "none"
            raise ConfigError(f"unknown workflow {workflow!r} (known: {known})", key="workflow")
        decision = decide_followup(task, session, force=force_followup)
        prompt = session.followup_task(task) if decision.followup else task
        return cls(
            task, prompt, workflow, workspace, settings, session, decision, scenario, overrides
        )


@contextlib.contextmanager
def _rehearsal(request: RunRequest) -> Iterator[RehearsalEndpoint | None]:
    if request.scenario is None:
        yield None
        return
    from ..rehearsal.endpoint import rehearsal_scope

    home = rehearsal_home(request.session.id)  # native CLI sessions resume across runs
    with rehearsal_scope(request.scenario, workspace=request.workspace, home=home) as endpoint:
        yield endpoint


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
    session = request.session
    turn = session.begin_turn(
        request.task,
        workflow=request.workflow,
        workspace=request.workspace,
        decision=request.decision,
    )
    everyone: list[Subscriber] = [*subscribers, live, SessionRecorder(session, turn)]

    async def body(cancel: asyncio.Event) -> WorkflowResult:
        ticker = asyncio.ensure_future(_tick(tick))
        try:
            with _rehearsal(request) as reh:
                result = await arun(
                    request.prompt,
                    request.workflow,
                    workspace=request.workspace,
                    config=request.settings,
                    rehearsal=reh,
                    session=session,
                    cancel=cancel,
                    subscribers=everyone,
                    **request.overrides,
                )
        except BaseException as exc:
            session.finish_turn(turn, "failed", error=str(exc) or type(exc).__name__)
            failed(exc)
            raise
        finally:
            ticker.cancel()
            live.close()
        session.finish_turn(turn, result.outcome, error=result.error, run_id=result.run_id)
        finished(result)
        return result

    try:
        return launch(body, f"workflow {request.workflow}")
    except BaseException as exc:  # no thread: nothing else will close the turn
        session.finish_turn(turn, "failed", error=str(exc) or type(exc).__name__)
        raise


__all__ = ["RunRequest", "start_run"]
