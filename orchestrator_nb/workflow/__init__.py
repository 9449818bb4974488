"""Workflows: several agents on one task, in steps, loops, branches and parallel groups.

The entry points live in :mod:`.api` and are loaded on first use, so that the configuration
models (:mod:`.models`, imported by :mod:`orchestrator_nb.config`) stay cheap to import.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import aresume, arun, resume, run
    from .engine import Engine
    from .result import WorkflowResult

_EXPORTS = {
    "run": ".api",
    "arun": ".api",
    "resume": ".api",
    "aresume": ".api",
    "Engine": ".engine",
    "WorkflowResult": ".result",
}

__all__ = ["Engine", "WorkflowResult", "aresume", "arun", "resume", "run"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
