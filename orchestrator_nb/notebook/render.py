"""The final render of a run in a cell: the result's own bundle (:mod:`orchestrator_nb.display`).

The extension registers :func:`workflow_bundle` with IPython's display formatter; since a
:class:`WorkflowResult` renders through :mod:`orchestrator_nb.display` itself, a result looks
the same with or without ``%load_ext orchestrator_nb``.
"""

from __future__ import annotations

from typing import Any

from ..display import FOLD_LINES, FileDiff, diff_html, file_diff_html, result_html, split_files
from ..workflow.result import WorkflowResult


def workflow_bundle(result: WorkflowResult, include: Any = None, exclude: Any = None) -> Any:
    """The result's text/plain, text/markdown and text/html, as everywhere else."""
    return result._repr_mimebundle_(include, exclude)


__all__ = [
    "FOLD_LINES",
    "FileDiff",
    "diff_html",
    "file_diff_html",
    "result_html",
    "split_files",
    "workflow_bundle",
]
