"""The dashboard: a control panel for workflow runs, made of stock ipywidgets.

``orchestrator_nb.dashboard()`` (or ``%orchestrate dashboard``) returns a :class:`Dashboard`;
as the last expression of a cell it shows itself. Everything it does is also a method, so it
can be driven from Python: ``d.run_clicked()``, ``await d.wait()``, ``d.state()``.

This package is itself callable. Importing a subpackage makes it an attribute of its parent, so
``orchestrator_nb.dashboard`` is this module as soon as anything imported it; calling the module
is what keeps ``orchestrator_nb.dashboard()`` working whichever way it was reached.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .changes import revert_paths
from .panel import Dashboard


def dashboard(**kwargs: Any) -> Dashboard:
    """A new panel. Keywords are :class:`Dashboard`'s: ``workspace`` (default: the session's,
    where its last cell ran), ``config``, ``session``
    or ``store``, ``task``, ``workflow``, ``rehearsal``, ``max_iterations``, ``budget``,
    ``check_agents``, ``throttle_s``."""
    return Dashboard(**kwargs)


class _CallableModule(types.ModuleType):
    def __call__(self, **kwargs: Any) -> Dashboard:
        return dashboard(**kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["Dashboard", "dashboard", "revert_paths"]
