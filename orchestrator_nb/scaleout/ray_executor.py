"""A batch on a Ray cluster: one Ray task per batch task, the journal kept by the driver.

::

    from orchestrator_nb.scaleout import batch_ray

    result = batch_ray(tasks, "quick", executor="ray://head:10001", max_concurrency=50,
                       caps={"claude": 4, "codex": 8}, batch_budget={"max_cost_usd": 25})

Tasks, journal, resume, progress and summary are the batch preamble's
(:mod:`orchestrator_nb.batching.preamble`), as for the local executor; the work runs on the
cluster (:mod:`.worker`), driven from here (:mod:`.dispatch`). Its result is journaled on the
driver as it arrives, so a batch whose driver died resumes with the same ``journal=``, from any
driver.

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
from collections.abc import Mapping
from typing import Any

from .._sync import run_sync
from ..batching.executor import default_executors
from ..batching.preamble import Batch
from ..batching.tasks import BatchTask, TasksArg
from ..errors import ConfigError
from ..rehearsal.endpoint import RehearsalArg, RehearsalEndpoint, endpoint_of
from ..rehearsal.scenario import Scenario, load_scenario
from . import repo
from ._ray import connect, ray_address, require_ray
from .caps import resolve_caps
from .dispatch import Dispatch
from .result import BatchBudget, RayBatchResult
from .worker import TaskJob


class RayExecutor:
    """Runs a batch's tasks on a Ray cluster, each on a git branch of its own.

    ``executor``: ``"ray"`` (join ``RAY_ADDRESS`` or start a local cluster), ``"auto"``, a
    ``ray://host:10001`` client address or a ``host:port`` GCS address; a process that already
    called ``ray.init()`` keeps its connection. ``caps``: calls of one agent at once across
    the cluster (default: ``limits.per_agent``). ``batch_budget``: ``max_cost_usd`` and/or
    ``max_tokens`` for the whole batch. ``worker_dir``: where workers put the tasks'
    repositories (default: their temp folder). ``task_options`` go to Ray's ``.options()``
    (``num_cpus``, ``resources``, ...).
    """

    name = "ray"

    def __init__(
        self,
        executor: str = "ray",
        *,
        caps: Mapping[str, int] | None = None,
        batch_budget: BatchBudget | Mapping[str, Any] | None = None,
        cancel: asyncio.Event | None = None,
        cancel_grace_s: float = 10.0,
        worker_dir: str | os.PathLike[str] | None = None,
        task_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.ray = require_ray()
        self.executor = executor
        self.address = ray_address(executor)
        if isinstance(cancel_grace_s, bool) or not cancel_grace_s >= 0:
            raise ConfigError("cancel_grace_s must be 0 or more seconds", key="cancel_grace_s")
        if caps is not None:
            resolve_caps(caps, {})  # a bad cap fails before anything starts
        self.caps = caps
        self.budget = BatchBudget.from_arg(batch_budget)
        self.cancel = cancel
        self.grace_s = float(cancel_grace_s)
        self.worker_dir = os.fspath(worker_dir) if worker_dir is not None else None
        self.task_options = dict(task_options or {})
        self._snap: repo.Snapshot | None = None
        self._result: RayBatchResult | None = None

    def start(self, batch: Batch) -> RayBatchResult:
        if batch.isolation not in ("auto", "worktree"):
            raise ConfigError(
                "the Ray executor runs every task on a git branch, "
                f"not isolation={batch.isolation!r}",
                key="isolation",
                hint="use isolation='auto' or 'worktree' (a git workspace), or executor='local'",
            )
        self._scenario, self._shared = _rehearsal(batch.rehearsal)
        self._caps = resolve_caps(self.caps, batch.settings.limits.per_agent)
        self._snap = snap = repo.snapshot(batch.root)
        result = RayBatchResult(
            batch.batch_id, str(batch.root), str(batch.journal), "worktree", executor=self.executor
        )
        if snap.uncommitted:
            result.notes.append("the workspace has uncommitted changes; tasks began from HEAD")
        for task_id in batch.rows:
            node = batch.book.finished.get(task_id, {}).get("node")
            if node:
                result.nodes[task_id] = str(node)
        self._result = result
        return result

    async def run(self, batch: Batch, pending: list[BatchTask]) -> None:
        snap, result, tracker = self._snap, self._result, batch.tracker
        assert snap is not None and result is not None and tracker is not None, "start() first"
        connect(self.ray, self.address)
        dispatch = Dispatch(
            self.ray,
            batch=batch,
            tracker=tracker,
            result=result,
            budget=self.budget,
            cancel=self.cancel,
            grace_s=self.grace_s,
            max_concurrency=batch.max_concurrency,
            options=dict(self.task_options),
            toplevel=snap.toplevel,
            commit=snap.commit,
        )
        jobs = [
            TaskJob(
                batch_id=batch.batch_id,
                session=dispatch.session,
                owner=f"{spec.id}@{secrets.token_hex(4)}",
                spec=spec,
                workflow=batch.workflow,
                settings=batch.settings,
                commit=snap.commit,
                prefix=snap.prefix,
                scenario=self._scenario,
                shared=self._shared,
                capped=frozenset(self._caps),
                worker_dir=self.worker_dir,
                overrides=dict(batch.overrides),
            )
            for spec in pending
        ]
        await dispatch.run(jobs, snap.bundle, self._caps, reap_earlier=batch.resumed)


async def abatch_ray(
    tasks: TasksArg, workflow: str = "default", *, executor: str = "ray", **kwargs: Any
) -> RayBatchResult:
    """:func:`orchestrator_nb.batching.abatch` with ``executor`` one of Ray's (the default
    ``"ray"``); the Ray options (``caps``, ``batch_budget``, ...) are :class:`RayExecutor`'s."""
    from ..batching.api import abatch

    if default_executors().entry(executor).name != "ray":
        ray_address(executor)  # says why 'local' (or another executor) is not Ray's
    result = await abatch(tasks, workflow, executor=executor, **kwargs)
    assert isinstance(result, RayBatchResult)
    return result


def batch_ray(tasks: TasksArg, workflow: str = "default", **kwargs: Any) -> RayBatchResult:
    """The sync form of :func:`abatch_ray`; works inside a running Jupyter kernel too."""
    return run_sync(lambda: abatch_ray(tasks, workflow, **kwargs))


def _rehearsal(rehearsal: RehearsalArg) -> tuple[Scenario | None, RehearsalEndpoint | None]:
    """A scenario that every task rehearses with on a server of its own, or a running
    rehearsal whose server the tasks share (workers on the driver's machine only)."""
    running = endpoint_of(rehearsal)
    if running is not None or rehearsal is None:
        return None, running
    if isinstance(rehearsal, Scenario):
        return rehearsal, None
    if isinstance(rehearsal, (str, os.PathLike)):
        # Loaded here, so a bad name fails before anything starts and workers need no file.
        return load_scenario(os.fspath(rehearsal)), None
    raise ConfigError(
        f"rehearsal must be a scenario name or path, a Scenario or a running rehearsal, "
        f"not {type(rehearsal).__name__}",
        key="rehearsal",
        hint="e.g. rehearsal='write-file'",
    )


__all__ = ["BatchBudget", "RayBatchResult", "RayExecutor", "abatch_ray", "batch_ray"]
