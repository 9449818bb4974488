"""Notebooks executed by nbclient in a real ipykernel, with the real agent CLIs under rehearsal.

Each test writes a small notebook with nbformat, runs it, and checks what a user would see in
the saved outputs: the result's deterministic text, live areas replaced by the final render, a
kernel interrupt that ends in one line (no agent process left, the session intact), a background
run while another cell executes, and a session exported and imported again.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat import v4

import orchestrator_nb
from orchestrator_nb.agents.registry import agents_bin_dirs
from orchestrator_nb.sessions import Session

pytestmark = [pytest.mark.kernel, pytest.mark.real_cli, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
BIN = agents_bin_dirs()[0]  # .agents/, or ORCHESTRATOR_NB_AGENTS_DIR (make test-latest)
# Until orchestrator_nb/__init__.py re-exports it, the extension is loaded from its module.
EXT = (
    "orchestrator_nb"
    if "load_ipython_extension" in getattr(orchestrator_nb, "__all__", ())
    else "orchestrator_nb.notebook"
)


def need(*agents: str) -> None:
    """Skip (fail under CI=true) when node or a pinned CLI is missing."""
    reason = None
    if shutil.which("node") is None:
        reason = "node is not installed: the agent CLIs need Node.js 20+"
    else:
        missing = [a for a in agents if not (BIN / a).exists()]
        if missing:
            reason = f"{', '.join(missing)} not installed in {BIN}: run `make agents` (needs npm)"
    if reason is not None:
        pytest.skip(reason)  # a failure under CI=true (tests/conftest.py)


def notebook(*sources: str) -> Any:
    return v4.new_notebook(cells=[v4.new_code_cell(s) for s in sources])


def client(nb: Any, cwd: Path) -> NotebookClient:
    return NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )


def texts(cell: Any, kind: str) -> list[str]:
    """The cell's outputs of one kind: "stream", "display" (data text/plain), "result", "error"."""
    out = []
    for o in cell.outputs:
        if kind == "stream" and o.output_type == "stream":
            out.append(o.text)
        elif kind == "display" and o.output_type == "display_data":
            out.append(o.data.get("text/plain", ""))
        elif kind == "result" and o.output_type == "execute_result":
            out.append(o.data["text/plain"])
        elif kind == "error" and o.output_type == "error":
            out.append(f"{o.ename}: {o.evalue}")
    return out


def result_of(cell: Any) -> Any:
    (result,) = [o for o in cell.outputs if o.output_type == "execute_result"]
    return result


def agent_pids(workspace: Path) -> list[int]:
    """Processes working in ``workspace``: agents the run started (and their children)."""
    found = []
    root = str(workspace.resolve())
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if cwd == root or cwd.startswith(root + os.sep):
                found.append(int(entry.name))
    return found


