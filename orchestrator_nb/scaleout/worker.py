"""What runs on a Ray worker: one batch task, its whole workflow, in a repository of its own.

:func:`run_task` is the Ray task. It fetches the batch's commit from the bundle into
``<worker_dir>/<batch>/<task>-<attempt>``, rehearses when the batch does, runs the workflow with
cluster-wide caps, commits what changed on the task's branch and returns the result, the
diff, the usage, a bundle of the commit and when each agent call held its cap.

Rehearsal on a cluster: a batch given a scenario (a name, a path or a ``Scenario``) sends the
scenario itself, and every task starts a server of its own on its worker's 127.0.0.1 — a
worker on another machine could not reach the driver's 127.0.0.1, and no scenario file has to
exist on the workers. A batch given a *running* rehearsal shares that server with workers on
the driver's machine (one recording of every request, as a local batch has); a task that
lands on another machine fails with a message saying to pass the scenario instead.

``ray.cancel(ref)`` raises KeyboardInterrupt in the worker's main thread; the loop here wakes
every 0.1 s so that it arrives promptly, and :func:`orchestrator_nb._sync.run_sync` turns it
into a cancel of the run, which stops the agents' process groups before the task ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._sync import run_sync
from ..batching.task_run import commit_message, failed_result, run_task_workflow, task_row
from ..batching.tasks import BatchTask
from ..config import Settings
from ..errors import RehearsalError
from ..lifecycle import EventBus, LifecycleEvent, StepFinished, StepStarted
from ..rehearsal.endpoint import RehearsalEndpoint, rehearsal_scope
from ..rehearsal.scenario import Scenario
from ..workflow.engine import Engine
from ..workflow.policies import ConcurrencyLimits
from . import repo
from .cancel import marked, reap
from .caps import ClusterLimits

WORKER_DIR_NAME = "orchestrator-nb-ray"
TICK_S = 0.1


@dataclass(frozen=True)
class TaskJob:
    """Everything one attempt of one task needs on a worker (pickled by Ray)."""

    batch_id: str
    session: str  # one run of the batch (a resumed batch gets a new one)
    owner: str  # this attempt: "<task>@<hex>"
    spec: BatchTask
    workflow: str
    settings: Settings
    commit: str
    prefix: str
    scenario: Scenario | None = None
    shared: RehearsalEndpoint | None = None
    capped: frozenset[str] = frozenset()
    worker_dir: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def marker(self) -> str:
        """The environment marker of the attempt's processes (ends in "/": a prefix of none
        but its own)."""
        return f"{self.batch_id}/{self.session}/{self.spec.id}/"

    def folder(self) -> Path:
        base = Path(self.worker_dir) if self.worker_dir else Path(tempfile.gettempdir())
        if not self.worker_dir:
            base = base / WORKER_DIR_NAME
        return base / self.batch_id / f"{self.spec.id}-{self.owner.rsplit('@', 1)[-1]}"

    def home(self) -> Path:
        """The HOME of the task's own rehearsal: beside its repository, never inside it."""
        root = self.folder()
        return root.with_name(f"{root.name}.home")

    def remove_folders(self) -> None:
        for folder in (self.folder(), self.home()):
            shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.folder().parent.rmdir()  # the batch's folder on this node, once it is empty


