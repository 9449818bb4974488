"""A batch on a Ray cluster: one Ray task per batch task, the journal kept by the driver.

::

    from orchestrator_nb.scaleout import batch_ray

    result = batch_ray(tasks, "quick", executor="ray://head:10001", max_concurrency=50,
                       caps={"claude": 4, "codex": 8}, batch_budget={"max_cost_usd": 25})

Tasks, journal, progress and summary are those of :func:`orchestrator_nb.batch.abatch`; the
work runs on the cluster. Every task is submitted with ``max_retries=0`` (a task that ran
half-way is not paid for twice behind the user's back) and its result is journaled on the
driver as it arrives, so a batch whose driver died resumes with the same ``journal=``.
Tasks lost with their worker or node are reported failed but not journaled: they run again.

Stopping — a kernel interrupt (the coroutine is cancelled), ``cancel`` set, or the batch
budget crossed — submits nothing more and cancels every running task: ``ray.cancel`` first,
which lets each worker stop its agents' process groups; after ``cancel_grace_s`` the tasks
still running are cancelled with ``force=True`` (their workers are killed) and every node
reaps the processes the batch's agents left (:mod:`orchestrator_nb.scaleout.cancel`).
Tasks that did not finish are not journaled, so a re-run does them and only them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._sync import run_sync
from ..batch import _check, _folder, _from_journal, _resumed
from ..batching.journal import BatchJournal
from ..batching.progress import ProgressCallback, Tracker, choose_display
from ..batching.result import BatchResult, BatchRow, workflow_result_from_dict
from ..batching.tasks import TasksArg, load_tasks
from ..config import Settings, load_settings
from ..errors import ConfigError
from ..lifecycle import StepStarted
from ..rehearsal.scenario import Scenario, load_scenario
from ..rehearsal.session import Rehearsal
from ..workflow.policies import BudgetExceeded
from ..workflow.result import Outcome, WorkflowResult
from ..workspace import new_run_id
from . import repo
from ._ray import connect, ray_address, require_ray
from .caps import AgentCall, resolve_caps
from .coordinator import Coordinator, Spend
from .worker import SharedRehearsal, TaskJob, reap_on_node, run_task

WAIT_S = 0.5  # how often the driver looks at reports, the budget and `cancel`
REAP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class BatchBudget:
    """Limits on what the whole batch may spend; crossing one stops the batch."""

    max_cost_usd: float | None = None
    max_tokens: int | None = None

    @classmethod
    def from_arg(cls, value: BatchBudget | Mapping[str, Any] | None) -> BatchBudget:
        if value is None or isinstance(value, BatchBudget):
            return value or cls()
        unknown = set(value) - {"max_cost_usd", "max_tokens"}
        if unknown:
            raise ConfigError(
                f"unknown batch budget key(s) {', '.join(sorted(unknown))}",
                key="batch_budget",
                hint="accepted: max_cost_usd, max_tokens",
            )
        for key, limit in value.items():
            if limit is not None and (isinstance(limit, bool) or not limit > 0):
                raise ConfigError(
                    f"batch_budget {key} must be a positive number, not {limit!r}",
                    key=f"batch_budget.{key}",
                    hint="leave it out for no limit",
                )
        tokens = value.get("max_tokens")
        cost = value.get("max_cost_usd")
        return cls(
            float(cost) if cost is not None else None, int(tokens) if tokens is not None else None
        )

    def exceeded(self, spent: Spend) -> BudgetExceeded | None:
        if self.max_cost_usd is not None and spent.cost_usd > self.max_cost_usd:
            return BudgetExceeded("max_cost_usd", spent.cost_usd, self.max_cost_usd)
        if self.max_tokens is not None and spent.tokens > self.max_tokens:
            return BudgetExceeded("max_tokens", spent.tokens, self.max_tokens)
        return None


@dataclass
class RayBatchResult(BatchResult):
    """A :class:`BatchResult` that also says where each task ran and when agents held caps."""

    executor: str = "ray"
    nodes: dict[str, str] = field(default_factory=dict)  # task id → Ray node id
    calls: list[AgentCall] = field(default_factory=list)  # this run's agent calls
    caps: dict[str, dict[str, int]] = field(default_factory=dict)  # agent → cap, peak, waited

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["executor"] = self.executor
        out["nodes"] = dict(self.nodes)
        out["caps"] = {agent: dict(stats) for agent, stats in self.caps.items()}
        return out


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
    settings = config if isinstance(config, Settings) else load_settings(config, cwd=root)
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
        book.start(
            {"batch_id": batch_id, "workspace": str(root), "isolation": "worktree"}
            | {"executor": "ray"}
        )
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
                dispatch = _Dispatch(
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


@dataclass
class _Attempt:
    job: TaskJob
    ref: Any


class _Dispatch:
    """Submits the jobs, follows them with ``ray.wait``, journals results, stops on demand."""

    def __init__(
        self,
        ray: Any,
        *,
        book: BatchJournal,
        tracker: Tracker,
        result: RayBatchResult,
        rows: dict[str, BatchRow],
        results: dict[str, WorkflowResult],
        budget: BatchBudget,
        cancel: asyncio.Event | None,
        grace_s: float,
        max_concurrency: int,
        options: dict[str, Any],
        toplevel: Path,
        commit: str,
    ) -> None:
        self.ray = ray
        self.book = book
        self.tracker = tracker
        self.result = result
        self.rows = rows
        self.results = results
        self.budget = budget
        self.cancel = cancel
        self.grace_s = grace_s
        self.max_concurrency = max_concurrency
        self.options = options
        self.toplevel = toplevel
        self.commit = commit
        self.session = secrets.token_hex(4)
        self.running: dict[Any, _Attempt] = {}  # ref → attempt
        self.collected_owners: set[str] = set()  # attempts whose spend came with their result
        self.spent_collected = Spend()
        self.spent_before = Spend()
        for row in rows.values():  # what the journal's tasks cost counts against the budget
            self.spent_before.add(row.to_dict())
        self.spent_by_owner: dict[str, dict[str, Any]] = {}
        self.seen = 0
        self.coordinator: Any = None
        self.stopped: tuple[Outcome, str] | None = None

    async def run(
        self, jobs: list[TaskJob], bundle: bytes, caps: dict[str, int], *, reap_earlier: bool
    ) -> None:
        ray = self.ray
        actor = ray.remote(num_cpus=0, max_restarts=0)(Coordinator)
        self.coordinator = actor.remote(caps)
        remote = ray.remote(num_cpus=1, max_retries=0)(run_task)
        batch_id = jobs[0].batch_id
        # Agents a dead driver's tasks left running would spend alongside this run's.
        earlier = (
            self._reap(f"{batch_id}/", keep=f"{batch_id}/{self.session}/") if reap_earlier else []
        )
        bundle_ref = ray.put(bundle)
        queue = deque(jobs)
        try:
            while queue or self.running:
                while queue and self.stopped is None and len(self.running) < self.max_concurrency:
                    job = queue.popleft()
                    options = {"name": f"orchestrator-nb {job.spec.id}", **self.options}
                    ref = remote.options(**options).remote(job, bundle_ref, self.coordinator)
                    self.running[ref] = _Attempt(job, ref)
                if self.stopped is not None:
                    break
                ready = await asyncio.to_thread(self._wait)
                for ref in ready:
                    await self._collect(self.running.pop(ref))
                await self._poll()
                self._check_stop()
            if self.stopped is not None:
                await self._stop_running()
                for job in queue:
                    self._unfinished(job, *self.stopped, started=False)
        except BaseException:
            # Interrupted (the kernel's Interrupt, a cancelled task): no task outlives the batch.
            self.stopped = self.stopped or ("cancelled", "the batch was interrupted")
            await asyncio.shield(self._stop_running())
            raise
        finally:
            await self._finish(earlier)

    # -- following the tasks --------------------------------------------------------------

    def _wait(self) -> list[Any]:
        ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=WAIT_S)
        return list(ready)

    async def _collect(self, attempt: _Attempt, timeout: float | None = None) -> None:
        """A finished ref: journal its result, or report what went wrong."""
        job = attempt.job
        self.coordinator.release_owner.remote(job.owner)
        try:
            payload: dict[str, Any] = await asyncio.to_thread(
                self.ray.get, attempt.ref, timeout=timeout
            )
        except Exception as exc:
            self._lost(job, exc)
            return
        self.collected_owners.add(job.owner)
        note: str | None = None
        try:
            bundle = payload.get("bundle")
            await asyncio.to_thread(
                repo.import_branch, self.toplevel, str(payload["branch"]), self.commit, bundle
            )
        except Exception as exc:
            note = f"{job.spec.id}: its branch could not be fetched from the worker: {exc}"
            self.result.notes.append(" ".join(note.split()))
        row = BatchRow.from_dict(payload["row"])
        done = workflow_result_from_dict(payload["result"], None)
        if note:
            done.notes.append(note)
        calls = [AgentCall.from_dict(c) for c in payload.get("calls", [])]
        self.book.record(
            {
                "id": job.spec.id,
                "task": job.spec.task,
                "row": row.to_dict(),
                "result": payload["result"],
                "node": payload["node"],
                "calls": [c.to_dict() for c in calls],
            }
        )
        self.rows[job.spec.id], self.results[job.spec.id] = row, done
        self.spent_collected.add(row.to_dict())
        self.result.nodes[job.spec.id] = str(payload["node"])
        self.result.calls.extend(calls)
        self.tracker.finished_task(row)

    def _lost(self, job: TaskJob, exc: Exception) -> None:
        """The task raised, was cancelled, or its worker or node died: not journaled."""
        if self.stopped is not None:  # cancelled by the stop, or its worker killed by it
            self._unfinished(job, *self.stopped, started=True)
            return
        name = type(exc).__name__
        text = " ".join(str(exc).split())[-500:]
        self._unfinished(job, "failed", f"{name}: {text} (not journaled: it runs again)", True)

    def _unfinished(self, job: TaskJob, outcome: Outcome, why: str, started: bool) -> None:
        spec = job.spec
        name = spec.workflow or job.workflow
        error = why if started else f"{why}; not started"
        self.rows[spec.id] = BatchRow(spec.id, name, spec.task, outcome, where="", error=error)
        self.results[spec.id] = WorkflowResult("", name, spec.task, outcome, error=error)
        self.tracker.finished_task(self.rows[spec.id])

    async def _poll(self) -> None:
        """The workers' reports (progress) and what running attempts have spent."""
        try:
            news = await asyncio.to_thread(self.ray.get, self.coordinator.poll.remote(self.seen))
        except Exception:  # progress is best effort; the results themselves come from ray.wait
            return
        self.seen = int(news["next"])
        self.spent_by_owner = dict(news["spend"])
        live = {a.job.owner for a in self.running.values()}
        for report in news["reports"]:
            if report.get("owner") not in live:
                continue  # a late report of a task already done
            task_id = str(report.get("task"))
            if report["kind"] == "started":
                self.result.nodes[task_id] = str(report.get("node"))
                self.tracker.started(task_id)
            elif report["kind"] == "step":
                event = StepStarted("", str(report.get("step")), report.get("agent"), "agent")
                self.tracker.on_lifecycle(task_id, event)

    def spent(self) -> Spend:
        """The journal's tasks, this run's collected results, and what the attempts still
        running (or cut short) reported so far."""
        total = Spend()
        for part in (self.spent_before, self.spent_collected):
            total.add(part.to_dict())
        for owner, spend in self.spent_by_owner.items():
            if owner not in self.collected_owners:
                total.add(spend)
        return total

    def _check_stop(self) -> None:
        if self.stopped is not None:
            return
        if self.cancel is not None and self.cancel.is_set():
            self.stopped = ("cancelled", "stopped on request")
            return
        exceeded = self.budget.exceeded(self.spent())
        if exceeded is not None:
            self.stopped = ("budget_exceeded", f"batch {exceeded.message}")
            self.result.notes.append(f"the batch stopped: {exceeded.message}")

    # -- stopping -------------------------------------------------------------------------

    async def _stop_running(self) -> None:
        """Cancel every running task; force and reap what does not stop within the grace."""
        if not self.running:
            return
        ray = self.ray
        everyone = list(self.running)
        owners = [a.job.owner for a in self.running.values()]
        try:
            ask = self.coordinator.stopping.remote(owners)
            spared = set(await asyncio.to_thread(ray.get, ask, timeout=10))
        except Exception:
            spared = set()
        refs = [ref for ref in everyone if self.running[ref].job.owner not in spared]
        done: list[Any] = []
        if refs and self.grace_s > 0:  # no grace: straight to force, the workers get no say
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=False)
            done, _ = await asyncio.to_thread(
                ray.wait, refs, num_returns=len(refs), timeout=self.grace_s
            )
        stopped = set(done)
        left = [ref for ref in refs if ref not in stopped]
        for ref in left:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        if left:
            killed = tuple(self.running[ref].job for ref in left)
            reaping = self._reap(f"{killed[0].batch_id}/{self.session}/", jobs=killed)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(ray.get, reaping, timeout=REAP_TIMEOUT_S)
            self.result.notes.append(
                f"{len(left)} task(s) did not stop within {self.grace_s:g} s: their workers "
                "were killed and every node reaped their agents"
            )
        for ref in everyone:
            # Tasks that were finishing (or finished just before the cancel) keep their result.
            await self._collect(self.running.pop(ref), timeout=REAP_TIMEOUT_S)

    def _reap(
        self, prefix: str, *, keep: str | None = None, jobs: tuple[TaskJob, ...] = ()
    ) -> list[Any]:
        """Start :func:`reap_on_node` on every live node; returns the refs."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self.ray
        task = ray.remote(num_cpus=0, max_retries=0)(reap_on_node)
        refs = []
        for node in ray.nodes():
            if node.get("Alive"):
                where = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
                refs.append(task.options(scheduling_strategy=where).remote(prefix, keep, jobs))
        return refs

    async def _finish(self, earlier: list[Any]) -> None:
        ray = self.ray
        with contextlib.suppress(Exception):
            self.result.caps = dict(
                await asyncio.to_thread(ray.get, self.coordinator.stats.remote(), timeout=10)
            )
        if earlier:
            with contextlib.suppress(Exception):
                found = await asyncio.to_thread(ray.get, earlier, timeout=REAP_TIMEOUT_S)
                killed = sum(len(pids) for _node, pids in found)
                if killed:
                    self.result.notes.append(
                        f"stopped {killed} agent process(es) left by an earlier run of the batch"
                    )
        with contextlib.suppress(Exception):
            ray.kill(self.coordinator)


__all__ = ["BatchBudget", "RayBatchResult", "abatch_ray", "batch_ray"]
