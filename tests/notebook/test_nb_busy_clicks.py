"""A blocking ``%%orchestrate`` cell asks with buttons, and a click sent while it runs decides.

A real kernel is driven as a frontend drives it (jupyter_client): the test waits for the
question's ``comm_open`` on IOPub, queues the next cell's ``execute_request`` while the cell is
still busy, then sends the button's click as a ``comm_msg``. Every wait is for a message, with a
deadline.
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from acp_kernel_config import acp_config

DEADLINE = 120.0
Msg = dict[str, Any]


class Frontend:
    """What JupyterLab does, as far as these tests need: run cells, watch IOPub, click."""

    def __init__(self, kc: Any) -> None:
        self.kc = kc
        self.seen: list[Msg] = []

    def execute(self, code: str) -> str:
        # allow_stdin=True is what JupyterLab sends: an interactive frontend.
        return str(self.kc.execute(code, allow_stdin=True))

    def until(self, want: Callable[[Msg], bool]) -> Msg:
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            try:
                msg = self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            self.seen.append(msg)
            if want(msg):
                return msg
        kinds = [m["msg_type"] for m in self.seen]
        raise AssertionError(f"no such IOPub message within {DEADLINE}s; saw {kinds}")

    def button(self, description: str) -> str:
        """The comm of the button called ``description``, once its question is on screen."""

        def match(msg: Msg) -> bool:
            state = msg["content"].get("data", {}).get("state", {})
            return bool(
                msg["msg_type"] == "comm_open"
                and state.get("_model_name") == "ButtonModel"
                and state.get("description") == description
            )

        comm_id = str(self.until(match)["content"]["comm_id"])
        # A person clicks what is on screen: wait for the question's panel to be shown.
        self.until(
            lambda m: (
                m["msg_type"] == "display_data"
                and "application/vnd.jupyter.widget-view+json" in m["content"]["data"]
            )
        )
        return comm_id

    def click(self, comm_id: str) -> None:
        data = {"method": "custom", "content": {"event": "click"}}
        self.kc.shell_channel.send(
            self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        )

    def idle(self, msg_id: str) -> int:
        """Wait for the request's end; the number of messages seen by then."""
        self.until(
            lambda m: (
                m["msg_type"] == "status"
                and m["content"]["execution_state"] == "idle"
                and m["parent_header"].get("msg_id") == msg_id
            )
        )
        return len(self.seen)

    def busy(self, msg_id: str) -> bool:
        return not any(
            m["msg_type"] == "status"
            and m["content"]["execution_state"] == "idle"
            and m["parent_header"].get("msg_id") == msg_id
            for m in self.seen
        )

    def stream(self, msg_id: str) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.seen
            if m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == msg_id
        )

    def widget_says(self, text: str) -> bool:
        return any(
            text in json.dumps(m["content"]) for m in self.seen if m["msg_type"] == "comm_msg"
        )


@pytest.fixture
def frontend(tmp_path: Path) -> Iterator[tuple[Frontend, Path]]:
    from jupyter_client.manager import start_new_kernel

    from orchestrator_nb import trust

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "orchestrator.yaml").write_text(acp_config(gated=True))
    trust(ws)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        fe = Frontend(kc)
        setup = fe.execute(
            "import os\nos.environ.pop('ORCHESTRATOR_NB_INTERACTIVE', None)\n"
            "%load_ext orchestrator_nb"
        )
        fe.idle(setup)
        assert not [m for m in fe.seen if m["msg_type"] == "error"]
        fe.km = km  # type: ignore[attr-defined]
        yield fe, ws
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def next_cell(fe: Frontend, ws: Path) -> str:
    return fe.execute(f"print('NEXT CELL', os.path.exists({str(ws / 'out.txt')!r}))")


