"""Gate buttons (driven by click(), no browser), where they are offered, and the Run handle."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest

from orchestrator_nb.notebook.background import WidgetSink, launch
from orchestrator_nb.notebook.gates import (
    BATCH_REASON,
    BUSY_REASON,
    GatePanel,
    WidgetGate,
    frontend_is_interactive,
    gate_setup,
)
from orchestrator_nb.workflow.models import GateStep
from orchestrator_nb.workflow.result import WorkflowResult

STEP = GateStep(id="ship", kind="gate", message="Ship it?")


def kernel_shell(allow_stdin: bool) -> SimpleNamespace:
    """What the gates read of a kernel's shell: the current request's allow_stdin."""
    return SimpleNamespace(kernel=SimpleNamespace(_allow_stdin=allow_stdin))


def test_interactive_frontend_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCHESTRATOR_NB_INTERACTIVE", raising=False)
    assert frontend_is_interactive(kernel_shell(True))  # JupyterLab, VS Code
    assert not frontend_is_interactive(kernel_shell(False))  # nbclient
    assert not frontend_is_interactive(SimpleNamespace())  # no kernel at all
    monkeypatch.setenv("ORCHESTRATOR_NB_INTERACTIVE", "1")
    assert frontend_is_interactive(SimpleNamespace())
    monkeypatch.setenv("ORCHESTRATOR_NB_INTERACTIVE", "off")
    assert not frontend_is_interactive(kernel_shell(True))


def test_gate_setup_offers_buttons_only_where_a_click_can_arrive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ORCHESTRATOR_NB_INTERACTIVE", raising=False)
    sink = WidgetSink()
    assert gate_setup(kernel_shell(False), background=True, add_widget=sink.add_widget) == (
        None,
        BATCH_REASON,
    )
    assert gate_setup(kernel_shell(True), background=False) == (None, BUSY_REASON)
    handler, reason = gate_setup(kernel_shell(True), background=True, add_widget=sink.add_widget)
    assert isinstance(handler, WidgetGate) and reason is None


@pytest.mark.parametrize(
    ("press", "expected"),
    [
        (lambda p: p.approve_button.click(), "approve"),
        (lambda p: p.reject_button.click(), "reject"),
        (lambda p: (setattr(p.task_box, "value", "smaller task"), p.edit_button.click()), None),
    ],
)
def test_panel_buttons_decide_once(press: object, expected: str | None) -> None:
    decisions: list[object] = []
    panel = GatePanel("ship", "Ship <it>?", decisions.append)
    assert "Ship &lt;it&gt;?" in panel.message.value
    press(panel)  # type: ignore[operator]
    panel.approve_button.click()  # a second click changes nothing
    assert decisions == [expected or ("edit", "smaller task")]
    assert panel.approve_button.disabled and "by you" in panel.status.value


def test_empty_edit_is_refused_in_the_panel() -> None:
    decisions: list[object] = []
    panel = GatePanel("ship", "?", decisions.append)
    panel.edit_button.click()
    assert decisions == [] and "empty" in panel.status.value and not panel.approve_button.disabled


async def test_widget_gate_waits_for_a_click_from_another_thread() -> None:
    sink = WidgetSink()
    gate = WidgetGate(sink.add_widget)
    pending = asyncio.ensure_future(gate(STEP, "Ship it?"))
    deadline = time.monotonic() + 30
    while not gate.panels:
        assert time.monotonic() < deadline, "the gate never showed its panel"
        await asyncio.sleep(0.01)
    assert sink.box.children == (gate.panels[0].widget,)
    clicker = threading.Thread(target=gate.panels[0].approve_button.click)  # the kernel thread
    clicker.start()
    assert await asyncio.wait_for(pending, 5) == "approve"
    clicker.join()


async def test_widget_gate_rejects_when_the_run_is_cancelled() -> None:
    cancel = asyncio.Event()
    gate = WidgetGate(lambda _w: None, cancel)
    pending = asyncio.ensure_future(gate(STEP, "Ship it?"))
    await asyncio.sleep(0.05)
    cancel.set()
    assert await asyncio.wait_for(pending, 5) == "reject"
    assert gate.panels[0].approve_button.disabled


def test_run_handle_result_cancel_and_errors() -> None:
    async def slow(cancel: asyncio.Event) -> WorkflowResult:
        await cancel.wait()
        return WorkflowResult("r", "w", "t", "cancelled")

    run = launch(slow, "workflow w")
    assert not run.done() and run.status() == "running"
    assert run.cancel() and run.status() in ("cancelling", "cancelled")
    assert run.result(timeout=5).outcome == "cancelled" and run.status() == "cancelled"
    assert repr(run) == "<Run workflow w: cancelled>"
    seen: list[str] = []
    run.add_done_callback(lambda r: seen.append(r.label))
    assert seen == ["workflow w"]

    async def broken(cancel: asyncio.Event) -> WorkflowResult:
        raise ValueError("no such thing")

    bad = launch(broken, "workflow x")
    assert isinstance(bad.exception(timeout=5), ValueError)
    assert bad.status() == "error: ValueError: no such thing"
    with pytest.raises(ValueError):
        bad.result()


async def test_run_handle_is_awaitable() -> None:
    async def quick(cancel: asyncio.Event) -> WorkflowResult:
        return WorkflowResult("r", "w", "t", "completed")

    assert (await launch(quick, "w")).ok


def test_widget_sink_areas() -> None:
    sink = WidgetSink()
    sink.show("a", {"text/plain": "one"})
    sink.update("a", {"text/plain": "two"})
    sink.update("b", {"text/plain": "new"})  # an update of an unknown area shows it
    first, second = sink.box.children
    assert first.outputs[0]["data"] == {"text/plain": "two"}
    assert second.outputs[0]["data"] == {"text/plain": "new"}
    assert "application/vnd.jupyter.widget-view+json" in sink._repr_mimebundle_()
