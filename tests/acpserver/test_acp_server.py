"""``orchestrator-nb acp`` driven by an SDK client in a subprocess: the real CLIs, rehearsed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from acp import RequestError
from acp.schema import (
    AgentMessageChunk,
    AgentPlanUpdate,
    AvailableCommandsUpdate,
    ToolCallProgress,
    ToolCallStart,
    UsageUpdate,
    UserMessageChunk,
)
from acp_helpers import (
    Recorder,
    alive_in_sessions,
    ask,
    command,
    connect,
    descendants,
    require_clis,
)

from orchestrator_nb.sessions import Session

pytestmark = [pytest.mark.real_cli, pytest.mark.slow]

GATED = """\
workflows:
  gated:
    description: a person approves before codex writes anything
    steps:
      - id: approve
        kind: gate
        message: "Let codex work on: {{ task }}?"
      - id: write
        agent: codex
        prompt: "{{ task }}"
"""


@pytest.fixture(autouse=True)
def _clis() -> None:
    require_clis()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@e"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=ws, check=True)
    (ws / "README.md").write_text("# demo\n")
    subprocess.run(["git", "add", "-A"], cwd=ws, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=ws, check=True)
    return ws


def _plan_states(rec: Recorder) -> list[dict[str, str]]:
    return [
        {e.content.split(" ", 1)[0]: e.status for e in u.entries} for u in rec.of(AgentPlanUpdate)
    ]


async def test_default_workflow_streams_plan_chunks_tool_calls_usage_then_stops(
    repo: Path,
) -> None:
    rec = Recorder()
    async with connect("--rehearse", "calculator", cwd=repo, recorder=rec) as (conn, _proc):
        session = await conn.new_session(cwd=str(repo), mcp_servers=[])
        reply = await ask(conn, session.session_id, "Write a small calculator module with tests.")
    assert reply.stop_reason == "end_turn"
    meta = reply.field_meta["orchestrator_nb"]
    assert (meta["workflow"], meta["outcome"]) == ("default", "completed")
    assert "ZeroDivisionError" in (repo / "calc.py").read_text()  # the real run's work
    # A run like any other: in the workspace's audit trail and its session.
    assert meta["run_id"] in (repo / ".orchestrator" / "audit.jsonl").read_text()
    saved = Session.load(
        repo / ".orchestrator" / "sessions" / f"{session.session_id}.json"
    ).to_json_dict()
    assert [(t["outcome"], t["run_id"]) for t in saved["turns"]] == [("completed", meta["run_id"])]

    # The commands were advertised: one per workflow, plus /review.
    advertised = rec.of(AvailableCommandsUpdate)
    names = {c.name for c in advertised[0].available_commands}
    assert {"default", "quick", "best-of-n", "parallel-review", "review"} <= names

    # The plan first, all pending; each step goes in_progress, then completed; all done at the end.
    kinds = rec.kinds()
    first_plan = kinds.index("plan")
    assert first_plan < kinds.index("chunk") and first_plan < kinds.index("tool_call")
    states = _plan_states(rec)
    assert states[0] == {"implement": "pending", "review": "pending", "refine": "pending"}
    assert states[-1] == {"implement": "completed", "review": "completed", "refine": "completed"}
    order = [(s["implement"], s["review"], s["refine"]) for s in states]
    assert order.index(("in_progress", "pending", "pending")) < order.index(
        ("completed", "in_progress", "pending")
    )
    assert any("round 2" in e.content for u in rec.of(AgentPlanUpdate) for e in u.entries)

    # Each agent's text arrives labelled with its step and agent, in the order they ran.
    text = rec.text()
    labels = ["[implement · codex]", "[review #1 · gemini]", "[refine #1 · claude]"]
    labels.append("[review #2 · gemini]")
    positions = [text.index(label) for label in labels]
    assert positions == sorted(positions)
    assert "workflow default (rehearsal): completed in " in text  # the closing summary

    # Tool calls: the agents' own (started, then updated), and each step's files as diffs.
    starts = rec.of(ToolCallStart)
    assert any(s.title.startswith("codex: ") for s in starts)
    ids = [s.tool_call_id for s in starts]
    assert len(ids) == len(set(ids))  # a step's second round does not reuse the first's
    assert any(i.startswith("review #1/") for i in ids)
    assert {p.tool_call_id for p in rec.of(ToolCallProgress)} & {s.tool_call_id for s in starts}
    changes = [s for s in starts if s.tool_call_id == "implement/changes"]
    assert len(changes) == 1 and changes[0].kind == "edit"
    done = [p for p in rec.of(ToolCallProgress) if p.tool_call_id == "implement/changes"]
    assert [p.status for p in done] == ["completed"]
    diffs = {c.path: c for c in changes[0].content if c.type == "diff"}
    assert set(diffs) == {"calc.py", "test_calc.py"}
    assert diffs["calc.py"].old_text is None  # a new file
    assert "def div(a: float, b: float) -> float:" in diffs["calc.py"].new_text
    refined = next(s for s in starts if s.tool_call_id == "refine #1/changes")
    calc = next(c for c in refined.content if c.type == "diff" and c.path == "calc.py")
    assert calc.old_text is not None and "ZeroDivisionError" not in calc.old_text
    assert "ZeroDivisionError" in calc.new_text

    # Usage after each finished step, growing; the last one is the run's total with its cost.
    usage = rec.of(UsageUpdate)
    assert len(usage) == 4 and [u.used for u in usage] == sorted(u.used for u in usage)
    assert usage[-1].used == reply.usage.input_tokens + reply.usage.output_tokens > 0
    assert usage[-1].cost is not None and usage[-1].cost.amount > 0
    assert kinds.index("tool_call") < kinds.index("usage")
    # The run's net change, then the summary closes the turn, after every step's updates.
    net = next(s for s in starts if s.tool_call_id == "run/changes")
    assert net.title == "workflow default changed 2 files"
    assert {c.path for c in net.content} == {"calc.py", "test_calc.py"}
    assert kinds[-3:] == ["tool_call", "tool_call_update", "chunk"]


async def test_cancel_mid_run_stops_every_agent_and_leaves_no_process(repo: Path) -> None:
    seen: dict[int, int] = {}
    started = asyncio.Event()

    def watch(update: object) -> None:
        if isinstance(update, AgentPlanUpdate) and any(
            e.status == "in_progress" for e in update.entries
        ):
            started.set()

    rec = Recorder(on_update=watch)
    async with connect("--rehearse", "hang", cwd=repo, recorder=rec) as (conn, proc):
        session = await conn.new_session(cwd=str(repo), mcp_servers=[])
        prompt = asyncio.ensure_future(ask(conn, session.session_id, "/quick Write calc.py"))
        await asyncio.wait_for(started.wait(), 60)
        deadline = time.monotonic() + 60
        while not any(p != proc.pid for p in descendants(proc.pid)):  # the agent CLI is up
            assert time.monotonic() < deadline, "the agent never started"
            await asyncio.sleep(0.1)
        seen = descendants(proc.pid)
        await conn.cancel(session_id=session.session_id)
        reply = await asyncio.wait_for(prompt, 60)
        assert reply.stop_reason == "cancelled"
        assert reply.field_meta["orchestrator_nb"]["outcome"] == "cancelled"
        # The server lives on, and nothing it started does.
        assert proc.returncode is None
        assert descendants(proc.pid) == {}
        assert alive_in_sessions({sid for sid in seen.values() if sid != proc.pid}) == []


async def test_a_client_that_goes_away_mid_run_leaves_no_process(repo: Path) -> None:
    started = asyncio.Event()

    def watch(update: object) -> None:
        if isinstance(update, AgentPlanUpdate) and any(
            e.status == "in_progress" for e in update.entries
        ):
            started.set()

    rec = Recorder(on_update=watch)
    async with connect("--rehearse", "hang", cwd=repo, recorder=rec) as (conn, proc):
        session = await conn.new_session(cwd=str(repo), mcp_servers=[])
        prompt = asyncio.ensure_future(ask(conn, session.session_id, "/quick Write calc.py"))
        await asyncio.wait_for(started.wait(), 60)
        deadline = time.monotonic() + 60
        while not descendants(proc.pid):
            assert time.monotonic() < deadline, "the agent never started"
            await asyncio.sleep(0.1)
        seen = descendants(proc.pid)
        server = proc
    # Leaving the block closed the server's stdin (and cancelled the pending prompt).
    with contextlib.suppress(BaseException):
        await prompt
    assert await asyncio.wait_for(server.wait(), 60) == 0
    assert alive_in_sessions(set(seen.values()) - {server.pid}) == []
    assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in seen)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize(("answer", "stop", "written"), [("approve", "end_turn", True),
                                                         ("reject", "refusal", False)])  # fmt: skip
async def test_a_gate_is_a_permission_request_and_the_answer_decides(
    repo: Path, answer: str, stop: str, written: bool
) -> None:
    (repo / "orchestrator.yaml").write_text(GATED)
    rec = Recorder(answers=[answer])
    async with connect("--rehearse", "write-file", cwd=repo, recorder=rec) as (conn, _proc):
        session = await conn.new_session(cwd=str(repo), mcp_servers=[])
        reply = await ask(conn, session.session_id, "/gated Create hello.txt")
    assert len(rec.permissions) == 1
    call, options = rec.permissions[0]
    assert call.title == "Gate approve: Let codex work on: Create hello.txt?"
    assert {o.option_id: o.kind for o in options} == {
        "approve": "allow_once",
        "reject": "reject_once",
    }
    assert reply.stop_reason == stop
    assert (repo / "hello.txt").exists() is written
    assert ("[write · codex]" in rec.text()) is written
    notes = reply.field_meta["orchestrator_nb"]
    assert notes["outcome"] == ("completed" if written else "cancelled")


ACP_INNER = """\
workflows:
  inner:
    description: gemini, through its ACP adapter, asks before it writes
    steps:
      - id: write
        agent: gemini-acp
        prompt: "{{ task }}"
