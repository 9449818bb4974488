"""The notebook side: the ``%%orchestrate`` magic, live output, gates, background runs.

``%load_ext orchestrator_nb`` (or ``%load_ext orchestrator_nb.notebook``) calls
:func:`load_ipython_extension`: it registers the magic. A result renders itself
(:mod:`orchestrator_nb.display`), the same with or without the extension.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .background import Run, start

_EXPORTS = {"Run": ".background", "start": ".background"}
_LOADED: dict[int, Any] = {}


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%orchestrate`` / ``%%orchestrate`` on ``ipython``.

    What is registered first is a stand-in with the magic's documentation: the first use builds
    the real :class:`~.magics.OrchestratorMagics` (its session store, and with it the models)
    and puts it in the stand-in's place, so loading the extension costs next to nothing. What a
    run needs is imported on a background thread meanwhile (:mod:`orchestrator_nb._preload`).
    """
    from .. import _preload
    from ..publish import install
    from .deferred import DeferredMagics

    ipython.register_magics(DeferredMagics(ipython, _LOADED))
    install(ipython)
    _stop_leftovers()
    _preload.start()  # the run machinery, imported while the first cell is being written


def _stop_leftovers() -> None:
    """A kernel that died mid-run may have left agents running in this folder: stop them now
    (pid and start time verified), and mark their turns interrupted."""
    import os

    from ..orphans import stop_leftovers
    from ..publish import say

    try:
        found = stop_leftovers(os.getcwd())
    except Exception as exc:  # never keep the extension from loading
        say(f"orchestrator-nb: could not check for leftovers of a dead run: {exc}")
        return
    for left in found:
        line = f"orchestrator-nb: run {left.run_id} died with its kernel"
        line += f"; stopped {len(left.stopped)} leftover process(es)" if left.stopped else ""
        line += "; its turn is marked interrupted" if left.turns else ""
        if left.survivors:
            line += f"; could not stop pid(s) {', '.join(map(str, left.survivors))}"
        say(line)


def unload_ipython_extension(ipython: Any) -> None:
    _LOADED.pop(id(ipython), None)
    ipython.magics_manager.magics["line"].pop("orchestrate", None)
    ipython.magics_manager.magics["cell"].pop("orchestrate", None)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Run", "load_ipython_extension", "start", "unload_ipython_extension"]
