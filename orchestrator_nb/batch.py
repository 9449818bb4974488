"""Many tasks, each in its own worktree or copy, with a durable journal and a summary table.

::

    from orchestrator_nb.batch import batch

    result = batch(["Add a README", "Write tests for calc.py"], "quick", max_concurrency=2)
    result                       # the summary table: outcome, tokens, cost, time, branch
    result.to_csv("batch.csv")

``tasks`` is a list of strings, a list of ``{id, task, workflow?, vars?}`` mappings, or the path
of a ``.txt`` (one task per line), ``.jsonl`` or ``.yaml`` file. All tasks share one engine, so
the configured concurrency caps, rate limits and circuit breakers hold across the batch, and one
rehearsal server when ``rehearsal`` names a scenario. A batch that crashed resumes when it is
run again with the same ``journal=`` (``result.journal`` names it): finished tasks are taken
from the journal, the others start again.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

from ._sync import run_sync
from .batching.isolation import Isolator, Place
from .batching.journal import BatchJournal
from .batching.progress import BatchProgress, ProgressCallback, Tracker, choose_display
from .batching.result import BatchResult, BatchRow, workflow_result_from_dict
from .batching.tasks import BatchTask, TasksArg, load_tasks
from .config import Settings, load_settings
from .errors import ConfigError, RunError, WorkspaceError
from .lifecycle import EventBus
from .observe.checks import check_task
from .runs.service import open_rehearsal
from .workflow.api import arun
from .workflow.engine import Engine, apply_overrides
from .workflow.result import WorkflowResult
from .workspace import new_run_id


async def abatch(
    tasks: TasksArg,
    workflow: str = "default",
    *,
    workspace: str | os.PathLike[str] = ".",
    max_concurrency: int = 2,
    journal: str | os.PathLike[str] | None = None,
    config: Settings | str | os.PathLike[str] | None = None,
    rehearsal: Any = None,
    isolation: str = "auto",
    on_progress: ProgressCallback | None = None,
    progress: bool | None = None,
    retry_failed: bool = False,
    executor: str = "local",
    **overrides: Any,
) -> BatchResult:
    """Run ``workflow`` on every task, at most ``max_concurrency`` tasks at once.

    ``isolation``: ``"worktree"`` (a git worktree and branch per task), ``"copy"`` (a copy of
    the folder per task) or ``"auto"`` (worktree in a git workspace). ``progress=False`` hides
    the progress display; ``on_progress`` receives a :class:`BatchProgress` after each change.
    ``retry_failed`` runs tasks again that the journal records as not completed.
    ``overrides`` go to every run: ``max_iterations``, ``max_cost_usd``, ``max_tokens``, ...

    ``executor``: ``"local"``, or ``"ray"``, ``"auto"``, ``"ray://host:10001"`` or ``"host:port"``
    to run each task on a Ray cluster; then ``caps``, ``batch_budget``, ``cancel``,
    ``cancel_grace_s``, ``worker_dir`` and ``task_options`` are accepted too (see
    :func:`orchestrator_nb.scaleout.abatch_ray`).
    """
    if executor != "local":
        from .scaleout import abatch_ray

        return await abatch_ray(
            tasks,
            workflow,
            executor=executor,
            workspace=workspace,
            max_concurrency=max_concurrency,
            journal=journal,
            config=config,
            rehearsal=rehearsal,
            isolation=isolation,
            on_progress=on_progress,
            progress=progress,
            retry_failed=retry_failed,
            **overrides,
        )
    root = _folder(workspace)
    specs = load_tasks(tasks)
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
        raise ConfigError("max_concurrency must be a whole number", key="max_concurrency")
    if max_concurrency < 1:
        raise ConfigError(
            f"max_concurrency must be at least 1, not {max_concurrency}",
            key="max_concurrency",
            hint="pass 1 to run the tasks one after another",
        )
    settings = config if isinstance(config, Settings) else load_settings(config, cwd=root)
    _check(specs, workflow, settings, overrides)

    path = Path(journal).expanduser().resolve() if journal is not None else None
    batch_id = new_run_id()
    if path is None:
        path = root / ".orchestrator" / "batches" / batch_id / "journal.jsonl"
    with BatchJournal(path) as book:
        if book.header is not None:
            batch_id, isolation = _resumed(book, root, isolation)
        isolator = Isolator(root, batch_id, isolation)
        book.start({"batch_id": batch_id, "workspace": str(root), "isolation": isolator.mode})
        result = BatchResult(batch_id, str(root), str(path), isolator.mode)
        if isolator.uncommitted:
            result.notes.append("the workspace has uncommitted changes; tasks began from HEAD")
        rows, results, pending = _from_journal(book, specs, retry_failed)
        engine = Engine(settings, bus=EventBus())
        display = choose_display(progress, sys.stderr)
        tracker = Tracker(len(specs), list(rows.values()), on_progress, display, journal=str(path))
        gate = asyncio.Semaphore(max_concurrency)

        async def one(spec: BatchTask, reh: Any) -> None:
            async with gate:
                row, done = await _run_task(
                    spec, workflow, isolator, engine, reh, tracker, overrides
                )
            record = {"id": spec.id, "task": spec.task, "row": row.to_dict()}
            book.record({**record, "result": done.to_dict()})
            rows[spec.id], results[spec.id] = row, done
            tracker.finished_task(row)

        tracker.begin()
        try:
            # One rehearsal server for the whole batch (none when nothing is left to run).
            scenario = rehearsal if pending else None
            async with open_rehearsal(scenario, workspace=root, session=None) as reh:
                jobs = [asyncio.ensure_future(one(spec, reh)) for spec in pending]
                try:
                    await asyncio.gather(*jobs)
                finally:
                    # Whatever ended the batch, no task outlives it (or its rehearsal server).
                    for job in jobs:
                        job.cancel()
                    await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            tracker.end()
    result.rows = [rows[s.id] for s in specs]
    result.results = {s.id: results[s.id] for s in specs}
    return result


def batch(
    tasks: TasksArg,
    workflow: str = "default",
    *,
    workspace: str | os.PathLike[str] = ".",
    max_concurrency: int = 2,
    journal: str | os.PathLike[str] | None = None,
    config: Settings | str | os.PathLike[str] | None = None,
    rehearsal: Any = None,
    isolation: str = "auto",
    on_progress: ProgressCallback | None = None,
    progress: bool | None = None,
    retry_failed: bool = False,
    executor: str = "local",
    **overrides: Any,
) -> BatchResult:
    """The sync form of :func:`abatch`; works inside a running Jupyter kernel too."""
    return run_sync(
        lambda: abatch(
            tasks,
            workflow,
            workspace=workspace,
            max_concurrency=max_concurrency,
            journal=journal,
            config=config,
            rehearsal=rehearsal,
            isolation=isolation,
            on_progress=on_progress,
            progress=progress,
            retry_failed=retry_failed,
            executor=executor,
            **overrides,
        )
    )


def _folder(workspace: str | os.PathLike[str]) -> Path:
    path = Path(workspace).expanduser()
    if not path.is_dir():
        raise WorkspaceError(
            f"workspace {str(path)!r} is not an existing folder",
            hint="create it first, or pass the folder the tasks should work on",
        )
    return path.resolve()


def _check(
    specs: list[BatchTask], workflow: str, settings: Settings, overrides: dict[str, Any]
) -> None:
    """Everything that would fail every task, found before any task starts."""
    for spec in specs:
        try:
            check_task(spec.task)
        except ConfigError as exc:
            raise ConfigError(
                f"task {spec.id!r}: {exc.message}", key="task", hint=exc.hint
            ) from None
    for name in sorted({spec.workflow or workflow for spec in specs}):
        if name not in settings.workflows:
            users = [s.id for s in specs if (s.workflow or workflow) == name]
            known = ", ".join(sorted(settings.workflows)) or "none"
            raise ConfigError(
                f"unknown workflow {name!r} (tasks {', '.join(users[:5])}; known: {known})",
                key="workflow",
                hint="define it under `workflows:` in ./orchestrator.yaml",
            )
        apply_overrides(settings.workflows[name], overrides)  # unknown overrides fail here


def _resumed(book: BatchJournal, root: Path, isolation: str) -> tuple[str, str]:
    header = book.header or {}
    recorded = str(header.get("workspace", ""))
    if recorded != str(root):
        raise ConfigError(
            f"the journal belongs to a batch in {recorded}, not in {root}",
            path=str(book.path),
            hint=f"pass workspace={recorded!r}, or a new journal",
        )
    mode = str(header.get("isolation", "auto"))
    if isolation not in ("auto", mode):
        raise ConfigError(
            f"the journal's batch used isolation={mode!r}, not {isolation!r}",
            path=str(book.path),
            hint="resume with the same isolation, or use a new journal",
        )
    return str(header["batch_id"]), mode


def _from_journal(
    book: BatchJournal, specs: list[BatchTask], retry_failed: bool
) -> tuple[dict[str, BatchRow], dict[str, WorkflowResult], list[BatchTask]]:
    rows: dict[str, BatchRow] = {}
    results: dict[str, WorkflowResult] = {}
    pending: list[BatchTask] = []
    for spec in specs:
        record = book.finished.get(spec.id)
        if record is not None and record.get("task") != spec.task:
            raise ConfigError(
                f"task {spec.id!r} is not the task the journal recorded under that id",
                path=str(book.path),
                hint="use a new journal, or give the changed task another id",
            )
        try:
            row = BatchRow.from_dict({**record["row"], "resumed": True}) if record else None
        except (KeyError, TypeError):
            row = None  # an unreadable record: the task runs again
        if row is None or (retry_failed and not row.ok):
            pending.append(spec)
            continue
        rows[spec.id] = row
        assert record is not None
        results[spec.id] = workflow_result_from_dict(record.get("result") or {}, None)
    return rows, results, pending


async def _run_task(
    spec: BatchTask,
    workflow: str,
    isolator: Isolator,
    engine: Engine,
    rehearsal: Any,
    tracker: Tracker,
    overrides: dict[str, Any],
) -> tuple[BatchRow, WorkflowResult]:
    name = spec.workflow or workflow
    started = time.monotonic()
    place: Place | None = None
    tracker.started(spec.id)
    own = _task_engine(engine)
    own.bus.subscribe(lambda event: tracker.on_lifecycle(spec.id, event))
    try:
        place = await asyncio.to_thread(isolator.prepare, spec.id)
        result = await arun(
            spec.task,
            name,
            workspace=place.path,
            engine=own,
            rehearsal=rehearsal,
            variables=dict(spec.vars),
            **overrides,
        )
    except asyncio.CancelledError:
        # Not journaled, so the task starts afresh when the batch resumes: drop its half-work.
        if place is not None:
            isolator.discard(place)
        raise
    except Exception as exc:  # one task's trouble must not stop the others
        error = " ".join(str(exc).split())
        result = WorkflowResult(
            "",
            name,
            spec.task,
            "failed",
            error=RunError.for_kind("failed", f"{type(exc).__name__}: {error}"),
        )
    if place is not None:
        first = spec.task.strip().splitlines()[0][:60]
        message = f"{spec.id}: {first}\n\norchestrator-nb batch {isolator.batch_id}, "
        message += f"workflow {name}: {result.outcome}"
        try:
            await asyncio.to_thread(isolator.finish, place, message)
        except Exception as exc:
            result.notes.append(f"the result could not be committed: {exc}")
    usage = result.usage
    row = BatchRow(
        id=spec.id,
        workflow=name,
        task=spec.task,
        outcome=result.outcome,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage.cost_usd,
        seconds=round(time.monotonic() - started, 3),
        where=place.where if place is not None else "",
        error=result.error.message if result.error is not None else None,
    )
    if place is not None and place.branch is not None:
        result.workspace = None  # the worktree is gone; the branch holds the result
    return row, result


def _task_engine(shared: Engine) -> Engine:
    """An engine for one task: a bus of its own, the batch's concurrency caps, breakers and rates.

    Each run wires logs, metrics and the audit trail to its engine's bus; on one bus shared by
    concurrent runs, every run's subscribers would also record the other runs' events (into the
    wrong workspace). The policy state is what must be shared across tasks, so that is shared.
    """
    own = Engine(shared.settings, registry=shared.registry, bus=EventBus())
    own.limits, own.breakers, own.rates = shared.limits, shared.breakers, shared.rates
    return own


class _CallableModule(types.ModuleType):
    """``orchestrator_nb.batch`` is this module once it is imported, and the issue asks that
    ``orchestrator_nb.batch(tasks, ...)`` work: so the module calls :func:`batch`."""

    def __call__(self, *args: Any, **kwargs: Any) -> BatchResult:
        return batch(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["BatchProgress", "BatchResult", "BatchRow", "BatchTask", "abatch", "batch", "load_tasks"]
