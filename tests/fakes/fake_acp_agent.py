"""A small ACP agent built with the SDK, for the paths the real agents do not take here.

The prompt says what to do, one instruction per line:

* ``write PATH TEXT``  - ask permission for an edit of PATH, then write TEXT there if allowed
  (unasked in the session mode "yolo"; the default mode, "ask", asks)
* ``run COMMAND``      - ask permission to execute COMMAND (nothing is run); say the answer
* ``hang``             - stream one chunk, then never answer (until ``session/cancel``)
* ``ignore-cancel``    - like hang, but ``session/cancel`` is ignored too
* ``fail-429``         - answer the prompt with a JSON-RPC error saying HTTP 429
* ``crash``            - exit with code 3 in the middle of the turn
* ``crash-with-child`` - the same, leaving a child that holds stdout open
* ``remember``         - say how many prompts this session has had (warm sessions keep count)
* ``await-starts N``   - wait (30 s at most) until ``FAKE_ACP_STARTS`` lists N processes
* ``await-sessions N`` - wait (30 s at most) until ``FAKE_ACP_EVENTS`` lists N sessions opened

Each turn costs $0.25; ``usage_update`` reports the session's running total, as ACP says.
``FAKE_ACP_STARTS`` names a file that gets one line per process start, ``FAKE_ACP_LOADS`` one
line per ``session/load``. ``FAKE_ACP_EVENTS`` names a file that gets ``start NAME`` when the
process starts and ``session NAME`` when it opens a session (NAME: the first argument, if any).
``FAKE_ACP_MODE=silent``
makes the process never answer ``initialize``; ``FAKE_ACP_OUTLIVE_EOF=1`` keeps it running after
its stdin ends (as codex-acp does); ``FAKE_ACP_MODE=not-acp`` prints text and exits.
``FAKE_ACP_LEAVE_CHILD`` names a file: the agent starts a child that writes its pid there and
then ``TERM`` for each SIGTERM it ignores (SIGINT too); at the end of stdin the agent sends it
SIGTERM and exits at once, leaving it stuck, as claude-agent-acp can leave Claude Code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any


def _note_event(what: str) -> None:
    path = os.environ.get("FAKE_ACP_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{what} {sys.argv[1] if len(sys.argv) > 1 else '-'}\n")


if __name__ == "__main__":
    _note_event("start")  # as the process starts, before the slow imports below

from acp import (  # noqa: E402
    PROTOCOL_VERSION,
    RequestError,
    run_agent,
    start_tool_call,
    text_block,
    tool_diff_content,
    update_agent_message,
    update_tool_call,
)
from acp.schema import (  # noqa: E402
    AgentCapabilities,
    InitializeResponse,
    NewSessionResponse,
    PermissionOption,
    PromptResponse,
    SessionMode,
    SessionModeState,
    SetSessionModeResponse,
    ToolCallLocation,
    ToolCallUpdate,
    UsageUpdate,
)

# Session modes: "ask" asks before writing (the default), "yolo" writes unasked.
MODES = ("ask", "yolo")


def _modes(current: str) -> SessionModeState:
    return SessionModeState(
        current_mode_id=current,
        available_modes=[SessionMode(id=m, name=m.title()) for m in MODES],
    )


OPTIONS = [
    PermissionOption(option_id="yes", name="Allow once", kind="allow_once"),
    PermissionOption(option_id="always", name="Always", kind="allow_always"),
    PermissionOption(option_id="no", name="Reject", kind="reject_once"),
]


class FakeAgent:
    def __init__(self) -> None:
        self.client: Any = None
        self.cwd: dict[str, str] = {}
        self.prompts: dict[str, int] = {}
        self.cancelled: dict[str, asyncio.Event] = {}
        self.mode: dict[str, str] = {}
        self.calls = 0

    def on_connect(self, conn: Any) -> None:
        self.client = conn

    async def initialize(self, protocol_version: int, **kwargs: Any) -> InitializeResponse:
        return InitializeResponse(
            protocol_version=PROTOCOL_VERSION,
            agent_capabilities=AgentCapabilities(load_session=True),
        )

    async def new_session(self, cwd: str, **kwargs: Any) -> NewSessionResponse:
        _note_event("session")
        sid = f"fake-{os.getpid()}-{len(self.cwd) + 1}"
        self.cwd[sid] = cwd
        self.prompts[sid] = 0
        self.mode[sid] = "ask"
        return NewSessionResponse(session_id=sid, modes=_modes("ask"))

    async def set_session_mode(self, session_id: str, mode_id: str, **kwargs: Any) -> Any:
        if mode_id not in MODES:
            raise RequestError.invalid_params({"modeId": mode_id})
        self.mode[session_id] = mode_id
        return SetSessionModeResponse()

    async def load_session(self, cwd: str, session_id: str, **kwargs: Any) -> None:
        loads = os.environ.get("FAKE_ACP_LOADS")
        if loads:  # a session/load replays a conversation: tests count them
            with open(loads, "a", encoding="utf-8") as out:
                out.write(f"{session_id}\n")
        self.cwd[session_id] = cwd
        self.prompts.setdefault(session_id, 0)

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        self.cancelled.setdefault(session_id, asyncio.Event()).set()

    async def say(self, sid: str, text: str) -> None:
        await self.client.session_update(
            session_id=sid, update=update_agent_message(text_block(text))
        )

    async def ask(self, sid: str, call: ToolCallUpdate) -> str | None:
        stamp = os.environ.get("FAKE_ACP_ASK_STAMP")
        if stamp:  # bench/acp_warm.py: when the request left the agent (CLOCK_MONOTONIC)
            with open(stamp, "a", encoding="utf-8") as out:
                out.write(f"{time.monotonic()}\n")
        answer = await self.client.request_permission(
            session_id=sid, tool_call=call, options=OPTIONS
        )
        outcome = answer.outcome
        return getattr(outcome, "option_id", None)

    async def prompt(self, prompt: list[Any], session_id: str, **kwargs: Any) -> PromptResponse:
        sid = session_id
        self.prompts[sid] = self.prompts.get(sid, 0) + 1
        text = "\n".join(getattr(block, "text", "") for block in prompt)
        cancelled = self.cancelled.setdefault(sid, asyncio.Event())
        cancelled.clear()
        for line in text.splitlines():
            words = line.strip().split(" ", 2)
            if not words or not words[0]:
                continue
            verb = words[0]
            if verb == "write" and len(words) == 3:
                await self._write(sid, words[1], words[2])
            elif verb == "run":
                await self._run(sid, line.strip()[4:])
            elif verb == "remember":
                await self.say(sid, f"prompt number {self.prompts[sid]} in {sid}")
            elif verb == "await-starts" and len(words) == 2:
                seen = await _await_lines("FAKE_ACP_STARTS", "", int(words[1]))
                await self.say(sid, f"saw {seen} starts")
            elif verb == "await-sessions" and len(words) == 2:
                seen = await _await_lines("FAKE_ACP_EVENTS", "session ", int(words[1]))
                await self.say(sid, f"saw {seen} sessions")
            elif verb in ("hang", "ignore-cancel"):
                await self.say(sid, "working on it")
                if verb == "ignore-cancel":
                    await asyncio.Event().wait()
                await cancelled.wait()
                return PromptResponse(stop_reason="cancelled")
            elif verb == "fail-429":
                raise RequestError(-32603, "Internal error: 429 Too Many Requests (rate limit)")
            elif verb in ("crash", "crash-with-child"):
                await self.say(sid, "about to crash")
                sys.stdout.flush()
                if verb == "crash-with-child":  # a child that keeps our stdout open
                    import subprocess

                    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
                os._exit(3)
        await self.client.session_update(
            session_id=sid,
            update=UsageUpdate(
                session_update="usage_update",
                used=10,
                size=100,
                cost={"amount": 0.25 * self.prompts[sid], "currency": "USD"},
            ),
        )
        return PromptResponse(stop_reason="end_turn")

    async def _write(self, sid: str, path: str, content: str) -> None:
        self.calls += 1
        call_id = f"call-{self.calls}"
        target = Path(path) if Path(path).is_absolute() else Path(self.cwd[sid]) / path
        diff = tool_diff_content(str(target), content + "\n", None)
        start = start_tool_call(
            call_id,
            f"Write {path}",
            kind="edit",
            status="pending",
            locations=[ToolCallLocation(path=str(target))],
            raw_input={"path": str(target)},
            content=[diff],
        )
        await self.client.session_update(session_id=sid, update=start)
        request = ToolCallUpdate(
            tool_call_id=call_id,
            title=f"Write {path}",
            kind="edit",
            locations=[ToolCallLocation(path=str(target))],
            content=[diff],
        )
        unasked = self.mode.get(sid) == "yolo"
        if unasked or await self.ask(sid, request) in ("yes", "always"):
            target.write_text(content + "\n", encoding="utf-8")
            done = update_tool_call(call_id, status="completed", content=[diff])
            await self.client.session_update(session_id=sid, update=done)
            await self.say(sid, f"wrote {path}")
        else:
            failed = update_tool_call(call_id, status="failed")
            await self.client.session_update(session_id=sid, update=failed)
            await self.say(sid, f"not allowed to write {path}")

    async def _run(self, sid: str, command: str) -> None:
        self.calls += 1
        call_id = f"call-{self.calls}"
        start = start_tool_call(
            call_id, command, kind="execute", status="pending", raw_input={"command": command}
        )
        await self.client.session_update(session_id=sid, update=start)
        request = ToolCallUpdate(
            tool_call_id=call_id, title=command, kind="execute", raw_input={"command": command}
        )
        allowed = await self.ask(sid, request) in ("yes", "always")
        status = "completed" if allowed else "failed"
        await self.client.session_update(
            session_id=sid, update=update_tool_call(call_id, status=status)
        )
        await self.say(sid, f"{'ran' if allowed else 'was refused'}: {command}")


async def _await_lines(variable: str, prefix: str, wanted: int, seconds: float = 30.0) -> int:
    """Wait (at most ``seconds``) until the file the variable names has ``wanted`` lines that
    start with ``prefix``; how many it has."""
    path = os.environ.get(variable, "")
    deadline = time.monotonic() + seconds
    seen = 0
    while time.monotonic() < deadline:
        found = _read(path).splitlines()
        seen = len([line for line in found if line.strip() and line.startswith(prefix)])
        if seen >= wanted:
            break
        await asyncio.sleep(0.05)
    return seen


STUCK = """
import os, signal, sys, time
log = open(sys.argv[1], "a", buffering=1)
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, lambda *_: log.write("TERM\\n"))
log.write(f"{os.getpid()}\\n")
while True:
    time.sleep(3600)
"""


def _stuck_child(log: str) -> Any:
    """A child that ignores SIGINT and SIGTERM (see the module), once it has said its pid."""
    if not log:
        return None
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", STUCK, log])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _read(log).strip():
        time.sleep(0.01)
    return child


def _read(path: str) -> str:
    with contextlib.suppress(OSError), open(path, encoding="utf-8") as text:
        return text.read()
    return ""


def main() -> None:
    starts = os.environ.get("FAKE_ACP_STARTS")
    if starts:
        with open(starts, "a", encoding="utf-8") as out:
            out.write(f"{os.getpid()}\n")
    mode = os.environ.get("FAKE_ACP_MODE", "")
    if mode == "not-acp":
        print("this is not an ACP agent")
        sys.exit(2)
    if mode == "silent":
        sys.stdin.read()
        return
    child = _stuck_child(os.environ.get("FAKE_ACP_LEAVE_CHILD", ""))
    asyncio.run(run_agent(FakeAgent()))
    if child is not None:
        child.terminate()  # and gone at once, without waiting for it
        os._exit(0)
    if os.environ.get("FAKE_ACP_OUTLIVE_EOF"):
        time.sleep(3600)  # like codex-acp: the end of stdin does not end the process


if __name__ == "__main__":
    main()
