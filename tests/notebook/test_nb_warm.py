"""Warm ACP agents across cells: one process per agent for a kernel session's follow-ups.

A real ipykernel (nbclient) runs three cells on a fake ACP agent (a real subprocess speaking
ACP), with and without rehearsal: a task, its follow-up, then a new task. One process serves
all three; the follow-up is a prompt on the live session (no ``session/load``, the agent's turn
count goes on); the new task gets a new session on the same process;
``Session.close_agents()`` stops it, and after the kernel shuts down no agent process is left.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from nbclient import NotebookClient
from nbformat import v4

from orchestrator_nb import trust

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(240)]

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "fake_acp_agent.py"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


@pytest.mark.parametrize("rehearse", ["", "--rehearse write-file"], ids=["real", "rehearsed"])
def test_follow_up_cells_prompt_the_same_live_session(tmp_path: Path, rehearse: str) -> None:
    # Rehearsed cells too: the session's cells share one scripted server, which the warm
    # agent points at (each cell starting its own would make every cell start it anew).
    ws = tmp_path / "ws"
    ws.mkdir()
    starts, loads = tmp_path / "starts", tmp_path / "loads"
    fake = {"driver": "acp", "argv": [sys.executable, str(FAKE)], "retries": 0}
    agents = {"fake": fake | ({"provider": "gemini"} if rehearse else {})}
    (ws / "orchestrator.yaml").write_text(json.dumps({"agents": agents}))
    trust(ws)
    magic = f"%%orchestrate -a fake --workspace {ws} -s warm {rehearse}"
    cells = [
        f"import os\nos.environ['FAKE_ACP_STARTS'] = {str(starts)!r}\n"
        f"os.environ['FAKE_ACP_LOADS'] = {str(loads)!r}\n%load_ext orchestrator_nb.notebook",
        f"{magic} --new\nremember",
        f"{magic} --followup\nremember",
        f"{magic} --new\nremember",
        "from orchestrator_nb.sessions import default_store\n"
        f"pid = int(open({str(starts)!r}).read().split()[0])\n"
        "print('BEFORE', os.path.exists(f'/proc/{pid}'))\n"
        "default_store().get_or_create('warm').close_agents()\n"
        "import time\ntime.sleep(0.2)\n"
        "state = open(f'/proc/{pid}/stat').read().split(') ')[-1][0] "
        "if os.path.exists(f'/proc/{pid}') else 'gone'\n"
        "print('AFTER', state)",
    ]
    nb = v4.new_notebook(cells=[v4.new_code_cell(s) for s in cells])
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    def said(cell: int) -> tuple[int, str]:
        text = json.dumps([o.get("data", o.get("text", "")) for o in nb.cells[cell].outputs])
        found = re.search(r"prompt number (\d+) in (fake-\d+-\d+)", text)
        assert found is not None, text
        return int(found.group(1)), found.group(2)

    first, followup, new = said(1), said(2), said(3)
    [pid] = [int(p) for p in starts.read_text().split()]  # one process for the three cells
    assert followup == (2, first[1])  # the same session, its second prompt
    assert not loads.exists()  # no session/load: nothing was replayed
    assert new[0] == 1 and new[1] != first[1] and new[1].startswith(f"fake-{pid}-")
    closing = "".join(o.get("text", "") for o in nb.cells[4].outputs)
    assert "BEFORE True" in closing  # warm until the session's agents are closed...
    assert re.search(r"AFTER (gone|Z)", closing), closing  # ...then stopped (or a zombie)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:  # and the kernel has shut down
        time.sleep(0.1)
    assert not alive(pid)


async def test_a_run_outside_a_kernel_keeps_nothing_warm(tmp_path: Path) -> None:
    """Without a kernel's loop nothing is kept: a script's run stops its agents at its end."""
    from orchestrator_nb.api import arun_agent
    from orchestrator_nb.config import load_settings

    ws = tmp_path / "ws"
    ws.mkdir()
    starts = tmp_path / "starts"
    os.environ["FAKE_ACP_STARTS"] = str(starts)
    try:
        cfg = load_settings(
            cwd=ws,
            trust=True,
            agents={"fake": {"driver": "acp", "argv": [sys.executable, str(FAKE)]}},
        )
        result = await arun_agent("fake", "remember", workspace=ws, config=cfg)
    finally:
        del os.environ["FAKE_ACP_STARTS"]
    assert result.ok
    [pid] = [int(p) for p in starts.read_text().split()]
    assert not alive(pid)


async def test_a_run_under_another_rehearsal_server_stops_the_kept_agents(tmp_path: Path) -> None:
    """Kept processes point at the rehearsal server they started with: a run under another
    one stops them first; a run under the same one finds them; close_agents ends the rest."""
    from orchestrator_nb._sync import run_sync
    from orchestrator_nb.agents.acp.client import AcpProcess
    from orchestrator_nb.agents.acp.warm import session_agents, warm_agents
    from orchestrator_nb.sessions import Session

    session = Session.create("tags")
    key = ("fake", str(tmp_path), (sys.executable, str(FAKE)))

    async def a_run(tag: str) -> tuple[int, bool]:
        """One run (on the kernel's loop, as a cell's): the pid of its agent, and if kept."""
        async with session_agents(session.id), warm_agents(tag) as pool:
            proc = pool.take(key)
            kept = proc is not None
            if proc is None:
                proc = AcpProcess([*key[2]], cwd=tmp_path, env=dict(os.environ))
                await proc.start()
                await proc.open_session()
                pool.keep(key, proc)
            pool.release(key)
            assert proc.proc is not None
            return proc.proc.pid, kept

    first, kept = run_sync(lambda: a_run("http://127.0.0.1:1/a"))
    assert not kept
    assert run_sync(lambda: a_run("http://127.0.0.1:1/a")) == (first, True)
    second, kept = run_sync(lambda: a_run("http://127.0.0.1:1/b"))
    assert not kept and second != first and not alive(first)
    session.close_agents()
    deadline = time.monotonic() + 5
    while alive(second) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(second)


async def test_a_sessions_rehearsed_runs_share_one_server_per_scenario(tmp_path: Path) -> None:
    """Kept for the session's next run on the kernel's loop; another scenario (or an edited
    scenario file) replaces it; close_agents ends it; a run outside a kernel keeps nothing."""
    import urllib.request

    from orchestrator_nb._sync import run_sync
    from orchestrator_nb.runs import open_rehearsal
    from orchestrator_nb.sessions import Session

    session = Session.create("servers")

    async def url_of(scenario: str | Path, who: Session | None = session) -> str:
        async with open_rehearsal(scenario, workspace=tmp_path, session=who) as endpoint:
            return str(endpoint.url)

    def answers(url: str) -> bool:
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=5):
                return True
        except OSError:
            return False

    first = run_sync(lambda: url_of("write-file"))
    assert run_sync(lambda: url_of("write-file")) == first and answers(first)
    other = run_sync(lambda: url_of("calculator"))
    assert other != first and not answers(first)
    custom = tmp_path / "mine.yaml"
    custom.write_text("name: mine\nturns:\n  - say: one\n")
    mine = run_sync(lambda: url_of(custom))
    assert run_sync(lambda: url_of(custom)) == mine and not answers(other)
    custom.write_text("name: mine\nturns:\n  - say: two, edited\n")
    edited = run_sync(lambda: url_of(custom))
    assert edited != mine and not answers(mine)
    session.close_agents()
    assert not answers(edited)
    outside = await url_of("write-file")  # not on the kernel's loop: stopped with its run
    assert not answers(outside)


async def test_a_kept_agent_gets_its_next_runs_session_while_the_first_step_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session's second run (a new task): the agent kept from the first gets its new session
    at the run's beginning, as a starting agent would, not when its step comes (the claude
    adapter starts a Claude Code process for each session)."""
    from orchestrator_nb._sync import run_sync
    from orchestrator_nb.config import load_settings
    from orchestrator_nb.sessions import Session
    from orchestrator_nb.workflow.api import arun

    ws = tmp_path / "ws"
    ws.mkdir()
    starts, events = tmp_path / "starts", tmp_path / "events"
    monkeypatch.setenv("FAKE_ACP_STARTS", str(starts))
    monkeypatch.setenv("FAKE_ACP_EVENTS", str(events))
    agents = {n: {"driver": "acp", "argv": [sys.executable, str(FAKE), n]} for n in "ab"}

    def two(first: str) -> dict[str, Any]:
        steps = [{"id": "one", "agent": "a", "prompt": first}]
        return {"steps": [*steps, {"id": "two", "agent": "b", "prompt": "remember"}]}

    workflows = {"warmup": two("remember"), "next": two("await-sessions 4")}
    cfg = load_settings(cwd=ws, trust=True, agents=agents, workflows=workflows)
    session = Session.create("kept-sessions")
    try:
        first = run_sync(
            lambda: arun("a task", "warmup", workspace=ws, config=cfg, session=session)
        )
        second = run_sync(
            lambda: arun("new task", "next", workspace=ws, config=cfg, session=session)
        )
    finally:
        session.close_agents()
    assert first.ok and second.ok, [s.error for s in (*first.steps, *second.steps)]
    assert len(starts.read_text().split()) == 2  # both agents kept from the first run
    assert "saw 4 sessions" in second.steps[0].text  # b's new one opened while a worked
    assert second.steps[1].text.startswith("prompt number 1 in")  # a fresh session for b
    assert second.steps[1].session_id != first.steps[1].session_id
