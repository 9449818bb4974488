"""An ACP agent's permission request as a question in the notebook: Allow once / Always / Reject.

:class:`WidgetApprover` is an ``approvals=`` callable: each request becomes a
:class:`PermissionPanel` (the tool, its kind, the command or the files it wants, "waiting for
you") added where the caller shows widgets, and the step waits for the click. As with gates
(see :mod:`.gates`), a click reaches the kernel in an interactive frontend: during a
background run, and during a blocking cell where the kernel can handle the panel's clicks beside
the busy cell (:mod:`.ui_pump`); when nobody answers within ``approvals.timeout`` seconds the
policy decides, and the panel says so.
"""

from __future__ import annotations

import asyncio
import html
import threading
import time
from collections.abc import Callable
from typing import Any

from ..agents.acp.permissions import Ask, PermissionRequest
from ..publish import html_widget, set_value
from .gates import frontend_is_interactive
from .ui_pump import busy_cell_add

BATCH_REASON = "batch execution: no one can click here, so the approvals policy decides"
BUSY_REASON = (
    "this kernel cannot receive clicks while the cell runs, so the approvals policy "
    "decides; run with --background to answer agents' permission requests with buttons"
)

# Questions still waiting for an answer, oldest first (:func:`pending`).
_PENDING: list[PermissionPanel] = []
_PENDING_LOCK = threading.Lock()

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
        self.shown_at: float | None = None  # time.monotonic() when the question was shown
        self._decide = decide
        what = request.command or "\n".join(request.paths) or request.title
        diff = (
            f'<pre style="white-space:pre-wrap;margin:2px 0;max-height:20em;overflow:auto">'
            f"{html.escape(request.diff)}</pre>"
            if request.diff
            else ""
        )
        self.message = html_widget(
            f"<b>{html.escape(request.agent)}</b> wants to use "
            f"<b>{html.escape(request.title)}</b> ({html.escape(request.kind)}):"
            f'<pre style="white-space:pre-wrap;margin:2px 0">{html.escape(what)}</pre>{diff}'
            + (
                f'<div style="color:#9a6700">&#9888; {html.escape(request.warning)}</div>'
                if request.warning
                else ""
            )
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
        _forget(self)
        if self.answer is None:
            self._disable(why)

    def _finish(self, answer: str) -> None:
        if self.answer is not None:
            return
        self.answer = answer
        _forget(self)
        self._disable(f"{ANSWERS[answer]} by you")
        self._decide(answer)

    def _disable(self, label: str) -> None:
        for button in self.buttons.values():
            button.disabled = True
        set_value(self.status, f"<i>{html.escape(label)}</i>")


def _forget(panel: PermissionPanel) -> None:
    with _PENDING_LOCK:
        if panel in _PENDING:
            _PENDING.remove(panel)


def pending() -> list[PermissionPanel]:
    """The questions still waiting, oldest first: ``pending()[0].allow_once()`` answers one
    from code, as its button does."""
    with _PENDING_LOCK:
        return list(_PENDING)


class WidgetApprover:
    """``approvals=`` for a notebook: shows each request and returns the clicked answer.

    ``note`` (the live display's notes line) also says which agent is waiting for you.
    """

    def __init__(
        self, add_widget: Callable[[Any], None], note: Callable[[str], None] | None = None
    ) -> None:
        self._add = add_widget
        self._note = note
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
        panel.shown_at = time.monotonic()
        with _PENDING_LOCK:
            _PENDING.append(panel)
        if self._note is not None:
            self._note(f"{request.agent}: {request.title} ({request.target}) is waiting for you")
        try:
            value = await answer
        finally:
            # Cancelled by the approvals timeout (the policy decides) or by a stop.
            panel.expire("no answer in time: the approvals policy decided")
        if self._note is not None:
            self._note(f"{request.agent}: {request.title}: {ANSWERS.get(value, value)} by you")
        return value


def approvals_setup(
    shell: Any,
    *,
    background: bool,
    add_widget: Callable[[Any], None] | None = None,
    note: Callable[[str], None] | None = None,
) -> tuple[Ask | None, str | None]:
    """The ``approvals=`` callable for a cell's run, or None and why the policy decides.

    As for gates: buttons only where a click can reach the kernel (an interactive frontend:
    a background run, or a blocking cell whose kernel routes the panel's clicks beside it);
    elsewhere the ``approvals:`` policy answers, recorded ``by: policy``.
    """
    if not frontend_is_interactive(shell):
        return None, BATCH_REASON
    if add_widget is not None and not background:
        add_widget = busy_cell_add(shell, add_widget)
    if add_widget is None:
        return None, BUSY_REASON
    return WidgetApprover(add_widget, note), None


__all__ = [
    "BATCH_REASON",
    "BUSY_REASON",
    "PermissionPanel",
    "WidgetApprover",
    "approvals_setup",
    "pending",
]
