"""The dashboard's "Questions from agents" area: ACP permission requests of the runs it starts.

Runs started from the dashboard run in a worker thread, so the kernel stays free and a click
reaches it: every ``session/request_permission`` becomes a
:class:`~orchestrator_nb.notebook.approvals.PermissionPanel` here (Allow once / Always for this
run / Reject); unanswered within ``approvals.timeout`` seconds, the policy decides. A request
that already carries its own ``approvals=`` keeps it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..notebook.approvals import WidgetApprover
from ..runs import RunRequest


class ApprovalsArea:
    """One box of questions; :meth:`attach` makes a run ask here."""

    def __init__(self) -> None:
        import ipywidgets as widgets

        self.box = widgets.VBox([])
        self._lock = threading.Lock()
        self.approver: WidgetApprover | None = None

    def add(self, widget: Any) -> None:
        with self._lock:
            self.box.children = (*self.box.children, widget)

    def attach(self, request: RunRequest, note: Callable[[str], None] | None = None) -> RunRequest:
        """``request`` asking its permission questions in this area (the last run's cleared)."""
        if request.approvals is not None:
            return request
        with self._lock:
            self.box.children = ()
        self.approver = WidgetApprover(self.add, note)
        return replace(request, approvals=self.approver)


__all__ = ["ApprovalsArea"]
