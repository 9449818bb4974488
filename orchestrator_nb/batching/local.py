"""The local executor: every task in this process, in a worktree or copy of its own.

All tasks share one engine's policy state, so the configured concurrency caps, rate limits and
circuit breakers hold across the batch; each task's engine has a bus of its own (each run wires
logs, metrics and its audit trail to its engine's bus; on a shared bus every run would also
record the other runs' events, into the wrong workspace). A scenario given as ``rehearsal``
starts one server for the whole batch.
"""

from __future__ import annotations

import asyncio
import time

from ..lifecycle import EventBus
from ..rehearsal.endpoint import RehearsalEndpoint, rehearsal_scope
from ..workflow.engine import Engine
from ..workflow.result import WorkflowResult
from .isolation import Isolator, Place
from .preamble import Batch
from .result import BatchResult, BatchRow
from .task_run import commit_message, failed_result, run_task_workflow, task_row
from .tasks import BatchTask


class LocalExecutor:
    """Runs the batch's tasks here, at most ``max_concurrency`` at once."""

    name = "local"

    def __init__(self) -> None:
        self._isolator: Isolator | None = None

    def start(self, batch: Batch) -> BatchResult:
        isolator = Isolator(batch.root, batch.batch_id, batch.isolation)
        self._isolator = isolator
        result = BatchResult(batch.batch_id, str(batch.root), str(batch.journal), isolator.mode)
        if isolator.uncommitted:
            result.notes.append("the workspace has uncommitted changes; tasks began from HEAD")
        return result

    async def run(self, batch: Batch, pending: list[BatchTask]) -> None:
        isolator = self._isolator
        assert isolator is not None, "start() comes first"
        shared = Engine(batch.settings, bus=EventBus())
        gate = asyncio.Semaphore(batch.max_concurrency)
        # Worktrees are made ahead of a free seat, so a seat waits on no checkout; at most
        # this many tasks are prepared or running at once.
        ahead = asyncio.Semaphore(2 * batch.max_concurrency)

        async def one(spec: BatchTask, reh: RehearsalEndpoint | None) -> None:
            # An engine per task: a bus of its own, the batch's policy state.
            engine = Engine(
                shared.settings,
                registry=shared.registry,
                bus=EventBus(),
                limits=shared.limits,
                breakers=shared.breakers,
                rates=shared.rates,
            )
            async with ahead:
                ready = await _prepare(spec, batch, isolator)
                try:
                    await gate.acquire()
                except asyncio.CancelledError:  # stopped before its turn: nothing to keep
                    if ready[0] is not None:
                        isolator.discard(ready[0])
                    raise
                try:
                    row, done = await _run_task(spec, batch, isolator, engine, reh, ready)
                finally:
                    gate.release()
            batch.record(spec, row, done)

        with rehearsal_scope(batch.rehearsal) as reh:
            jobs = [asyncio.ensure_future(one(spec, reh)) for spec in pending]
            try:
                await asyncio.gather(*jobs)
            finally:
                # Whatever ended the batch, no task outlives it (or its rehearsal server).
                for job in jobs:
                    job.cancel()
                await asyncio.gather(*jobs, return_exceptions=True)


async def _prepare(
    spec: BatchTask, batch: Batch, isolator: Isolator
) -> tuple[Place | None, Exception | None, float]:
    """The task's worktree or copy, made before it has a seat; a failure is reported by the run."""
    start = time.monotonic()
    try:
        place = await asyncio.to_thread(isolator.prepare, spec.id)
    except Exception as exc:  # reported as the task's failure, in its turn
        return None, exc, time.monotonic() - start
    return place, None, time.monotonic() - start


async def _run_task(
    spec: BatchTask,
    batch: Batch,
    isolator: Isolator,
    engine: Engine,
    rehearsal: RehearsalEndpoint | None,
    ready: tuple[Place | None, Exception | None, float],
) -> tuple[BatchRow, WorkflowResult]:
    place, failure, prepared_s = ready
    started = time.monotonic() - prepared_s  # the task's time includes making its worktree
    tracker = batch.tracker
    if tracker is not None:
        tracker.started(spec.id)
        engine.bus.subscribe(lambda event: tracker.on_lifecycle(spec.id, event))
    try:
        if failure is not None:
            raise failure
        assert place is not None
        result = await run_task_workflow(
            spec,
            batch.workflow,
            workspace=place.path,
            engine=engine,
            rehearsal=rehearsal,
            overrides=batch.overrides,
        )
    except asyncio.CancelledError:
        # Not journaled, so the task starts afresh when the batch resumes: drop its half-work.
        if place is not None:
            isolator.discard(place)
        raise
    except Exception as exc:  # one task's trouble must not stop the others
        result = failed_result(spec, batch.workflow, exc)
    if place is not None:
        message = commit_message(isolator.batch_id, spec, batch.workflow, result.outcome)
        try:
            await asyncio.to_thread(isolator.finish, place, message)
        except Exception as exc:
            result.notes.append(f"the result could not be committed: {exc}")
    where = place.where if place is not None else ""
    row = task_row(spec, batch.workflow, result, time.monotonic() - started, where)
    if place is not None and place.branch is not None:
        result.workspace = None  # the worktree is gone; the branch holds the result
    return row, result


__all__ = ["LocalExecutor"]
