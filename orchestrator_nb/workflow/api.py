"""The workflow entry points: run, arun, resume, aresume.

``run(task, workflow="default", workspace=".")`` is the whole thing from sync code (also inside
a running kernel); ``await arun(...)`` from async code; ``resume(run_id, workspace=...)``
continues a run whose kernel died, without re-running its finished steps.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from .._sync import run_sync
from ..api import _workspace
from ..config import Settings, load_settings
from ..lifecycle import EventBus, Subscriber
from ..observe.checks import check_task
from ..workspace import RevertResult, Workspace
from ..workspace.lock import Isolation
from .engine import Engine, GateDecision, GateHandler
from .journal import RunJournal
from .result import Outcome, PlannedStep, WorkflowResult

if TYPE_CHECKING:
    from ..rehearsal.endpoint import RehearsalArg


async def arun(
    task: str,
    workflow: str = "default",
    *,
    workspace: str | os.PathLike[str] = ".",
    config: Settings | str | os.PathLike[str] | None = None,
    rehearsal: RehearsalArg = None,
    session: Any = None,
    dry_run: bool = False,
    gate: GateHandler | None = None,
    cancel: asyncio.Event | None = None,
    subscribers: list[Subscriber] | None = None,
    variables: dict[str, Any] | None = None,
    engine: Engine | None = None,
    isolation: Isolation = "shared",
    **overrides: Any,
) -> WorkflowResult:
    """Run ``workflow`` on ``task`` in ``workspace``.

    Runs in one workspace take turns (a second one waits); ``isolation="worktree"`` runs this
    one in its own git worktree instead and applies its changes at the end.

    ``overrides``: ``max_iterations``, ``max_cost_usd``, ``max_tokens``, ``max_wall_s``,
    ``gate_policy``. ``rehearsal``: a scenario path or name, or a running rehearsal.
    ``session``: anything with a ``history`` list of earlier turns (for follow-ups).
    """
    check_task(task)
    root = _workspace(workspace)
    if engine is None:
        settings = config if isinstance(config, Settings) else load_settings(config, cwd=root)
        engine = Engine(settings, bus=EventBus())
    if dry_run:
        plan = engine.plan(task, workflow, overrides)
        return WorkflowResult("dry-run", workflow, task, "completed", plan=plan)
    unsubscribe = [engine.bus.subscribe(s) for s in subscribers or []]
    history = list(getattr(session, "history", None) or [])
    # A follow-up continues each agent's native conversation where its CLI allows it.
    resume_ids = dict(getattr(session, "resume_ids", None) or {})
    try:
        return await engine.run(
            task,
            workflow,
            workspace=root,
            rehearsal=rehearsal,
            gate=gate,
            cancel=cancel,
            variables=variables,
            history=history,
            overrides=overrides,
            resume_ids=resume_ids,
            isolation=isolation,
        )
    finally:
        for off in unsubscribe:
            off()


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
) -> WorkflowResult:
    """Continue run ``run_id``: finished steps are taken from its journal, not run again."""
    root = _workspace(workspace)
    meta = RunJournal(root / ".orchestrator" / "runs", run_id).meta()
    settings = config if isinstance(config, Settings) else load_settings(config, cwd=root)
    engine = Engine(settings)
    unsubscribe = [engine.bus.subscribe(s) for s in subscribers or []]
    try:
        return await engine.run(
            meta["task"],
            meta["workflow"],
            workspace=root,
            rehearsal=rehearsal,
            run_id=run_id,
            resume=True,
            gate=gate,
            overrides=meta.get("overrides") or {},
        )
    finally:
        for off in unsubscribe:
            off()


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
    ws = Workspace(_workspace(workspace), run_id=run_id)
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