async def wait_for(check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {seconds}s: {check}")
        await asyncio.sleep(0.1)


def test_rehearsed_runs_in_a_notebook(tmp_path: Path) -> None:
    need("claude", "codex", "gemini")
    hello, calc, batch = (tmp_path / n for n in ("hello", "calc", "batch"))
    for folder in (hello, calc, batch):
        folder.mkdir()
    nb = notebook(
        f"%load_ext {EXT}",
        f"%%orchestrate --rehearse write-file --workspace {hello} -a claude\n"
        "Please create hello.txt",
        f"%%orchestrate --rehearse write-file --workspace {hello} -a claude\nnow say it again",
        "what = 'a small calculator module'",
        f"%%orchestrate --rehearse calculator --workspace {calc} --max-iterations 1\n"
        "Write {{ what }} with tests.",
        f"%%orchestrate --rehearse write-file --workspace {batch} -a claude --background --new\n"
        "Please create hello.txt",
        "%orchestrate history",
        f"%orchestrate session export {tmp_path / 's.json'}\n"
        f"%orchestrate session export {tmp_path / 's.ipynb'}\n"
        "%orchestrate session reset\n"
        f"%orchestrate session import {tmp_path / 's.json'}\n"
        "%orchestrate history",
    )
    client(nb, tmp_path).execute()
    cells = nb.cells
    assert all(not texts(c, "error") for c in cells)

    one = result_of(cells[1]).data
    assert re.match(
        r"workflow agent:claude: completed — 1 step\(s\), 1 file\(s\) changed, "
        r"[\d,]+ in / [\d,]+ out",
        one["text/plain"],
    )
    assert "  added    hello.txt" in one["text/plain"] and "+hi" in one["text/plain"]
    assert {"text/plain", "text/markdown", "text/html"} <= set(one)
    assert not re.search(r"<(style|script)", one["text/html"])
    # Unattended (nbclient): no live areas to replay, one line per finished step instead.
    (step_line,) = texts(cells[1], "display")
    assert step_line.startswith("claude · ok · 2,400 in / 68 out tokens")
    assert (hello / "hello.txt").read_text() == "hi\n"

    again = cells[2]  # a follow-up: the agent's own session is resumed
    assert texts(again, "stream") == [
        "↪ follow-up of turn 1 (short message with 'now') — use --new to run it on its own\n"
    ]
    assert "Done again. hello.txt still contains hi." in result_of(again).data["text/plain"]

    flow = result_of(cells[4]).data["text/plain"]
    assert flow.startswith("workflow default: completed — 3 step(s), 2 file(s) changed")
    for line in ("implement (codex): ok", "review (gemini) #1: ok", "refine (claude) #1: ok"):
        assert line in flow
    assert "diff --git a/calc.py b/calc.py" in flow and "ZeroDivisionError" in flow
    assert str(tmp_path) not in flow and not re.search(r"\d\.\d+ ?s\b", flow)
    # Another workspace: nothing there to follow up, whatever the session did elsewhere.
    assert texts(cells[4], "stream") == ["● new task (first turn in this workspace)\n"]
    step_lines = texts(cells[4], "display")
    assert [line.split(" · ")[:3] for line in step_lines] == [
        ["implement", "codex", "ok"],
        ["review #1", "gemini", "ok"],
        ["refine #1", "claude", "ok"],
    ]

    note = "".join(texts(cells[5], "stream"))
    assert "● new task (--new)" in note
    assert "--background: batch execution keeps only the output of the running cell" in note
    # The same rehearsal gives the same output, whatever the folder: nbval can compare it.
    assert result_of(cells[5]).data["text/plain"] == one["text/plain"]

    history = result_of(cells[6]).data["text/plain"]
    assert "session 'default': 4 turns" in history
    assert "3  workflow default  completed" in history
    imported = result_of(cells[7]).data["text/plain"]
    assert imported == history
    session = Session.load(tmp_path / "s.json")
    assert [t.outcome for t in session.turns] == ["completed"] * 4
    first, second = (t.steps[0].native_session_id for t in session.turns[:2])
    assert first and first == second
    exported = nbformat.read(tmp_path / "s.ipynb", as_version=4)
    nbformat.validate(exported)
    assert exported.cells[4].source.startswith(
        f"%%orchestrate -w default --workspace {calc} --rehearse calculator --new\nWrite a small"
    )


async def test_kernel_interrupt_cancels_cleanly(tmp_path: Path) -> None:
    need("claude")
    ws = tmp_path / "ws"
    ws.mkdir()
    nb = notebook(
        f"%load_ext {EXT}",
        f"%%orchestrate --rehearse write-file --workspace {ws} -a claude\nPlease create hello.txt",
        f"%%orchestrate --rehearse hang --workspace {ws} -a claude --new\nPlease create more.txt",
        "from orchestrator_nb.sessions import default_store\n"
        "print([t.outcome for t in default_store().current.turns])",
    )
    nbc = client(nb, tmp_path)
    async with nbc.async_setup_kernel():
        for index in (0, 1):
            await nbc.async_execute_cell(nb.cells[index], index)
        running = asyncio.ensure_future(nbc.async_execute_cell(nb.cells[2], 2))
        await wait_for(lambda: bool(agent_pids(ws)), 60)  # the hung CLI is up
        await asyncio.sleep(1.5)  # and waiting for the model
        assert not running.done()
        assert nbc.km is not None
        await nbc.km.interrupt_kernel()
        started = time.monotonic()
        await asyncio.wait_for(running, 60)
        await wait_for(lambda: not agent_pids(ws), 2)  # every agent process group is gone
        assert time.monotonic() - started < 15
        await nbc.async_execute_cell(nb.cells[3], 3)
    stopped = nb.cells[2]
    assert texts(stopped, "error") == [] and not [o for o in stopped.outputs if "traceback" in o]
    lines = "".join(texts(stopped, "stream")).strip().splitlines()
    assert lines[-1] == (
        "⏹ interrupted: agent claude cancelled after 0 finished step(s); its agents were "
        "stopped. Session 'default' keeps 2 turn(s)."
    )
    assert texts(nb.cells[3], "stream") == ["['completed', 'cancelled']\n"]


def test_background_run_while_another_cell_executes(tmp_path: Path) -> None:
    need("claude")
    ws = tmp_path / "ws"
    ws.mkdir()
    nb = notebook(
        f"import os\nos.environ['ORCHESTRATOR_NB_INTERACTIVE'] = '1'\n%load_ext {EXT}",
        f"%%orchestrate --rehearse write-file --workspace {ws} -a claude --background -o run\n"
        "Please create hello.txt",
        "print('meanwhile the run is', 'done' if run.done() else 'running')",
        "result = await run\n"
        "from orchestrator_nb.sessions import default_store\n"
        "outcomes = [t.outcome for t in default_store().current.turns]\n"
        "print(result.summary().split(' — ')[0], outcomes)",
    )
    client(nb, tmp_path).execute()
    assert "background run of agent claude: running" in result_of(nb.cells[1]).data["text/plain"]
    assert texts(nb.cells[2], "stream") == ["meanwhile the run is running\n"]
    assert texts(nb.cells[3], "stream") == ["workflow agent:claude: completed ['completed']\n"]
    assert (ws / "hello.txt").read_text() == "hi\n"
