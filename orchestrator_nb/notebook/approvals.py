"""An ACP agent's permission request as a question in the notebook: Allow once / Always / Reject.

:class:`WidgetApprover` is an ``approvals=`` callable: each request becomes a
:class:`PermissionPanel` (the tool, its kind, the command or the files it wants, "waiting for
you") added where the caller shows widgets, and the step waits for the click. As with gates
(see :mod:`.gates`), a click reaches the kernel only while it is free — a background run in an
interactive frontend; when nobody answers within ``approvals.timeout`` seconds the policy
decides, and the panel says so.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable
from typing import Any

from ..agents.acp.permissions import PermissionRequest
from ..publish import html_widget, set_value

ANSWERS = {
    "allow_once": "allowed once",
    "allow_always": "allowed for this run",
    "reject": "rejected",
}


class PermissionPanel:
    """One question; ``allow_once()``, ``allow_always()``, ``reject()`` do what the buttons do."""

    def __init__(self, request: PermissionRequest, decide: Callable[[str], None]) -> None:
        import ipywidgets as widgets

        self.request = request
        self.answer: str | None = None
        self._decide = decide
        what = request.command or "\n".join(request.paths) or request.title
        self.message = html_widget(
            f"<b>{html.escape(request.agent)}</b> wants to use "
            f"<b>{html.escape(request.title)}</b> ({html.escape(request.kind)}):"
            f'<pre style="white-space:pre-wrap;margin:2px 0">{html.escape(what)}</pre>'
        )
        self.buttons = {
            "allow_once": widgets.Button(description="Allow once", button_style="success"),
            "allow_always": widgets.Button(description="Always for this run"),
            "reject": widgets.Button(description="Reject", button_style="danger"),
        }
        for answer, button in self.buttons.items():
            button.on_click(lambda _b, a=answer: self._finish(a))
        self.status = widgets.HTML("<i>waiting for you</i>")
        row = widgets.HBox(list(self.buttons.values()))
        self.widget = widgets.VBox([self.message, row, self.status])

    def allow_once(self) -> None:
        self._finish("allow_once")

    def allow_always(self) -> None:
        self._finish("allow_always")

    def reject(self) -> None:
        self._finish("reject")

    def expire(self, why: str) -> None:
        if self.answer is None:
            self._disable(why)

    def _finish(self, answer: str) -> None:
        if self.answer is not None:
            return
        self.answer = answer
        self._disable(f"{ANSWERS[answer]} by you")
        self._decide(answer)

    def _disable(self, label: str) -> None:
        for button in self.buttons.values():
            button.disabled = True
        set_value(self.status, f"<i>{html.escape(label)}</i>")


class WidgetApprover:
    """``approvals=`` for a notebook: shows each request and returns the clicked answer."""

    def __init__(self, add_widget: Callable[[Any], None]) -> None:
        self._add = add_widget
        self.panels: list[PermissionPanel] = []

    async def __call__(self, request: PermissionRequest) -> str:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[str] = loop.create_future()

        def decide(value: str) -> None:  # runs on the kernel's thread
            def settle() -> None:
                if not answer.done():
                    answer.set_result(value)

            loop.call_soon_threadsafe(settle)

        panel = PermissionPanel(request, decide)
        self.panels.append(panel)
        self._add(panel.widget)
        try:
            return await answer
        finally:
            # Cancelled by the approvals timeout (the policy decides) or by a stop.
            panel.expire("no answer in time: the approvals policy decided")


__all__ = ["PermissionPanel", "WidgetApprover"]
