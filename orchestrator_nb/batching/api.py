"""``batch``: many tasks, each in its own worktree or copy, with a durable journal and a summary.

::

    from orchestrator_nb import batch

    result = batch(["Add a README", "Write tests for calc.py"], "quick", max_concurrency=2)
    result                       # the summary table: outcome, tokens, cost, time, branch
    result.to_csv("batch.csv")

``tasks`` is a list of strings, a list of ``{id, task, workflow?, vars?}`` mappings, or the path
of a ``.txt`` (one task per line), ``.jsonl`` or ``.yaml`` file. A batch that crashed resumes
when it is run again with the same ``journal=`` (``result.journal`` names it): finished tasks
are taken from the journal, the others start again. Where the tasks run is the ``executor``:
``"local"`` (this process) or Ray's; see :mod:`.executor` to add another.
"""

from __future__ import annotations

import os
from typing import Any

from .._sync import run_sync
from ..config import Settings
from ..rehearsal.endpoint import RehearsalArg
from .executor import ExecutorRegistry, default_executors
from .preamble import BatchPlan, run_batch
from .progress import ProgressCallback
from .result import BatchResult
from .tasks import TasksArg


async def abatch(
    tasks: TasksArg,
    workflow: str = "default",
    *,
    workspace: str | os.PathLike[str] = ".",
    max_concurrency: int = 2,
    journal: str | os.PathLike[str] | None = None,
    config: Settings | str | os.PathLike[str] | None = None,
    rehearsal: RehearsalArg = None,
    isolation: str = "auto",
    on_progress: ProgressCallback | None = None,
    progress: bool | None = None,
    retry_failed: bool = False,
    executor: str = "local",
    executors: ExecutorRegistry | None = None,
    trust: bool | None = None,
    **options: Any,
) -> BatchResult:
    """Run ``workflow`` on every task, at most ``max_concurrency`` tasks at once.

    ``isolation``: ``"worktree"`` (a git worktree and branch per task), ``"copy"`` (a copy of
    the folder per task) or ``"auto"`` (worktree in a git workspace). ``progress=False`` hides
    the progress display; ``on_progress`` receives a :class:`BatchProgress` after each change.
    ``retry_failed`` runs tasks again that the journal records as not completed.
    ``rehearsal``: a scenario (started once for the batch) or a running rehearsal.

    ``executor``: ``"local"``, or ``"ray"``, ``"auto"``, ``"ray://host:10001"`` or
    ``"host:port"`` to run each task on a Ray cluster; then ``caps``, ``batch_budget``,
    ``cancel``, ``cancel_grace_s``, ``worker_dir`` and ``task_options`` are accepted too (see
    :class:`orchestrator_nb.scaleout.ray_executor.RayExecutor`). ``executors``: a registry with
    executors of your own. The other ``options`` go to every run: ``max_iterations``,
    ``max_cost_usd``, ``max_tokens``, ...
    """
    runner, overrides = (executors or default_executors()).create(executor, options)
    plan = BatchPlan(
        tasks,
        workflow,
        workspace,
        max_concurrency,
        journal,
        config,
        rehearsal,
        isolation,
        on_progress,
        progress,
        retry_failed,
        overrides,
        trust,
    )
    return await run_batch(runner, plan)


def batch(
    tasks: TasksArg,
    workflow: str = "default",
    *,
    workspace: str | os.PathLike[str] = ".",
    max_concurrency: int = 2,
    journal: str | os.PathLike[str] | None = None,
    config: Settings | str | os.PathLike[str] | None = None,
    rehearsal: RehearsalArg = None,
    isolation: str = "auto",
    on_progress: ProgressCallback | None = None,
    progress: bool | None = None,
    retry_failed: bool = False,
    executor: str = "local",
    executors: ExecutorRegistry | None = None,
    trust: bool | None = None,
    **options: Any,
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
            executors=executors,
            trust=trust,
            **options,
        )
    )


__all__ = ["abatch", "batch"]
