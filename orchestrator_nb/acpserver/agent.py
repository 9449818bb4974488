"""The ACP agent: sessions in a workspace, a workflow run per prompt, cancel, gates, load.

Everything runs through the public API — :func:`orchestrator_nb.arun` with lifecycle
subscribers, a cancel event and a gate handler — so trust, secrets, the lock, logs and the
audit trail apply exactly as for any other run. A session is an
:class:`orchestrator_nb.sessions.Session` saved in ``<workspace>/.orchestrator/sessions/``
(no kernel involved); every prompt after the first is a follow-up, so each agent CLI resumes
its own conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acp import (
    PROTOCOL_VERSION,
    InitializeResponse,
    LoadSessionResponse,
    NewSessionResponse,
    PromptResponse,
    RequestError,
    text_block,
    update_agent_message,
    update_user_message,
)
from acp.helpers import update_available_commands
from acp.interfaces import Client
from acp.schema import (
    AgentCapabilities,
    AvailableCommand,
    AvailableCommandInput,
    Implementation,
    PromptCapabilities,
    UnstructuredCommandInput,
)
from acp.schema import Usage as AcpUsage

from .. import WorkflowResult, __version__, arun, rehearsal
from ..config import Settings, load_settings
from ..errors import OrchestratorError
from ..fsio import STATE_DIR_NAME as STATE_DIR
from ..fsio import ensure_dir, read_text
from ..lifecycle import LifecycleEvent, StepFinished
from ..observe.redact import redact
from ..runs import RunRequest, RunService
from ..sessions import SESSIONS_DIR, Session, Turn, decide_followup
from .commands import PromptError, commands, parse, prompt_text
from .gates import gate_handler
from .permissions import approver
from .stream import Progress

log = logging.getLogger("orchestrator_nb.acp")
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class Options:
    """What ``orchestrator-nb acp`` was started with."""

    workflow: str = "default"
    workspace: str | None = None  # None: each session's cwd
    rehearse: str | None = None
    config: str | None = None


@dataclass
class _Live:
    """A session this process serves: its record, its folder, the prompt running in it."""

    session: Session
    root: Path
    cancel: asyncio.Event | None = None
    running: asyncio.Task[Any] | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


def _error(exc: BaseException) -> RequestError:
    if isinstance(exc, OrchestratorError):
        text = " ".join(exc.message.split())
        detail = f"{text} (hint: {' '.join(exc.hint.split())})" if exc.hint else text
    else:
        detail = " ".join(str(exc).split()) or type(exc).__name__
    return RequestError.invalid_params({"details": redact(detail)})


class OrchestratorAgent:
    """One ACP connection's agent. ``shutdown()`` stops whatever still runs."""

    def __init__(self, options: Options | None = None) -> None:
        self.options = options or Options()
        self._conn: Client | None = None
        self._sessions: dict[str, _Live] = {}

    def on_connect(self, conn: Client) -> None:
        self._conn = conn

    @property
    def conn(self) -> Client:
        if self._conn is None:
            raise RuntimeError("not connected")
        return self._conn

    # -- set-up ---------------------------------------------------------------------------

    async def initialize(self, protocol_version: int, **kwargs: Any) -> InitializeResponse:
        return InitializeResponse(
            protocol_version=min(protocol_version, PROTOCOL_VERSION),
            agent_capabilities=AgentCapabilities(
                load_session=True,
                prompt_capabilities=PromptCapabilities(embedded_context=True),
            ),
            agent_info=Implementation(
                name="orchestrator-nb", title="orchestrator-nb", version=__version__
            ),
        )

    async def authenticate(self, method_id: str, **kwargs: Any) -> None:
        return None  # the agent CLIs carry their own logins; nothing to authenticate here

    def _root(self, cwd: str) -> Path:
        path = Path(self.options.workspace or cwd).expanduser()
        if not path.is_absolute() and self.options.workspace is None:
            raise RequestError.invalid_params({"details": f"cwd {cwd!r} must be absolute"})
        if not path.is_dir():
            raise RequestError.invalid_params(
                {"details": f"workspace {str(path)!r} is not an existing folder"}
            )
        return path.resolve()

    def _settings(self, root: Path) -> Settings:
        try:
            return load_settings(self.options.config, cwd=root)
        except OrchestratorError as exc:
            raise _error(exc) from None

    async def new_session(self, cwd: str, **kwargs: Any) -> NewSessionResponse:
        root = self._root(cwd)
        self._settings(root)  # a broken configuration is reported now, not at the first prompt
        session = Session.create(f"acp-{root.name or 'workspace'}")
        session.conversation = True  # a chat: every later prompt continues the session
        session.workspace = str(root)
        session.autosave()
        live = _Live(session, root)
        self._sessions[session.id] = live
        self._later(live, self._advertise(session.id, root))
        return NewSessionResponse(session_id=session.id)

    async def load_session(self, cwd: str, session_id: str, **kwargs: Any) -> LoadSessionResponse:
        root = self._root(cwd)
        if not _SESSION_ID.match(session_id):
            raise RequestError.invalid_params({"details": f"{session_id!r} is not a session id"})
        path = root / SESSIONS_DIR / f"{session_id}.json"
        try:
            session = Session.from_text(read_text(path, anchor=root), source=str(path))
        except FileNotFoundError:
            raise RequestError.resource_not_found(str(path)) from None
        except (OrchestratorError, ValueError, OSError) as exc:
            raise _error(exc) from None
        session.conversation = True
        session.workspace = str(root)
        live = self._sessions.get(session_id)
        if live is None or live.running is None:
            self._sessions[session_id] = live = _Live(session, root)
        for turn in session.turns:  # the history, as ACP asks, before the answer
            await self.conn.session_update(session_id, update_user_message(text_block(turn.task)))
            answer = turn.text or turn.summary()
            await self.conn.session_update(session_id, update_agent_message(text_block(answer)))
        self._later(live, self._advertise(session_id, root))
        return LoadSessionResponse()

    def _later(self, live: _Live, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        live.tasks.add(task)
        task.add_done_callback(live.tasks.discard)

    async def _advertise(self, session_id: str, root: Path) -> None:
        await asyncio.sleep(0)  # after the response that names the session
        with contextlib.suppress(Exception):
            await self.conn.session_update(session_id, self._commands_update(root))

    def _commands_update(self, root: Path) -> Any:
        hint = AvailableCommandInput(root=UnstructuredCommandInput(hint="what to do"))
        return update_available_commands(
            AvailableCommand(name=c.name, description=c.description, input=hint)
            for c in commands(self._settings(root))
        )

    # -- prompt ---------------------------------------------------------------------------

    def _live(self, session_id: str) -> _Live:
        live = self._sessions.get(session_id)
        if live is None:
            raise RequestError.invalid_params(
                {"details": f"no session {session_id!r} here: create one or load it first"}
            )
        return live

    async def prompt(self, session_id: str, prompt: list[Any], **kwargs: Any) -> PromptResponse:
        live = self._live(session_id)
        if live.running is not None:
            raise RequestError.invalid_request(
                {"details": "a prompt is already running in this session; cancel it first"}
            )
        live.running = asyncio.current_task()
        try:
            return await self._prompt(live, session_id, prompt_text(prompt))
        finally:
            live.running = None
            live.cancel = None

    async def _prompt(self, live: _Live, session_id: str, text: str) -> PromptResponse:
        settings = self._settings(live.root)
        known = commands(settings)
        # Again with each prompt: a client may have dropped the list it got before it knew the
        # session, and the workspace's orchestrator.yaml may have gained a workflow.
        await self.conn.session_update(session_id, self._commands_update(live.root))
        try:
            request = parse(text, known, self.options.workflow)
        except PromptError as exc:
            raise RequestError.invalid_params({"details": str(exc)}) from None
        session = live.session
        decision = decide_followup(request.task, session, workspace=live.root)
        task = session.followup_task(request.task) if decision.followup else request.task
        try:
            plan = await arun(
                task, request.workflow, workspace=live.root, config=settings, dry_run=True
            )
        except OrchestratorError as exc:
            raise _error(exc) from None
        wf = settings.workflows[request.workflow]
        cancel = live.cancel = asyncio.Event()
        progress = Progress(
            lambda update: self.conn.session_update(session_id, update),
            plan.plan,
            token_budget=wf.budget.max_tokens,
        )
        if decision.followup:
            progress.say(f"{decision}\n")
        try:
            async with self._rehearsal(live) as rehearsal:
                # The run service opens and closes the session turn and acts on the decision.
                run_request = RunRequest.build(
                    request.task,
                    workflow=request.workflow,
                    workspace=live.root,
                    config=settings,
                    session=session,
                    decision=decision,
                    rehearsal=rehearsal,
                    # The inner ACP agents' permission requests go to this client as well.
                    approvals=approver(
                        self.conn.request_permission,
                        session_id,
                        cancel,
                        progress,
                        settings.approvals,
                    ),
                )
                result = await RunService().execute(
                    run_request,
                    gate=gate_handler(self.conn.request_permission, session_id, cancel, progress),
                    cancel=cancel,
                    subscribers=[progress],
                )
        except BaseException as exc:
            await progress.close()
            if isinstance(exc, OrchestratorError):
                raise _error(exc) from None
            raise
        progress.run_changes(result.workflow, result.diff)
        progress.say(_closing(result))
        await progress.close()
        return _response(result, cancel.is_set() and result.outcome == "cancelled")

    @contextlib.asynccontextmanager
    async def _rehearsal(self, live: _Live) -> AsyncIterator[Any]:
        """The scenario's model server, with CLI homes kept per session in the workspace.

        The CLIs keep their own conversations in their home folders; keeping those beside the
        session lets a follow-up resume them, also after the server restarted (session/load).
        """
        if self.options.rehearse is None:
            yield None
            return
        home = live.root / STATE_DIR / "acp" / "rehearsal-homes" / live.session.id
        ensure_dir(home, anchor=live.root)
        async with rehearsal(self.options.rehearse, workspace=live.root, home=home) as running:
            yield running

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        live = self._sessions.get(session_id)
        if live is not None and live.cancel is not None:
            live.cancel.set()  # the engine stops every agent's process group

    async def shutdown(self) -> None:
        """The client went away: stop every run and wait until its agents are gone."""
        running = []
        for live in self._sessions.values():
            if live.cancel is not None:
                live.cancel.set()
            if live.running is not None:
                running.append(live.running)
            for task in live.tasks:
                task.cancel()
        if running:
            await asyncio.wait(running, timeout=30)

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RequestError.method_not_found(method)

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        return None


class _Recorder:
    """Each finished step goes into the session turn (autosaved), as the notebook does."""

    def __init__(self, session: Session, turn: Turn) -> None:
        self.session, self.turn = session, turn

    def __call__(self, event: LifecycleEvent) -> None:
        if isinstance(event, StepFinished):
            self.session.record_step(self.turn, event.result)


def _closing(result: WorkflowResult) -> str:
    lines = ["", "", "---", result.summary()]
    if result.error:
        lines.append(f"error: {result.error}")
    lines += [f"note: {n}" for n in result.notes]
    if result.changes:
        lines.append("changed: " + ", ".join(f"{c.path} ({c.kind})" for c in result.changes))
    return "\n".join(lines) + "\n"


def _response(result: WorkflowResult, by_client: bool) -> PromptResponse:
    if result.outcome == "completed":
        stop = "end_turn"
    elif result.outcome == "budget_exceeded":
        stop = "max_tokens"
    elif by_client:
        stop = "cancelled"
    elif result.outcome == "cancelled":
        stop = "refusal"  # a person rejected it at a gate
    else:
        stop = "end_turn"  # failed: the closing message says why
    u = result.usage
    return PromptResponse(
        stop_reason=stop,  # type: ignore[arg-type]
        usage=AcpUsage(
            total_tokens=u.input_tokens + u.output_tokens,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cached_read_tokens=u.cached_tokens,
        ),
        field_meta={
            "orchestrator_nb": {
                "run_id": result.run_id,
                "workflow": result.workflow,
                "outcome": result.outcome,
                "error": redact(str(result.error)) if result.error else None,
                "cost_usd": u.cost_usd,
            }
        },
    )


__all__ = ["Options", "OrchestratorAgent"]