"""


@pytest.mark.parametrize(("answer", "written"), [("allow_once", True), ("reject", False)])
async def test_an_inner_agents_permission_request_reaches_the_client_and_its_answer_decides(
    repo: Path, answer: str, written: bool
) -> None:
    (repo / "orchestrator.yaml").write_text(ACP_INNER)
    rec = Recorder(answers=[answer] * 5)
    async with connect("--rehearse", "write-file", cwd=repo, recorder=rec) as (conn, _proc):
        session = await conn.new_session(cwd=str(repo), mcp_servers=[])
        reply = await ask(conn, session.session_id, "/inner Create hello.txt")
    assert rec.permissions, "the inner agent's request never reached the client"
    call, options = rec.permissions[0]
    assert call.title.startswith("gemini-acp · write: "), call.title
    assert call.kind == "edit" and "hello.txt" in call.title
    assert {o.option_id: o.kind for o in options} == {
        "allow_once": "allow_once",
        "allow_always": "allow_always",
        "reject": "reject_once",
    }
    assert (repo / "hello.txt").exists() is written, (reply.stop_reason, rec.text())
    trail = (repo / ".orchestrator" / "audit.jsonl").read_text().splitlines()
    audit = [json.loads(line) for line in trail]
    decided = [e for e in audit if "permission_decided" in json.dumps(e)]
    assert decided, "the decision is not in the audit trail"
    first = json.dumps(decided[0])
    assert f'"decision": "{answer}"' in first and '"by": "user"' in first
    assert '"step_id": "write"' in first and '"agent": "gemini-acp"' in first


async def test_cancel_while_a_gate_waits_for_its_answer_stops_the_run(repo: Path) -> None:
    (repo / "orchestrator.yaml").write_text(GATED)
    rec = Recorder(hold=True)
    async with connect("--rehearse", "write-file", cwd=repo, recorder=rec) as (conn, _proc):
        session = await conn.new_session(cwd=str(repo), mcp_servers=[])
        prompt = asyncio.ensure_future(ask(conn, session.session_id, "/gated Create hello.txt"))
        deadline = time.monotonic() + 60
        while not rec.permissions:
            assert time.monotonic() < deadline, "the gate never asked"
            await asyncio.sleep(0.05)
        await conn.cancel(session_id=session.session_id)
        reply = await asyncio.wait_for(prompt, 60)
    assert reply.stop_reason == "cancelled"
    assert not (repo / "hello.txt").exists()
    assert "[write · codex]" not in rec.text()


async def test_load_session_replays_history_and_a_follow_up_resumes_the_agent(
    repo: Path,
) -> None:
    first = Recorder()
    async with connect("--rehearse", "write-file", cwd=repo, recorder=first) as (conn, _p):
        session = await conn.new_session(cwd=str(repo), mcp_servers=[])
        reply = await ask(conn, session.session_id, "/quick Create hello.txt")
        assert reply.stop_reason == "end_turn"
    sid = session.session_id
    saved = Session.load(repo / ".orchestrator" / "sessions" / f"{sid}.json").to_json_dict()
    thread = saved["turns"][0]["steps"][0]["native_session_id"]
    assert thread

    # A new server process (the chat reopened): load, then follow up.
    second = Recorder()
    async with connect("--rehearse", "write-file", cwd=repo, recorder=second) as (conn, _p):
        await conn.load_session(cwd=str(repo), session_id=sid, mcp_servers=[])
        replayed = list(second.updates)
        reply = await ask(conn, sid, "/quick Now say it again")
        with pytest.raises(RequestError):
            await conn.load_session(cwd=str(repo), session_id="../../etc", mcp_servers=[])
    assert isinstance(replayed[0], UserMessageChunk)
    assert replayed[0].content.text == "Create hello.txt"
    assert isinstance(replayed[1], AgentMessageChunk)
    assert "hello.txt" in replayed[1].content.text
    assert reply.stop_reason == "end_turn"
    assert "↪ follow-up of turn 1" in second.text()
    assert "Done again" in second.text()
    saved = Session.load(repo / ".orchestrator" / "sessions" / f"{sid}.json").to_json_dict()
    assert [t["task"] for t in saved["turns"]] == ["Create hello.txt", "Now say it again"]
    assert saved["turns"][1]["followup"] is True
    # codex resumed its own thread: the follow-up's step reports the same native session.
    assert saved["turns"][1]["steps"][0]["native_session_id"] == thread


async def test_bad_prompts_and_folders_are_clear_errors(repo: Path) -> None:
    rec = Recorder()
    async with connect(cwd=repo, recorder=rec) as (conn, _proc):
        session = await conn.new_session(cwd=str(repo), mcp_servers=[])
        with pytest.raises(RequestError) as unknown:
            await ask(conn, session.session_id, "/nosuch do it")
        assert "unknown command /nosuch" in str(unknown.value.data)
        assert "/quick" in str(unknown.value.data)
        with pytest.raises(RequestError) as empty:
            await ask(conn, session.session_id, "/quick")
        assert "needs a task" in str(empty.value.data)
        with pytest.raises(RequestError) as missing:
            await conn.new_session(cwd=str(repo / "nope"), mcp_servers=[])
        assert "not an existing folder" in str(missing.value.data)


async def test_stdout_carries_only_json_rpc_through_a_real_run(repo: Path) -> None:
    """Read the wire itself: every line the server writes is a JSON-RPC 2.0 message."""
    proc = await asyncio.create_subprocess_exec(
        *command(),
        "acp",
        "--rehearse",
        "write-file",
        cwd=repo,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    requests = [
        ("initialize", {"protocolVersion": 1, "clientCapabilities": {}}),
        ("session/new", {"cwd": str(repo), "mcpServers": []}),
    ]
    lines: list[dict[str, object]] = []

    async def call(number: int, method: str, params: dict[str, object]) -> dict[str, object]:
        message = {"jsonrpc": "2.0", "id": number, "method": method, "params": params}
        proc.stdin.write(json.dumps(message).encode() + b"\n")  # type: ignore[union-attr]
        while True:
            raw = await asyncio.wait_for(proc.stdout.readline(), 120)  # type: ignore[union-attr]
            assert raw, "the server closed stdout"
            line = json.loads(raw)  # anything else on stdout fails here
            assert line["jsonrpc"] == "2.0"
            lines.append(line)
            if line.get("id") == number and "method" not in line:
                return line

    try:
        for number, (method, params) in enumerate(requests):
            await call(number, method, params)
        session_id = lines[-1]["result"]["sessionId"]  # type: ignore[index]
        prompt = [{"type": "text", "text": "/quick Create hello.txt"}]
        done = await call(2, "session/prompt", {"sessionId": session_id, "prompt": prompt})
        assert done["result"]["stopReason"] == "end_turn"  # type: ignore[index]
        assert sum(1 for line in lines if line.get("method") == "session/update") > 5
    finally:
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 60) == 0


async def test_stopped_like_jupyter_ai_stops_it_mid_run_no_agent_is_left(repo: Path) -> None:
    """Jupyter AI closes the connection, then sends SIGINT and SIGTERM to the agent's group."""
    started = asyncio.Event()

    def watch(update: object) -> None:
        if isinstance(update, AgentPlanUpdate) and any(
            e.status == "in_progress" for e in update.entries
        ):
            started.set()

    rec = Recorder(on_update=watch)
    async with connect("--rehearse", "hang", cwd=repo, recorder=rec) as (conn, proc):
        session = await conn.new_session(cwd=str(repo), mcp_servers=[])
        prompt = asyncio.ensure_future(ask(conn, session.session_id, "/quick Write calc.py"))
        await asyncio.wait_for(started.wait(), 60)
        deadline = time.monotonic() + 60
        while not descendants(proc.pid):
            assert time.monotonic() < deadline, "the agent never started"
            await asyncio.sleep(0.1)
        seen = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGINT)
        os.kill(proc.pid, signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 5)  # before Jupyter AI's SIGKILL
        with contextlib.suppress(BaseException):
            await prompt
    assert alive_in_sessions(set(seen.values()) - {proc.pid}) == []


