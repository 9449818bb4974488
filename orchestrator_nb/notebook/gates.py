"""Gates in a notebook: Approve / Reject buttons where a click can reach the kernel.

A button click is a comm message the kernel handles on its main loop, so it arrives while the
kernel is free (a background run) or, during a blocking cell, where the kernel can handle the
panel's messages beside the busy cell (:mod:`.ui_pump`, ipykernel 7's subshells). Batch
execution (nbclient, papermill) has no one to click, and an older kernel cannot deliver a click
to a busy cell; there the workflow's gate policy decides and the cell says so
(:func:`gate_setup` returns the reason).

Whether the frontend is interactive is read from the current request (nbclient executes with
``allow_stdin=False``; JupyterLab, Notebook and VS Code allow stdin). The environment variable
``ORCHESTRATOR_NB_INTERACTIVE=1`` or ``0`` overrides the guess.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
from collections.abc import Callable
from typing import Any

from ..publish import html_widget, set_value
from ..workflow.engine import GateDecision, GateHandler
from ..workflow.models import GateStep
from .ui_pump import busy_cell_add

ENV_INTERACTIVE = "ORCHESTRATOR_NB_INTERACTIVE"
BATCH_REASON = "batch execution: no one can click a button here, so the gate policy decides"
BUSY_REASON = (
    "this kernel cannot receive clicks while the cell runs, so the gate policy decides; "
    "run with --background to decide with buttons"
)


def frontend_is_interactive(shell: Any) -> bool:
    """True in JupyterLab/Notebook/VS Code, False under nbclient or without a kernel."""
    forced = os.environ.get(ENV_INTERACTIVE, "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    kernel = getattr(shell, "kernel", None)
    return bool(getattr(kernel, "_allow_stdin", False)) if kernel is not None else False


class GatePanel:
    """Approve / Reject / edit-the-task buttons for one gate; ``approve()`` etc. for tests."""

    def __init__(self, step_id: str, message: str, decide: Callable[[GateDecision], None]) -> None:
        import ipywidgets as widgets

        self.step_id = step_id
        self.decision: GateDecision = None
        self._decide = decide
        self.message = html_widget(
            f"<b>gate {html.escape(step_id)}</b>: "
            f'<span style="white-space:pre-wrap">{html.escape(message)}</span>'
        )
        self.approve_button = widgets.Button(description="Approve", button_style="success")
        self.reject_button = widgets.Button(description="Reject", button_style="danger")
        self.task_box = widgets.Textarea(placeholder="or edit the task, then Approve edited")
        self.edit_button = widgets.Button(description="Approve edited")
        self.status = widgets.HTML("")
        self.approve_button.on_click(self._safe(lambda _b: self.approve()))
        self.reject_button.on_click(self._safe(lambda _b: self.reject()))
        self.edit_button.on_click(self._safe(lambda _b: self.edit(self.task_box.value)))
        buttons = widgets.HBox([self.approve_button, self.reject_button, self.edit_button])
        self.widget = widgets.VBox([self.message, buttons, self.task_box, self.status])

    def _safe(self, fn: Callable[[Any], None]) -> Callable[[Any], None]:
        """Every callback goes through here: an error shows in the panel, never vanishes."""

        def call(button: Any) -> None:
            try:
                fn(button)
            except Exception as exc:
                set_value(
                    self.status, f'<span style="color:#cf222e">{html.escape(repr(exc))}</span>'
                )

        return call

    def approve(self) -> None:
        self._finish("approve", "approved")

    def reject(self) -> None:
        self._finish("reject", "rejected")

    def edit(self, task: str) -> None:
        if not task.strip():
            set_value(self.status, '<span style="color:#cf222e">the edited task is empty</span>')
            return
        self._finish(("edit", task), "approved with an edited task")

    def expire(self, why: str) -> None:
        """The run ended without a click (cancelled): the buttons stop working."""
        if self.decision is None:
            self._disable(why)

    def _finish(self, decision: GateDecision, label: str) -> None:
        if self.decision is not None:
            return
        self.decision = decision
        self._disable(f"{label} by you")
        self._decide(decision)

    def _disable(self, label: str) -> None:
        for button in (self.approve_button, self.reject_button, self.edit_button):
            button.disabled = True
        self.task_box.disabled = True
        set_value(self.status, f"<i>{html.escape(label)}</i>")


class WidgetGate:
    """A GateHandler that shows a :class:`GatePanel` and waits for its click (or the cancel)."""

    def __init__(self, add_widget: Callable[[Any], None], cancel: asyncio.Event | None = None):
        self._add = add_widget
        self.cancel = cancel
        self.panels: list[GatePanel] = []

    async def __call__(self, step: GateStep, message: str) -> GateDecision:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[GateDecision] = loop.create_future()

        def decide(decision: GateDecision) -> None:  # runs on the kernel's thread
            def settle() -> None:
                if not answer.done():
                    answer.set_result(decision)

            loop.call_soon_threadsafe(settle)

        panel = GatePanel(step.id, message, decide)
        self.panels.append(panel)
        self._add(panel.widget)
        waits: set[asyncio.Future[Any]] = {answer}
        stopper: asyncio.Task[Any] | None = None
        if self.cancel is not None:
            stopper = asyncio.ensure_future(self.cancel.wait())
            waits.add(stopper)
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if stopper is not None:
                stopper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stopper
            panel.expire("the run stopped before a decision")
        return answer.result() if answer.done() else "reject"


def gate_setup(
    shell: Any,
    *,
    background: bool,
    add_widget: Callable[[Any], None] | None = None,
    cancel: asyncio.Event | None = None,
) -> tuple[GateHandler | None, str | None]:
    """The gate handler for this run, or None and why the policy decides instead."""
    if not frontend_is_interactive(shell):
        return None, BATCH_REASON
    if add_widget is not None and not background:
        add_widget = busy_cell_add(shell, add_widget)
    if add_widget is None:
        return None, BUSY_REASON
    return WidgetGate(add_widget, cancel), None


__all__ = [
    "BATCH_REASON",
    "BUSY_REASON",
    "ENV_INTERACTIVE",
    "GatePanel",
    "WidgetGate",
    "frontend_is_interactive",
    "gate_setup",
]