@pytest.mark.kernel
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("button", "written"), [("Allow once", True), ("Reject", False)])
def test_a_blocking_cell_asks_and_a_click_sent_while_busy_decides(
    frontend: tuple[Frontend, Path], button: str, written: bool
) -> None:
    fe, ws = frontend
    cell = fe.execute(f"%%orchestrate -w one --workspace {ws}\nwrite out.txt hi")
    comm_id = fe.button(button)
    after = next_cell(fe, ws)  # queued behind the busy cell before anyone answers
    assert fe.busy(cell)
    fe.click(comm_id)
    cell_end = fe.idle(cell)
    fe.idle(after)
    assert (ws / "out.txt").exists() is written
    assert not [m for m in fe.seen if m["msg_type"] == "error"]
    # The queued cell ran after the blocking one, and saw what the click decided.
    assert fe.stream(after) == f"NEXT CELL {written}\n"
    assert all(m["parent_header"].get("msg_id") != after for m in fe.seen[:cell_end])
    assert fe.widget_says("allowed once by you" if written else "rejected by you")


@pytest.mark.kernel
@pytest.mark.timeout(300)
def test_a_gate_in_a_blocking_cell_is_decided_by_its_button(
    frontend: tuple[Frontend, Path],
) -> None:
    """The gate's policy would reject; the click approves, then the agent's question is
    answered too, all while the cell is busy."""
    fe, ws = frontend
    cell = fe.execute(f"%%orchestrate -w gated --workspace {ws}\nwrite out.txt hi")
    fe.click(fe.button("Approve"))
    fe.click(fe.button("Allow once"))
    fe.idle(cell)
    assert (ws / "out.txt").read_text() == "hi\n"
    assert fe.widget_says("approved by you") and fe.widget_says("allowed once by you")


@pytest.mark.kernel
@pytest.mark.timeout(300)
def test_an_interrupt_stops_a_blocking_cell_that_waits_for_a_click(
    frontend: tuple[Frontend, Path],
) -> None:
    fe, ws = frontend
    cell = fe.execute(f"%%orchestrate -w one --workspace {ws}\nwrite out.txt hi")
    fe.button("Allow once")
    after = next_cell(fe, ws)
    fe.km.interrupt_kernel()  # type: ignore[attr-defined]
    cell_end = fe.idle(cell)
    fe.idle(after)
    assert "interrupted" in fe.stream(cell) and "cancelled" in fe.stream(cell)
    assert not (ws / "out.txt").exists()
    assert fe.stream(after) == "NEXT CELL False\n"
    assert all(m["parent_header"].get("msg_id") != after for m in fe.seen[:cell_end])


def test_kernels_that_cannot_route_clicks_keep_the_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ipykernel 6 (no shell-channel thread), a plain IPython shell, and a kernel whose
    shell-channel thread never makes the subshell: the policy decides, and nothing hangs."""
    from types import SimpleNamespace

    from orchestrator_nb.notebook import approvals, gates, ui_pump

    monkeypatch.delenv("ORCHESTRATOR_NB_INTERACTIVE", raising=False)
    old = SimpleNamespace(kernel=SimpleNamespace(_allow_stdin=True, shell_channel_thread=None))
    assert gates.gate_setup(old, background=False, add_widget=print) == (
        None,
        gates.BUSY_REASON,
    )
    assert approvals.approvals_setup(old, background=False, add_widget=print) == (
        None,
        approvals.BUSY_REASON,
    )
    monkeypatch.setenv("ORCHESTRATOR_NB_INTERACTIVE", "1")
    assert ui_pump.busy_cell_add(SimpleNamespace(), print) is None  # IPython without a kernel

    class Stuck:  # a shell-channel loop that never runs what it is given
        def add_callback(self, fn: Any) -> None:
            pass

    thread = SimpleNamespace(io_loop=Stuck(), manager=SimpleNamespace(_create_subshell=str))
    stuck = SimpleNamespace(kernel=SimpleNamespace(_allow_stdin=True, shell_channel_thread=thread))
    monkeypatch.setattr(ui_pump, "CREATE_TIMEOUT", 0.2)
    monkeypatch.setattr(ui_pump, "_SUBSHELL", {})
    assert gates.gate_setup(stuck, background=False, add_widget=print) == (
        None,
        gates.BUSY_REASON,
    )