async def test_best_of_n_labels_side_by_side_agents_and_shows_the_applied_pick(
    repo: Path,
) -> None:
    rec = Recorder()
    async with connect("--rehearse", "best-of-n", cwd=repo, recorder=rec) as (conn, _proc):
        session = await conn.new_session(cwd=str(repo), mcp_servers=[])
        reply = await ask(conn, session.session_id, "/best-of-n Write greet.py")
    assert reply.stop_reason == "end_turn"
    # Three candidates ran at once: every stretch of text sits under its own step's label.
    speaker = None
    answers = {}
    for chunk in rec.of(AgentMessageChunk):
        text = chunk.content.text
        if text.startswith("\n\n**["):
            speaker = text.split("[", 1)[1].split(" ", 1)[0]
        elif "Wrote greet.py" in text:
            answers[speaker] = text
    assert set(answers) == {"candidate_codex", "candidate_claude", "candidate_gemini"}
    # Only the judged pick is applied, at the end of the run: it arrives as the run's edit.
    net = next(s for s in rec.of(ToolCallStart) if s.tool_call_id == "run/changes")
    assert [c.path for c in net.content] == ["greet.py"]
    assert (repo / "greet.py").read_text() == net.content[0].new_text


def test_an_unknown_scenario_is_refused_before_serving(repo: Path) -> None:
    done = subprocess.run(
        [*command(), "acp", "--rehearse", "nosuch"],
        cwd=repo,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "no scenario file or shipped scenario named 'nosuch'" in done.stderr
    assert "calculator" in done.stderr  # the hint lists the shipped ones


def test_files_on_stdin_and_stdout_work_like_pipes(repo: Path, tmp_path: Path) -> None:
    requests = tmp_path / "in.jsonl"
    lines = [
        {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": 1}},
        {"jsonrpc": "2.0", "id": 1, "method": "session/new", "params": {"cwd": str(repo)}},
    ]
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines))
    replies = tmp_path / "out.jsonl"
    with requests.open("rb") as stdin, replies.open("wb") as stdout:
        done = subprocess.run([*command(), "acp"], cwd=repo, stdin=stdin, stdout=stdout, timeout=60)
    assert done.returncode == 0
    answers = [json.loads(line) for line in replies.read_text().splitlines()]
    assert [a.get("id") for a in answers if "id" in a] == [0, 1]
    assert answers[0]["result"]["agentInfo"]["name"] == "orchestrator-nb"


