"""The one preamble every batch goes through, whichever executor runs its tasks.

It checks the folder, the tasks, the concurrency and every task's workflow before anything
starts; opens (and locks) the journal; resumes from it — a journal written by an earlier run
gives its batch id and isolation, and its finished tasks are taken as they are — writes the
header; runs the progress display; and hands the executor only the tasks left to run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import _settings
from ..config import Settings
from ..errors import ConfigError
from ..observe.checks import check_task, existing_workspace
from ..observe.redact import redact
from ..rehearsal.endpoint import RehearsalArg
from ..workflow.engine import apply_overrides
from ..workflow.result import WorkflowResult
from ..workspace import StateDir, new_run_id
from .executor import Executor
from .journal import BatchJournal
from .progress import ProgressCallback, Tracker, choose_display
from .result import BatchResult, BatchRow, workflow_result_from_dict
from .tasks import BatchTask, TasksArg, load_tasks


@dataclass(frozen=True)
class BatchPlan:
    """What the user asked for, before anything is checked."""

    tasks: TasksArg
    workflow: str = "default"
    workspace: str | os.PathLike[str] = "."
    max_concurrency: int = 2
    journal: str | os.PathLike[str] | None = None
    config: Settings | str | os.PathLike[str] | None = None
    rehearsal: RehearsalArg = None
    isolation: str = "auto"
    on_progress: ProgressCallback | None = None
    progress: bool | None = None
    retry_failed: bool = False
    overrides: Mapping[str, Any] = field(default_factory=dict)
    trust: bool | None = None  # True trusts the workspace for this batch (see trust_store)


@dataclass
class Batch:
    """One run of a checked batch with its journal open, as an executor gets it."""

    batch_id: str
    root: Path
    specs: list[BatchTask]
    workflow: str
    settings: Settings
    overrides: dict[str, Any]
    max_concurrency: int
    isolation: str  # as asked, or as the resumed journal recorded it
    rehearsal: RehearsalArg
    book: BatchJournal
    rows: dict[str, BatchRow]
    results: dict[str, WorkflowResult]
    tracker: Tracker | None = None

    @property
    def resumed(self) -> bool:
        """An earlier run of this batch wrote the journal."""
        return self.book.header is not None

    @property
    def journal(self) -> Path:
        return self.book.path

    def record(
        self,
        spec: BatchTask,
        row: BatchRow,
        done: WorkflowResult,
        data: dict[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        """A finished task: journaled durably first, then counted and shown."""
        self.book.record(
            {
                "id": spec.id,
                "task": spec.task,
                "row": row.to_dict(),
                "result": done.to_dict() if data is None else data,
                **extra,
            }
        )
        self.rows[spec.id], self.results[spec.id] = row, done
        if self.tracker is not None:
            self.tracker.finished_task(row)


async def run_batch(executor: Executor, plan: BatchPlan) -> BatchResult:
    """Check, journal and resume ``plan``, and let ``executor`` run what is left."""
    root = existing_workspace(plan.workspace)
    specs = load_tasks(plan.tasks)
    check_concurrency(plan.max_concurrency)
    settings = _settings(plan.config, root, plan.trust)
    overrides = dict(plan.overrides)
    check_tasks(specs, plan.workflow, settings, overrides)

    batch_id = new_run_id()
    if plan.journal is not None:
        path = Path(plan.journal).expanduser().resolve()
    else:
        path = StateDir(root).sub("batches", batch_id, "journal.jsonl")
    with BatchJournal(path) as book:
        isolation = plan.isolation
        if book.header is not None:
            batch_id, isolation = resumed_header(book, root, isolation)
        rows, results, pending = from_journal(book, specs, plan.retry_failed)
        batch = Batch(
            batch_id,
            root,
            specs,
            plan.workflow,
            settings,
            overrides,
            plan.max_concurrency,
            isolation,
            plan.rehearsal,
            book,
            rows,
            results,
        )
        result = executor.start(batch)
        header = {"batch_id": batch_id, "workspace": str(root), "isolation": result.isolation}
        book.start({**header, "executor": executor.name})
        display = choose_display(plan.progress, sys.stderr)
        tracker = Tracker(
            len(specs), list(rows.values()), plan.on_progress, display, journal=str(path)
        )
        batch.tracker = tracker
        tracker.begin()
        try:
            if pending:
                await executor.run(batch, pending)
        finally:
            tracker.end()
    result.rows = [rows[s.id] for s in specs]
    result.results = {s.id: results[s.id] for s in specs}
    return result


def check_concurrency(value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError("max_concurrency must be a whole number", key="max_concurrency")
    if value < 1:
        raise ConfigError(
            f"max_concurrency must be at least 1, not {value}",
            key="max_concurrency",
            hint="pass 1 to run the tasks one after another",
        )


def check_tasks(
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


def resumed_header(book: BatchJournal, root: Path, isolation: str) -> tuple[str, str]:
    """The batch id and isolation of the journal's batch, which must be this folder's."""
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


def from_journal(
    book: BatchJournal, specs: list[BatchTask], retry_failed: bool
) -> tuple[dict[str, BatchRow], dict[str, WorkflowResult], list[BatchTask]]:
    """The journal's finished tasks (rows, results) and the tasks still to run."""
    rows: dict[str, BatchRow] = {}
    results: dict[str, WorkflowResult] = {}
    pending: list[BatchTask] = []
    for spec in specs:
        record = book.finished.get(spec.id)
        # The journal keeps the task redacted (a secret in it is masked).
        if record is not None and record.get("task") not in (spec.task, redact(spec.task)):
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


__all__ = [
    "Batch",
    "BatchPlan",
    "check_concurrency",
    "check_tasks",
    "from_journal",
    "resumed_header",
    "run_batch",
]