class _ActorCaps:
    """The coordinator actor as a :class:`~orchestrator_nb.scaleout.caps.CapService`."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def acquire(self, agent: str, owner: str) -> str | None:
        lease = await self.handle.acquire.remote(agent, owner)
        return None if lease is None else str(lease)

    def release(self, lease: str) -> None:
        self.handle.release.remote(lease)


def run_task(job: TaskJob, bundle: bytes, coordinator: Any) -> dict[str, Any]:
    """The Ray task: run ``job`` to the end and return what the driver journals."""
    return run_sync(lambda: _run(job, bundle, coordinator))


def reap_on_node(
    prefix: str, keep: str | None = None, jobs: tuple[TaskJob, ...] = ()
) -> tuple[str, list[int]]:
    """The Ray task the driver runs on every node after a forced cancel: stop the marked
    processes, then remove the folders of ``jobs`` (their workers died before they could)."""
    import ray

    found = reap(prefix, keep=keep)
    for job in jobs:
        job.remove_folders()
    return str(ray.get_runtime_context().get_node_id()), found


async def _tick() -> None:
    while True:
        await asyncio.sleep(TICK_S)


async def _run(job: TaskJob, bundle: bytes, coordinator: Any) -> dict[str, Any]:
    import ray

    node = str(ray.get_runtime_context().get_node_id())
    spec = job.spec
    coordinator.report.remote(job.owner, "started", {"task": spec.id, "node": node})
    started = time.monotonic()
    root = job.folder()
    branch = repo.branch_name(job.batch_id, spec.id)
    ticker = asyncio.ensure_future(_tick())
    limits: ClusterLimits | None = None
    try:
        with marked(job.marker):
            try:
                await asyncio.to_thread(repo.checkout, root, bundle, job.commit, branch)
                place = root / job.prefix if job.prefix else root
                place.mkdir(parents=True, exist_ok=True)
                limits = ClusterLimits(
                    ConcurrencyLimits.from_limits(job.settings.limits),
                    _ActorCaps(coordinator),
                    owner=job.owner,
                    task_id=spec.id,
                    node=node,
                    capped=job.capped,
                )
                engine = Engine(job.settings, bus=EventBus(), limits=limits)
                engine.bus.subscribe(lambda event: _forward(coordinator, job, event))
                async with _rehearsal(job, node) as reh:
                    result = await run_task_workflow(
                        spec,
                        job.workflow,
                        workspace=place,
                        engine=engine,
                        rehearsal=reh,
                        overrides=job.overrides,
                    )
            except Exception as exc:  # the task failed; the batch goes on
                result = failed_result(spec, job.workflow, exc)
            # Done and paid for: from here on the batch lets this attempt finish (unless it
            # is already being cancelled), so a stop never throws away finished work.
            with contextlib.suppress(Exception):  # no coordinator (its driver is gone): go on
                await coordinator.finishing.remote(job.owner)
            message = commit_message(job.batch_id, spec, job.workflow, result.outcome)
            data, notes = await asyncio.to_thread(_commit, root, job, branch, message)
    finally:
        ticker.cancel()
        job.remove_folders()
    result.notes.extend(notes)
    row = task_row(spec, job.workflow, result, time.monotonic() - started, branch)
    return {
        "task_id": spec.id,
        "owner": job.owner,
        "node": node,
        "pid": os.getpid(),
        "row": row.to_dict(),
        "result": result.to_dict(),
        "branch": branch,
        "bundle": data,
        "calls": [c.to_dict() for c in (limits.calls if limits is not None else [])],
    }


def _commit(root: Path, job: TaskJob, branch: str, message: str) -> tuple[bytes | None, list[str]]:
    """The task's commit as a bundle (None when nothing changed), and notes on trouble."""
    place = root / job.prefix if job.prefix else root
    try:
        if not place.is_dir() or not repo.commit_all(place, message):
            return None, []
        return repo.bundle_branch(root, branch, job.commit), []
    except Exception as exc:
        return None, [f"the result could not be committed: {exc}"]


def _forward(coordinator: Any, job: TaskJob, event: LifecycleEvent) -> None:
    """Steps started (for the driver's progress) and steps' usage (for the batch budget)."""
    if isinstance(event, StepStarted) and event.kind == "agent":
        data = {"task": job.spec.id, "step": event.step_id, "agent": event.agent}
        coordinator.report.remote(job.owner, "step", data)
    elif isinstance(event, StepFinished) and not event.cached:
        usage = event.result.usage
        spend = {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cost_usd": usage.cost_usd,
        }
        coordinator.report.remote(job.owner, "usage", spend)


@contextlib.asynccontextmanager
async def _rehearsal(job: TaskJob, node: str) -> AsyncIterator[RehearsalEndpoint | None]:
    """The driver's server when it is shared (same machine), else one of this task's own."""
    if job.shared is not None:
        if not await asyncio.to_thread(job.shared.reachable):
            raise RehearsalError(
                f"the batch's rehearsal server {job.shared.url} is not reachable from node "
                f"{node}: a running rehearsal is shared only with workers on its machine",
                hint="pass the scenario's name or path (rehearsal='write-file') instead; "
                "then every task runs a server of its own on its worker",
            )
        yield job.shared
        return
    if job.scenario is None:
        yield None
        return
    home = job.home()
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    with rehearsal_scope(job.scenario, home=home) as endpoint:
        yield endpoint


__all__ = ["TaskJob", "reap_on_node", "run_task"]
