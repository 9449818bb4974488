"""The parts of :mod:`orchestrator_nb.batch`: tasks, the journal, isolation, progress, results."""

from __future__ import annotations

from .progress import BatchProgress
from .result import BatchResult, BatchRow
from .tasks import BatchTask, load_tasks

__all__ = ["BatchProgress", "BatchResult", "BatchRow", "BatchTask", "load_tasks"]
