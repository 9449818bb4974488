"""The workflow entry points: run, arun, resume, aresume.

``run(task, workflow="default", workspace=".")`` is the whole thing from sync code (also inside
a running kernel); ``await arun(...)`` from async code; ``resume(run_id, workspace=...)``
continues a run whose kernel died, without re-running its finished steps.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._sync import run_sync
from ..config import Settings
from ..errors import ConfigError
from ..lifecycle import Subscriber
from ..observe.checks import check_name, existing_workspace
from ..runs import RunOptions, RunRequest, RunService
from ..sessions import Session
from ..workspace import RevertResult, Workspace
from ..workspace.lock import Isolation
from .engine import Engine, GateDecision, GateHandler
from .result import Outcome, PlannedStep, WorkflowResult

if TYPE_CHECKING:
    from ..rehearsal.endpoint import RehearsalArg


async def arun(
    task: str,
    workflow: str = "default",
    *,
    workspace: str | os.PathLike[str] = ".",
    config: Settings | str | os.PathLike[str] | None = None,
    rehearsal: Any = None,
    session: Session | str | None = None,
    followup: bool | None = None,
    dry_run: bool = False,
    gate: GateHandler | None = None,
    cancel: asyncio.Event | None = None,
    subscribers: list[Subscriber] | None = None,
    variables: dict[str, Any] | None = None,
    engine: Engine | None = None,
    options: RunOptions | None = None,
    trust: bool | None = None,
    isolation: Isolation = "shared",
    approvals: Any = None,
    **overrides: Any,
) -> WorkflowResult:
    """Run ``workflow`` on ``task`` in ``workspace``.

    ``options`` (typed) or keyword overrides: ``max_iterations``, ``max_cost_usd``,
    ``max_tokens``, ``max_wall_s``, ``gate_policy``, ``timeout`` (the run's wall-clock limit;
    passing it ends the run as ``timeout``). Runs in one workspace take turns (a second one
    waits); ``isolation="worktree"`` runs this one in its own git worktree instead and applies
    its changes at the end. ``rehearsal``: a scenario path or name, or a
    running rehearsal. ``session``: a :class:`~orchestrator_nb.sessions.Session`; the run is
    recorded as its next turn. It follows up (continues each agent's native conversation in
    this workspace, and gives the agents the previous turn) only when ``followup=True`` or,
    with ``followup=None``, when the session's heuristic says so; a new task never resumes.
    ``approvals``: what answers ACP agents' permission requests, as for ``run_agent`` (a
    policy, its dict form or a callable); default: the settings' ``approvals:`` policy.
    """
    if options is None:
        options = replace(RunOptions.from_overrides(overrides), isolation=isolation)
    elif overrides:
        raise ConfigError("pass either options= or keyword overrides, not both", key="options")
    request = RunRequest.build(
        task,
        workflow=workflow,
        workspace=workspace,
        config=config,
        session=session,
        force_followup=followup,
        trust=trust,
        rehearsal=rehearsal,
        options=options,
        dry_run=dry_run,
        variables=dict(variables or {}),
        approvals=approvals,
    )
    service = RunService(engine=engine)
    return await service.execute(
        request, subscribers=list(subscribers or []), gate=gate, cancel=cancel
    )


def run(task: str, workflow: str = "default", **kwargs: Any) -> WorkflowResult:
    """The sync form of :func:`arun`; works inside a running Jupyter kernel too."""
    return run_sync(lambda: arun(task, workflow, **kwargs))


async def aresume(
    run_id: str,
    *,
    workspace: str | os.PathLike[str] = ".",
    config: Settings | str | os.PathLike[str] | None = None,
    rehearsal: RehearsalArg = None,
    gate: GateHandler | None = None,
    subscribers: list[Subscriber] | None = None,
    trust: bool | None = None,
) -> WorkflowResult:
    """Continue run ``run_id``: finished steps are taken from its journal, not run again.

    The journal gives the request (task, workflow or agent, budgets, timeout); it runs through
    the one :class:`RunService` like any other run: trust, the workspace lock, the rehearsal,
    logs, audit and metrics apply the same."""
    request = RunRequest.for_resume(
        run_id, workspace=workspace, config=config, trust=trust, rehearsal=rehearsal
    )
    return await RunService().execute(request, subscribers=list(subscribers or []), gate=gate)


def revert(
    run_id: str,
    *,
    workspace: str | os.PathLike[str] = ".",
    step: str | None = None,
    force: bool = False,
) -> RevertResult:
    """Undo what run ``run_id`` changed (or only its step ``step``), from backups or git.

    Files that changed again after the run are refused with ``RevertConflict`` unless ``force``.
    """
    check_name("run", run_id)
    ws = Workspace(existing_workspace(workspace), run_id=run_id)
    if step is None:
        return ws.revert_run(force=force)
    steps = ws.steps()
    key = step if step in steps else next((k for k in steps if k.rsplit("/", 1)[-1] == step), step)
    return ws.revert_step(key, force=force)


def resume(run_id: str, **kwargs: Any) -> WorkflowResult:
    """The sync form of :func:`aresume`."""
    return run_sync(lambda: aresume(run_id, **kwargs))


__all__ = [
    "Engine",
    "GateDecision",
    "GateHandler",
    "Outcome",
    "PlannedStep",
    "WorkflowResult",
    "aresume",
    "arun",
    "resume",
    "revert",
    "run",
]
