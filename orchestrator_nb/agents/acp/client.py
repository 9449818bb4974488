"""One live ACP agent process: spawned in its own process group, spoken to with the SDK.

The process is started here rather than by the SDK's ``spawn_agent_process`` because the
project needs what :mod:`orchestrator_nb.process` gives every CLI: its own session (so the
whole group can be stopped: adapters run the real CLI as a child), the exact environment
(rehearsal drops inherited credentials), stderr drained into a log with a tail kept, and a
stop that leaves nothing behind. Every JSON-RPC message, both ways, is one line of
``rpc.log`` (redacted, written through :mod:`orchestrator_nb.fsio`) in the attempt's log
folder, like the other drivers' raw streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from acp import PROTOCOL_VERSION, RequestError
from acp.client.connection import ClientSideConnection
from acp.connection import StreamEvent
from acp.schema import (
    AllowedOutcome,
    ClientCapabilities,
    DeniedOutcome,
    Implementation,
    PermissionOption,
    RequestPermissionResponse,
    TextContentBlock,
    ToolCallUpdate,
)

from ... import fsio
from ...observe.redact import clip, clip_tail
from ...process import Grace, group_members, stop_group
from ...proctree import pdeathsig_preexec
from .stdout import JsonLines, route_sdk_logging

route_sdk_logging()

STDIO_LIMIT = 32 * 1024 * 1024  # one JSON-RPC line may carry a whole file's diff
# Output that is not JSON-RPC: how many lines of it rpc.log keeps, how much of it an error
# quotes, and how much a process may write before its first message before it is taken for a
# program that is not an ACP agent at all.
OTHER_LINES_LOGGED = 200
OTHER_QUOTED = 80
OTHER_BEFORE_FIRST_MESSAGE = 64 * 1024
# How often a request checks that the process still lives (its pid, not its pipes: a child it
# started may hold stdout open long after it died).
EXIT_POLL_S = 0.05
# Session options some adapters read from ``_meta`` (others ignore it): claude's adapter would
# otherwise start Claude Code with permissions bypassed where IS_SANDBOX is set, which Claude
# Code refuses as root; and its tool permissions are the client's (our policy) to answer.
SESSION_META: dict[str, Any] = {
    "claudeCode": {"options": {"allowDangerouslySkipPermissions": False}}
}
PermissionCallback = Callable[[dict[str, Any], list[dict[str, Any]]], Any]


class ModeError(Exception):  # not a ValueError: that would read as "not an ACP agent"
    """The agent does not offer the session mode its ``permission_mode`` names."""

    def __init__(self, mode: str, offered: list[str]) -> None:
        shown = ", ".join(offered) or "none"
        super().__init__(f"it offers no session mode {mode!r} (its modes: {shown})")
        self.mode = mode
        self.offered = offered


class _Client:
    """The client side the agent calls back: updates are read from the traffic log instead."""

    def __init__(self, owner: AcpProcess) -> None:
        self._owner = owner

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        return None

    async def request_permission(
        self,
        session_id: str,
        tool_call: ToolCallUpdate,
        options: list[PermissionOption],
        **kwargs: Any,
    ) -> RequestPermissionResponse:
        handler = self._owner.on_permission
        raw_options = [o.model_dump(by_alias=True, mode="json") for o in options]
        option_id = None
        if handler is not None:
            raw_call = tool_call.model_dump(by_alias=True, mode="json", exclude_none=True)
            option_id = await handler(raw_call, raw_options)
        if option_id is None:
            return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        return RequestPermissionResponse(
            outcome=AllowedOutcome(outcome="selected", option_id=option_id)
        )


# How long close() lets an adapter exit on EOF before signalling its group. Short: the run
# waits for this at its end, and an adapter that ignores EOF (codex-acp) still stops on
# SIGINT; measured in bench/acp_warm.py, where 0.5 s was a tenth of the warm run.
EOF_WAIT_S = 0.1
# The grace for what an adapter leaves behind when it exits on EOF. It has already told its
# CLI to stop (claude-agent-acp sends SIGTERM and exits); the CLI's pipes lead to the exited
# adapter, so no one is left to answer. Claude Code saves its transcript within milliseconds
# of that SIGTERM, but when the adapter is gone before its last reply, its shutdown waits on
# the dead pipe until its own 2 s failsafe, writing nothing more (seen with strace, about one
# close in three). So: SIGINT, SIGTERM, and SIGKILL a quarter of a second later, not 1.5 s.
LEFT_BEHIND_GRACE = Grace(0.1, 0.25)


class AcpProcess:
    """Start with :meth:`start`; :meth:`prompt` any number of times; :meth:`close` once."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_dir: Path | None = None,
        grace: Grace | None = None,
        mode: str | None = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.mode = mode  # the session mode to set on every session it opens (permission_mode)
        self.cwd = cwd
        self.env = dict(env)
        self.grace = grace or Grace()
        self.proc: asyncio.subprocess.Process | None = None
        self.conn: ClientSideConnection | None = None
        self.session_id: str | None = None
        self.load_session = False
        self.session_cost = 0.0  # the session's running cost as last reported (usage_update)
        self.on_message: Callable[[str, dict[str, Any]], None] | None = None
        self.on_permission: Any = None
        self.last_message = time.monotonic()
        self._messages = 0
        self._other = b""  # the start of what it wrote that is not JSON-RPC
        self._other_size = 0
        self._other_lines = 0
        self._not_acp = asyncio.Event()
        self._stderr_tail = bytearray()
        self._stderr_task: asyncio.Task[None] | None = None
        self._log: Path | None = None
        self._err_log: Path | None = None
        self.set_log_dir(log_dir)

    # ------------------------------------------------------------------ logs

    def set_log_dir(self, log_dir: Path | None) -> None:
        """Where this step's traffic goes (a warm process moves from step to step)."""
        self._log = self._err_log = None
        if log_dir is not None:
            fsio.ensure_dir(log_dir)
            self._log, self._err_log = log_dir / "rpc.log", log_dir / "stderr.log"

    def _observe(self, event: StreamEvent) -> None:
        direction = "in" if event.direction.value == "incoming" else "out"
        self.last_message = time.monotonic()
        self._messages += direction == "in"
        if self._log is not None:
            line = json.dumps({"direction": direction, "message": event.message})
            fsio.append_text(self._log, line + "\n")  # redacted there
        if self.on_message is not None:
            self.on_message(direction, event.message)

    def _other_output(self, line: bytes) -> bool:
        """A stdout line that is not JSON-RPC: kept (bounded) in rpc.log, measured. False
        (stop reading) once it has made clear this is not an ACP agent."""
        self._other_size += len(line)
        self._other_lines += 1
        if len(self._other) < OTHER_QUOTED:
            self._other += line[: OTHER_QUOTED - len(self._other)]
        if self._log is not None and self._other_lines <= OTHER_LINES_LOGGED:
            text = line.decode("utf-8", "replace").rstrip("\n")
            if self._other_lines == OTHER_LINES_LOGGED:
                text = f"(and from here on, lines that are not JSON-RPC are not kept) {text}"
            fsio.append_text(self._log, json.dumps({"direction": "in", "other": text}) + "\n")
        if self._messages == 0 and self._other_size > OTHER_BEFORE_FIRST_MESSAGE:
            self._not_acp.set()
        return not self._not_acp.is_set()

    def other_output(self) -> str:
        """What it wrote that is not JSON-RPC, as the start of an error message ("" if none)."""
        if not self._other_size:
            return ""
        head = clip(self._other.decode("utf-8", "replace").strip(), 60)
        return f"its output ({self._other_size} bytes) is not JSON-RPC: {head!r}"

    @property
    def stderr_tail(self) -> str:
        return clip_tail(bytes(self._stderr_tail).decode("utf-8", "replace"), 8000)

    async def _pump_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while True:
            data = await self.proc.stderr.read(65536)
            if not data:
                return
            self._stderr_tail += data
            del self._stderr_tail[:-65536]
            if self._err_log is not None:
                fsio.append_text(self._err_log, data.decode("utf-8", "replace"))

    # ------------------------------------------------------------------ lifecycle

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def start(self) -> None:
        """Spawn the agent and ``initialize``; FileNotFoundError/PermissionError pass through."""
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=os.fspath(self.cwd),
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            # Dies with the thread that started it, also when the kernel is SIGKILLed: a warm
            # agent outlives steps and cells, never the process that owns it. Runs start agents
            # on a loop thread that lives as long as the run (or the kernel's loop).
            preexec_fn=pdeathsig_preexec(),
            limit=STDIO_LIMIT,
        )
        self._stderr_task = asyncio.ensure_future(self._pump_stderr())
        assert self.proc.stdin is not None and self.proc.stdout is not None
        stdout = JsonLines(self.proc.stdout, self._other_output)
        self.conn = ClientSideConnection(
            cast(Any, _Client(self)), self.proc.stdin, stdout, observers=[self._observe]
        )
        info = await self._request(
            self.conn.initialize(
                protocol_version=PROTOCOL_VERSION,
                client_capabilities=ClientCapabilities(),
                client_info=Implementation(name="orchestrator-nb", version="1"),
            )
        )
        caps = info.agent_capabilities
        self.load_session = bool(caps and caps.load_session)

    async def _exited(self) -> None:
        """Returns once the process has exited. Not ``proc.wait()``, which also waits for
        its pipes to close: a child holding stdout would keep that waiting past the exit."""
        assert self.proc is not None
        while self.proc.returncode is None:
            await asyncio.sleep(EXIT_POLL_S)

    async def _request(self, awaitable: Any) -> Any:
        """Await a request, failing fast when the process dies before answering or turns out
        not to speak ACP (it floods stdout with something else)."""
        assert self.proc is not None
        task = asyncio.ensure_future(awaitable)
        died = asyncio.ensure_future(self._exited())
        babble = asyncio.ensure_future(self._not_acp.wait())
        try:
            await asyncio.wait({task, died, babble}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            for watch in (died, babble):
                if not watch.done():
                    watch.cancel()
        if not task.done() and babble.done():
            task.cancel()
            raise ConnectionError(self.other_output())
        if not task.done():
            await asyncio.sleep(0.2)  # the answer may be in the pipe behind the exit
            if not task.done():
                task.cancel()
                raise self._gone("")
        try:
            return task.result()
        except ConnectionError as exc:  # its stdout ended: say how the process did
            if self._not_acp.is_set():
                raise ConnectionError(self.other_output()) from None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._exited(), 0.5)
            raise self._gone(str(exc)) from None

    def _gone(self, why: str) -> ConnectionError:
        """The error for a process that stopped answering: its exit code (else ``why``) and
        the start of anything it wrote that was not JSON-RPC."""
        assert self.proc is not None
        code = self.proc.returncode
        if code is not None:
            why = f"the agent exited with code {code}"
        return ConnectionError("; ".join(p for p in (why, self.other_output()) if p))

    async def open_session(self, resume: str | None = None) -> str:
        """``session/load`` when resuming and the agent supports it, else ``session/new``;
        then ``session/set_mode`` when a mode is asked for and the session is in another."""
        assert self.conn is not None
        cwd = str(self.cwd)
        response: Any = None
        session_id: str | None = None
        if resume and self.load_session:
            try:
                response = await self._request(
                    self.conn.load_session(cwd=cwd, session_id=resume, **SESSION_META)
                )
                session_id = resume
            except RequestError:
                pass  # the agent no longer has it: a new session, as the CLIs do
        if session_id is None:
            response = await self._request(
                self.conn.new_session(cwd=cwd, mcp_servers=[], **SESSION_META)
            )
            session_id = str(response.session_id)
        self.session_id = session_id
        await self._set_mode(getattr(response, "modes", None))
        return session_id

    async def _set_mode(self, modes: Any) -> None:
        """Put the session in ``self.mode`` (an id the agent offers), unless it is in it."""
        if self.mode is None or self.conn is None or self.session_id is None:
            return
        offered = [m.id for m in getattr(modes, "available_modes", None) or []]
        if getattr(modes, "current_mode_id", None) == self.mode:
            return
        if self.mode not in offered:
            raise ModeError(self.mode, offered)
        await self._request(
            self.conn.set_session_mode(session_id=self.session_id, mode_id=self.mode)
        )

    async def prompt(self, text: str) -> Any:
        assert self.conn is not None and self.session_id is not None
        block = TextContentBlock(type="text", text=text)
        return await self._request(self.conn.prompt(session_id=self.session_id, prompt=[block]))

    async def cancel(self) -> None:
        """``session/cancel``: the agent should end the turn with stopReason "cancelled"."""
        if self.conn is not None and self.session_id is not None and self.alive:
            with contextlib.suppress(Exception):
                await self.conn.cancel(session_id=self.session_id)

    async def close(self, grace: Grace | None = None) -> None:
        """Close stdin (adapters exit on EOF), then stop the whole group; nothing is left."""
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.conn.close(), 2.0)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._exited(), EOF_WAIT_S)
        if grace is None:
            grace = LEFT_BEHIND_GRACE if proc.returncode is not None else Grace(0.5, 1.0)
        await stop_group(proc.pid, grace)
        if group_members(proc.pid):  # pragma: no cover - stop_group ends with SIGKILL
            await stop_group(proc.pid, Grace(0.1, 0.1))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._exited(), 5.0)
        # Its pipes may still be open: output nobody reads any more (a flood stops being read
        # once it is known not to be ACP) or a child outside the group holding them. Close our
        # ends, so no file descriptor or reader outlives the process.
        transport = getattr(proc, "_transport", None)
        if transport is not None:
            transport.close()
        if self._stderr_task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._stderr_task, 1.0)
        self.set_log_dir(None)


__all__ = ["AcpProcess", "ModeError"]
