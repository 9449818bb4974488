"""The driver's loop: submit the tasks, follow them with ``ray.wait``, journal what finishes.

Every task goes out with ``max_retries=0`` (a task that ran half-way is not paid for twice behind
the user's back); each result is journaled as it arrives, so a batch whose driver died resumes.
Tasks lost with their worker or node are reported failed but not journaled: they run again.

Stopping (an interrupt, ``cancel``, the batch budget) submits nothing more and cancels what
runs: ``ray.cancel`` first, so each worker stops its agents' process groups itself; after the
grace, ``force=True`` (the workers are killed) and :func:`~.worker.reap_on_node` on every node.
Attempts whose workflow is already over are spared: their work is done and paid for.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..batching.preamble import Batch
from ..batching.progress import Tracker
from ..batching.result import BatchRow, workflow_result_from_dict
from ..display import plural
from ..errors import RunError
from ..lifecycle import StepStarted
from ..observe.redact import clip_tail
from ..workflow.result import Outcome, WorkflowResult
from . import repo
from .caps import AgentCall
from .coordinator import Coordinator, Spend
from .result import BatchBudget, RayBatchResult
from .worker import TaskJob, reap_on_node, run_task

WAIT_S = 0.5  # how often the driver looks at reports, the budget and `cancel`
REAP_TIMEOUT_S = 60.0


@dataclass
class _Attempt:
    job: TaskJob
    ref: Any


class Dispatch:
    """Submits the jobs, follows them with ``ray.wait``, journals results, stops on demand."""

    def __init__(
        self,
        ray: Any,
        *,
        batch: Batch,
        tracker: Tracker,
        result: RayBatchResult,
        budget: BatchBudget,
        cancel: asyncio.Event | None,
        grace_s: float,
        max_concurrency: int,
        options: dict[str, Any],
        toplevel: Path,
        commit: str,
    ) -> None:
        self.ray = ray
        self.batch = batch
        self.tracker = tracker
        self.result = result
        self.rows = batch.rows
        self.results = batch.results
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
        for row in batch.rows.values():  # what the journal's tasks cost counts against the budget
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
            with contextlib.suppress(Exception):  # what interrupted the batch is the news
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
        self.spent_collected.add(row.to_dict())
        self.result.nodes[job.spec.id] = str(payload["node"])
        self.result.calls.extend(calls)
        self.batch.record(
            job.spec,
            row,
            done,
            data=payload["result"],
            node=payload["node"],
            calls=[c.to_dict() for c in calls],
        )

    def _lost(self, job: TaskJob, exc: Exception) -> None:
        """The task raised, was cancelled, or its worker or node died: not journaled."""
        if self.stopped is not None:  # cancelled by the stop, or its worker killed by it
            self._unfinished(job, *self.stopped, started=True)
            return
        name = type(exc).__name__
        text = clip_tail(" ".join(str(exc).split()), 500)
        self._unfinished(job, "failed", f"{name}: {text} (not journaled: it runs again)", True)

    def _unfinished(self, job: TaskJob, outcome: Outcome, why: str, started: bool) -> None:
        spec = job.spec
        name = spec.workflow or job.workflow
        error = why if started else f"{why}; not started"
        self.rows[spec.id] = BatchRow(spec.id, name, spec.task, outcome, where="", error=error)
        self.results[spec.id] = WorkflowResult(
            "", name, spec.task, outcome, error=RunError.for_kind(outcome, error)
        )
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
                f"{plural(len(left), 'task')} did not stop within {self.grace_s:g} s: "
                "their workers "
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
                        f"stopped {plural(killed, 'agent process')} "
                        "left by an earlier run of the batch"
                    )
        with contextlib.suppress(Exception):
            ray.kill(self.coordinator)


__all__ = ["Dispatch"]
