"""Batches: :func:`batch` runs a workflow over many tasks, here or on Ray.

The parts: tasks (:mod:`.tasks`), the journal (:mod:`.journal`), the preamble every executor
shares (:mod:`.preamble`), the executor seam (:mod:`.executor`), the local executor
(:mod:`.local`), isolation, progress and results.
"""

from __future__ import annotations

from .api import abatch, batch
from .executor import Executor, ExecutorRegistry, default_executors
from .progress import BatchProgress
from .result import BatchResult, BatchRow
from .tasks import BatchTask, load_tasks

__all__ = [
    "BatchProgress",
    "BatchResult",
    "BatchRow",
    "BatchTask",
    "Executor",
    "ExecutorRegistry",
    "abatch",
    "batch",
    "default_executors",
    "load_tasks",
]
