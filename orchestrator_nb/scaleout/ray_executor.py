"""A batch on a Ray cluster: one Ray task per batch task, the journal kept by the driver.

::

    from orchestrator_nb.scaleout import batch_ray

    result = batch_ray(tasks, "quick", executor="ray://head:10001", max_concurrency=50,
                       caps={"claude": 4, "codex": 8}, batch_budget={"max_cost_usd": 25})

Tasks, journal, progress and summary are those of :func:`orchestrator_nb.batch.abatch`; the
work runs on the cluster (:mod:`.worker`), driven from here (:mod:`.dispatch`). Its result is
journaled on the driver as it arrives, so a batch whose driver died resumes with the same
``journal=``, from any driver.

Stopping — a kernel interrupt (the coroutine is cancelled), ``cancel`` set, or the batch
budget crossed — submits nothing more and cancels every running task; after
``cancel_grace_s`` the ones still running are killed with their workers and every node reaps
what their agents left (:mod:`.cancel`). Tasks that did not finish are not journaled, so a
re-run does them and only them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._sync import run_sync
from ..api import _settings
from ..batch import _check, _folder, _from_journal, _resumed
from ..batching.journal import BatchJournal
from ..batching.progress import ProgressCallback, Tracker, choose_display
from ..batching.tasks import TasksArg, load_tasks
from ..config import Settings
from ..errors import ConfigError
from ..rehearsal.scenario import Scenario, load_scenario
from ..rehearsal.session import Rehearsal
from ..workspace import new_run_id
from . import repo
from ._ray import connect, ray_address, require_ray
from .caps import resolve_caps
from .dispatch import Dispatch
from .result import BatchBudget, RayBatchResult
from .worker import SharedRehearsal, TaskJob


async def abatch_ray(
    tasks: TasksArg,
    workflow: str = "default",
    *,
    executor: str = "ray",
    workspace: str | os.PathLike[str] = ".",
    max_concurrency: int = 2,
    journal: str | os.PathLike[str] | None = None,
    config: Settings | str | os.PathLike[str] | None = None,
    rehearsal: Any = None,
    isolation: str = "auto",
    on_progress: ProgressCallback | None = None,
    progress: bool | None = None,
    retry_failed: bool = False,
    caps: Mapping[str, int] | None = None,
    batch_budget: BatchBudget | Mapping[str, Any] | None = None,
    cancel: asyncio.Event | None = None,
    cancel_grace_s: float = 10.0,
    worker_dir: str | os.PathLike[str] | None = None,
    task_options: Mapping[str, Any] | None = None,
    trust: bool | None = None,
    **overrides: Any,
) -> RayBatchResult:
    """Run ``workflow`` on every task on a Ray cluster; at most ``max_concurrency`` in flight.

    ``executor``: ``"ray"`` (join ``RAY_ADDRESS`` or start a local cluster), ``"auto"``, a
    ``ray://host:10001`` client address or a ``host:port`` GCS address; a process that already
    called ``ray.init()`` keeps its connection. ``caps``: calls of one agent at once across
    the cluster (default: ``limits.per_agent``). ``batch_budget``: ``max_cost_usd`` and/or
    ``max_tokens`` for the whole batch. ``worker_dir``: where workers put the tasks'
    repositories (default: their temp folder). ``task_options`` go to Ray's ``.options()``
    (``num_cpus``, ``resources``, ...). The rest is as for :func:`orchestrator_nb.batch.abatch`.
    """
    ray = require_ray()
    address = ray_address(executor)
    root = _folder(workspace)
    specs = load_tasks(tasks)
    _check_concurrency(max_concurrency)
    if isinstance(cancel_grace_s, bool) or not cancel_grace_s >= 0:
        raise ConfigError("cancel_grace_s must be 0 or more seconds", key="cancel_grace_s")
    settings = _settings(config, root, trust)
    _check(specs, workflow, settings, overrides)
    chosen = resolve_caps(caps, settings.limits.per_agent)
    budget = BatchBudget.from_arg(batch_budget)
    scenario, shared = _rehearsal(rehearsal)

    path = Path(journal).expanduser().resolve() if journal is not None else None
    batch_id = new_run_id()
    if path is None:
        path = root / ".orchestrator" / "batches" / batch_id / "journal.jsonl"
    with BatchJournal(path) as book:
        resumed = book.header is not None
        if resumed:
            batch_id, isolation = _resumed(book, root, isolation)
        if isolation not in ("auto", "worktree"):
            raise ConfigError(
                f"the Ray executor runs every task on a git branch, not isolation={isolation!r}",
                key="isolation",
                hint="use isolation='auto' or 'worktree' (a git workspace), or executor='local'",
            )
        snap = repo.snapshot(root)
        header = {"batch_id": batch_id, "workspace": str(root), "isolation": "worktree"}
        book.start({**header, "executor": "ray"})
        result = RayBatchResult(batch_id, str(root), str(path), "worktree", executor=executor)
        if snap.uncommitted:
            result.notes.append("the workspace has uncommitted changes; tasks began from HEAD")
        rows, results, pending = _from_journal(book, specs, retry_failed)
        for task_id in rows:
            node = book.finished.get(task_id, {}).get("node")
            if node:
                result.nodes[task_id] = str(node)
        display = choose_display(progress, sys.stderr)
        tracker = Tracker(len(specs), list(rows.values()), on_progress, display, journal=str(path))
        tracker.begin()
        try:
            if pending:
                connect(ray, address)
                dispatch = Dispatch(
                    ray,
                    book=book,
                    tracker=tracker,
                    result=result,
                    rows=rows,
                    results=results,
                    budget=budget,
                    cancel=cancel,
                    grace_s=float(cancel_grace_s),
                    max_concurrency=max_concurrency,
                    options=dict(task_options or {}),
                    toplevel=snap.toplevel,
                    commit=snap.commit,
                )
                jobs = [
                    TaskJob(
                        batch_id=batch_id,
                        session=dispatch.session,
                        owner=f"{spec.id}@{secrets.token_hex(4)}",
                        spec=spec,
                        workflow=workflow,
                        settings=settings,
                        commit=snap.commit,
                        prefix=snap.prefix,
                        scenario=scenario,
                        shared=shared,
                        capped=frozenset(chosen),
                        worker_dir=os.fspath(worker_dir) if worker_dir is not None else None,
                        overrides=dict(overrides),
                    )
                    for spec in pending
                ]
                await dispatch.run(jobs, snap.bundle, chosen, reap_earlier=resumed)
        finally:
            tracker.end()
    result.rows = [rows[s.id] for s in specs]
    result.results = {s.id: results[s.id] for s in specs}
    return result


def batch_ray(tasks: TasksArg, workflow: str = "default", **kwargs: Any) -> RayBatchResult:
    """The sync form of :func:`abatch_ray`; works inside a running Jupyter kernel too."""
    return run_sync(lambda: abatch_ray(tasks, workflow, **kwargs))


def _check_concurrency(value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"max_concurrency must be a whole number >= 1, not {value!r}",
            key="max_concurrency",
            hint="it is how many tasks are in flight on the cluster at once",
        )


def _rehearsal(rehearsal: Any) -> tuple[Scenario | None, SharedRehearsal | None]:
    """A scenario that every task rehearses with on a server of its own, or a running
    rehearsal whose server the tasks share (workers on the driver's machine only)."""
    if rehearsal is None:
        return None, None
    if isinstance(rehearsal, Rehearsal):
        if rehearsal.closed:
            raise ConfigError(
                "the rehearsal passed to the batch is closed",
                key="rehearsal",
                hint="run the batch inside its `with rehearsal(...)` block, or pass a scenario",
            )
        return None, SharedRehearsal(rehearsal)
    if isinstance(rehearsal, Scenario):
        return rehearsal, None
    # Loaded here, so a bad name fails before anything starts and workers need no file.
    return load_scenario(os.fspath(rehearsal)), None


__all__ = ["BatchBudget", "RayBatchResult", "abatch_ray", "batch_ray"]
