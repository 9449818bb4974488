"""One batch task's run, the same whichever executor runs it (here, or on a Ray worker).

:func:`run_task_workflow` is the one place a batch task becomes a run; :func:`task_row` is the
summary line both executors journal, and :func:`commit_message` what the task's branch says.
"""

from __future__ import annotations

import os
from typing import Any

from ..display import cost_reported
from ..errors import RunError
from ..rehearsal.endpoint import RehearsalEndpoint
from ..workflow.api import arun
from ..workflow.engine import Engine
from ..workflow.result import WorkflowResult
from .result import BatchRow
from .tasks import BatchTask


async def run_task_workflow(
    spec: BatchTask,
    workflow: str,
    *,
    workspace: str | os.PathLike[str],
    engine: Engine,
    rehearsal: RehearsalEndpoint | None,
    overrides: dict[str, Any],
) -> WorkflowResult:
    """Run the task's workflow (its own, else the batch's) in its isolated ``workspace``."""
    return await arun(
        spec.task,
        spec.workflow or workflow,
        workspace=workspace,
        engine=engine,
        rehearsal=rehearsal,
        variables=dict(spec.vars),
        **overrides,
    )


def failed_result(spec: BatchTask, workflow: str, exc: Exception) -> WorkflowResult:
    """What a task that raised reports: one task's trouble never stops the others."""
    error = " ".join(str(exc).split())
    name = spec.workflow or workflow
    failure = RunError.for_kind("failed", f"{type(exc).__name__}: {error}")
    return WorkflowResult("", name, spec.task, "failed", error=failure)


def task_row(
    spec: BatchTask, workflow: str, result: WorkflowResult, seconds: float, where: str
) -> BatchRow:
    usage = result.usage
    return BatchRow(
        id=spec.id,
        workflow=spec.workflow or workflow,
        task=spec.task,
        outcome=result.outcome,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage.cost_usd,
        seconds=round(seconds, 3),
        where=where,
        error=result.error.message if result.error is not None else None,
        agents=cost_reported(result.agent_usage()),
    )


def commit_message(batch_id: str, spec: BatchTask, workflow: str, outcome: str) -> str:
    first = spec.task.strip().splitlines()[0][:60]
    name = spec.workflow or workflow
    return f"{spec.id}: {first}\n\norchestrator-nb batch {batch_id}, workflow {name}: {outcome}"


__all__ = ["commit_message", "failed_result", "run_task_workflow", "task_row"]
