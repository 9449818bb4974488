"""The notebook side: the ``%%orchestrate`` magic, live output, gates, background runs.

``%load_ext orchestrator_nb`` (or ``%load_ext orchestrator_nb.notebook``) calls
:func:`load_ipython_extension`: it registers the magic and the richer HTML for results.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .background import Run, start

_EXPORTS = {"Run": ".background", "start": ".background"}
_LOADED: dict[int, Any] = {}


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%orchestrate`` / ``%%orchestrate`` and the result renderer on ``ipython``."""
    from ..publish import install
    from ..workflow.result import WorkflowResult
    from .magics import OrchestratorMagics
    from .render import workflow_bundle

    magics = OrchestratorMagics(ipython)
    ipython.register_magics(magics)
    formatter = ipython.display_formatter.mimebundle_formatter
    formatter.for_type(WorkflowResult, workflow_bundle)
    install(ipython)
    _LOADED[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    from ..workflow.result import WorkflowResult

    _LOADED.pop(id(ipython), None)
    ipython.magics_manager.magics["line"].pop("orchestrate", None)
    ipython.magics_manager.magics["cell"].pop("orchestrate", None)
    formatter = ipython.display_formatter.mimebundle_formatter
    formatter.type_printers.pop(WorkflowResult, None)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Run", "load_ipython_extension", "start", "unload_ipython_extension"]