async def test_a_failed_run_ends_the_turn_saying_why(repo: Path) -> None:
    rec = Recorder()
    async with connect("--rehearse", "rate-limit", cwd=repo, recorder=rec) as (conn, _proc):
        session = await conn.new_session(cwd=str(repo), mcp_servers=[])
        reply = await ask(conn, session.session_id, "/quick Write calc.py")
    assert reply.stop_reason == "end_turn"
    meta = reply.field_meta["orchestrator_nb"]
    assert meta["outcome"] == "failed" and "step implement failed" in meta["error"]
    text = rec.text()
    assert "✗ " in text  # the failed step says so under its label
    assert "workflow quick (rehearsal): failed after " in text
    assert "error: step implement failed" in text
    plan = rec.of(AgentPlanUpdate)[-1].entries
    assert [(e.content, e.status) for e in plan] == [
        ("implement — codex (failed: rate_limit)", "completed")
    ]


async def test_two_chats_in_one_workspace_take_turns_and_a_waiting_one_can_cancel(
    repo: Path,
) -> None:
    """The workspace lock applies as for any run: the second chat waits, and says so."""
    started = asyncio.Event()
    waiting = asyncio.Event()

    def watch(update: object) -> None:
        if isinstance(update, AgentPlanUpdate) and any(
            e.status == "in_progress" for e in update.entries
        ):
            started.set()
        if isinstance(update, AgentMessageChunk) and "⏳ waiting for run" in update.content.text:
            waiting.set()

    rec = Recorder(on_update=watch)
    async with connect("--rehearse", "hang", cwd=repo, recorder=rec) as (conn, proc):
        first = await conn.new_session(cwd=str(repo), mcp_servers=[])
        second = await conn.new_session(cwd=str(repo), mcp_servers=[])
        one = asyncio.ensure_future(ask(conn, first.session_id, "/quick Write calc.py"))
        await asyncio.wait_for(started.wait(), 60)
        two = asyncio.ensure_future(ask(conn, second.session_id, "/quick Write more.py"))
        await asyncio.wait_for(waiting.wait(), 60)
        await conn.cancel(session_id=second.session_id)
        assert (await asyncio.wait_for(two, 60)).stop_reason == "cancelled"
        assert not one.done()  # the first run goes on
        await conn.cancel(session_id=first.session_id)
        assert (await asyncio.wait_for(one, 60)).stop_reason == "cancelled"
        assert descendants(proc.pid) == {}
