"""An ACP client built on the SDK that drives ``orchestrator-nb acp`` in a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from acp import PROTOCOL_VERSION, RequestError, spawn_agent_process, text_block
from acp.schema import (
    AgentMessageChunk,
    AgentPlanUpdate,
    AllowedOutcome,
    AvailableCommandsUpdate,
    ClientCapabilities,
    DeniedOutcome,
    Implementation,
    PermissionOption,
    RequestPermissionResponse,
    SessionNotification,
    ToolCallProgress,
    ToolCallStart,
    UsageUpdate,
    UserMessageChunk,
)

from orchestrator_nb.agents.registry import agents_bin_dirs

CLIS = ("claude", "codex", "gemini")


def require_clis() -> None:
    missing = [
        c
        for c in CLIS
        if not shutil.which(c) and not any((d / c).exists() for d in agents_bin_dirs())
    ]
    if missing:
        reason = f"agent CLIs not installed ({', '.join(missing)}): run `make agents`"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def command() -> list[str]:
    """The installed console script beside this interpreter, else the module form."""
    script = Path(sys.executable).with_name("orchestrator-nb")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from orchestrator_nb.cli import main; raise SystemExit(main())"]


@dataclass
class Recorder:
    """Keeps every update in wire order; answers permission requests from ``answers``.

    The SDK runs each incoming notification in its own task, so handlers may run out of
    order; the stream observer sees the messages as they were read, which is what the
    agent promised.
    """

    answers: list[str] = field(default_factory=list)
    hold: bool = False  # never answer a permission request (a person who walked away)
    updates: list[Any] = field(default_factory=list)
    permissions: list[tuple[Any, list[PermissionOption]]] = field(default_factory=list)
    on_update: Callable[[Any], None] | None = None

    async def request_permission(
        self, options: list[PermissionOption], session_id: str, tool_call: Any, **kwargs: Any
    ) -> RequestPermissionResponse:
        self.permissions.append((tool_call, options))
        if self.hold:
            await asyncio.Event().wait()
        if not self.answers:
            return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        return RequestPermissionResponse(
            outcome=AllowedOutcome(option_id=self.answers.pop(0), outcome="selected")
        )

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        return None  # recorded by observe(), in wire order

    def observe(self, event: Any) -> None:
        message = event.message
        if event.direction != "incoming" or "method" not in message:
            return
        if message["method"] == "session/update":
            update = SessionNotification.model_validate(message["params"]).update
            self.updates.append(update)
            if self.on_update is not None:
                self.on_update(update)
        elif message["method"] == "session/request_permission":
            self.updates.append(("permission", message["params"]))

    async def write_text_file(self, *args: Any, **kwargs: Any) -> Any:
        raise RequestError.method_not_found("fs/write_text_file")

    async def read_text_file(self, *args: Any, **kwargs: Any) -> Any:
        raise RequestError.method_not_found("fs/read_text_file")

    async def create_terminal(self, *args: Any, **kwargs: Any) -> Any:
        raise RequestError.method_not_found("terminal/create")

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RequestError.method_not_found(method)

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        return None

    # -- reading what arrived -----------------------------------------------------------

    def of(self, kind: type) -> list[Any]:
        return [u for u in self.updates if isinstance(u, kind)]

    def text(self) -> str:
        return "".join(u.content.text for u in self.of(AgentMessageChunk))

    def kinds(self) -> list[str]:
        names = {
            AgentPlanUpdate: "plan",
            AgentMessageChunk: "chunk",
            ToolCallStart: "tool_call",
            ToolCallProgress: "tool_call_update",
            UsageUpdate: "usage",
            UserMessageChunk: "user",
            AvailableCommandsUpdate: "commands",
        }
        return [
            "permission" if isinstance(u, tuple) else names.get(type(u), type(u).__name__)
            for u in self.updates
        ]


@contextlib.asynccontextmanager
async def connect(
    *args: str, cwd: Path, recorder: Recorder
) -> AsyncIterator[tuple[Any, asyncio.subprocess.Process]]:
    """``orchestrator-nb acp ARGS`` started and initialized; stopped (stdin closed) at exit."""
    argv = [*command(), "acp", *args]
    async with spawn_agent_process(
        lambda _agent: recorder,
        argv[0],
        *argv[1:],
        cwd=cwd,
        env=dict(os.environ),
        observers=[recorder.observe],
    ) as (conn, proc):
        reply = await conn.initialize(
            protocol_version=PROTOCOL_VERSION,
            client_capabilities=ClientCapabilities(),
            client_info=Implementation(name="test-client", version="0"),
        )
        assert reply.agent_info is not None and reply.agent_info.name == "orchestrator-nb"
        assert reply.agent_capabilities is not None and reply.agent_capabilities.load_session
        yield conn, proc


async def ask(conn: Any, session_id: str, text: str) -> Any:
    return await conn.prompt(session_id=session_id, prompt=[text_block(text)])


def descendants(pid: int) -> dict[int, int]:
    """Every live descendant of ``pid`` → its session id, from /proc."""
    children: dict[int, list[int]] = {}
    sids: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        ppid, sid = int(fields[1]), int(fields[3])
        children.setdefault(ppid, []).append(int(entry.name))
        sids[int(entry.name)] = sid
    out: dict[int, int] = {}
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out[p] = sids.get(p, -1)
        todo.extend(children.get(p, []))
    return out


def alive_in_sessions(sids: set[int]) -> list[int]:
    """Processes (not zombies) still in any of these sessions."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sids and fields[0] != "Z":
            found.append(int(entry.name))
    return found
