"""orchestrator-nb: several AI coding CLIs working together from a Jupyter notebook.

The public names are imported lazily so ``import orchestrator_nb`` stays cheap in a kernel.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "run_agent": ".api",
    "run": ".workflow.api",
    "arun": ".workflow.api",
    "resume": ".workflow.api",
    "revert": ".workflow.api",
    "aresume": ".workflow.api",
    "WorkflowResult": ".workflow.result",
    "start": ".notebook.background",
    "batch": ".batching",
    "abatch": ".batching",
    "BatchResult": ".batching",
    "Run": ".notebook.background",
    "arun_agent": ".api",
    "parse_transcript": ".api",
    "StepResult": ".events",
    "Usage": ".events",
    "FileChange": ".events",
    "load_settings": ".config",
    "rehearsal": ".rehearsal",
    "OrchestratorError": ".errors",
    "AgentError": ".errors",
    "ConfigError": ".errors",
    "trust": ".trust_store",
}

__all__ = [
    "AgentError",
    "BatchResult",
    "ConfigError",
    "FileChange",
    "OrchestratorError",
    "Run",
    "StepResult",
    "Usage",
    "WorkflowResult",
    "__version__",
    "abatch",
    "agents",
    "aresume",
    "arun",
    "arun_agent",
    "batch",
    "dashboard",
    "errors",
    "load_settings",
    "parse_transcript",
    "rehearsal",
    "resume",
    "revert",
    "run",
    "run_agent",
    "secrets",
    "start",
    "trust",
]

if TYPE_CHECKING:
    from . import agents, dashboard, errors, secrets
    from .api import arun_agent, parse_transcript, run_agent
    from .batching import BatchResult, abatch, batch
    from .config import load_settings
    from .errors import AgentError, ConfigError, OrchestratorError
    from .events import FileChange, StepResult, Usage
    from .notebook.background import Run, start
    from .rehearsal import rehearsal
    from .trust_store import trust
    from .workflow.api import aresume, arun, resume, revert, run
    from .workflow.result import WorkflowResult


def __getattr__(name: str) -> Any:
    if name in _EXPORTS or name in ("agents", "errors", "dashboard", "secrets"):
        from . import _preload

        _preload.wait()  # the extension's background imports finish before ours start
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    if name in ("agents", "errors", "dashboard", "secrets"):
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'orchestrator_nb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext orchestrator_nb``: the ``%%orchestrate`` and ``%orchestrate`` magics."""
    from .notebook import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .notebook import unload_ipython_extension as unload

    unload(ipython)
