"""One cell's run: session turn, live display, gates, rehearsal, blocking or in the background.

The magic and :func:`orchestrator_nb.notebook.background.start` both describe a run as a
:class:`RunSpec` and hand it to :class:`CellRun`, which wires the subscribers (live display,
session recorder), runs the workflow (or one agent for ``-a``) and turns a kernel interrupt into
a one-line summary.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._sync import run_sync
from ..api import arun_agent
from ..config import Settings
from ..lifecycle import (
    AgentEventEmitted,
    EventBus,
    LifecycleEvent,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    Subscriber,
)
from ..sessions import FollowupDecision, Session, Turn
from ..workflow.api import arun
from ..workflow.engine import GateHandler
from ..workflow.result import Outcome, PlannedStep, WorkflowResult
from ..workspace import Workspace
from .background import BATCH_NOTE, Run, WidgetSink, await_at_cell_end, launch
from .gates import WidgetGate, gate_setup
from .live import CellSink, DisplaySink, LiveDisplay
from .render import workflow_bundle

if TYPE_CHECKING:
    from ..rehearsal.endpoint import RehearsalArg, RehearsalEndpoint

_HOME_ROOT: Path | None = None


def rehearsal_home(session_id: str) -> Path:
    """A CLI home kept for the kernel's life, so native sessions resume across cells."""
    global _HOME_ROOT
    if _HOME_ROOT is None:
        _HOME_ROOT = Path(tempfile.mkdtemp(prefix="orchestrator-nb-rehearsal-"))
        atexit.register(shutil.rmtree, _HOME_ROOT, True)
    home = _HOME_ROOT / session_id
    home.mkdir(exist_ok=True)
    return home


@dataclass
class RunSpec:
    """Everything a cell asked for, already validated."""

    task: str  # as the user wrote it (recorded in the session)
    prompt: str  # what the agents get (a follow-up carries the previous turn)
    workspace: Path
    workflow: str = "default"
    agent: str | None = None
    rehearse: str | None = None
    rehearsal: RehearsalArg = None  # a running rehearsal (or a Scenario) from Python
    dry_run: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    session: Session | None = None
    decision: FollowupDecision | None = None
    quiet: bool = False
    resume_id: str | None = None
    settings: Settings | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # more keywords for arun

    @property
    def label(self) -> str:
        return f"agent {self.agent}" if self.agent else f"workflow {self.workflow}"

    @classmethod
    def from_python(
        cls,
        task: str,
        workflow: str = "default",
        *,
        workspace: str | os.PathLike[str] = ".",
        session: Any = None,
        rehearsal: RehearsalArg = None,
        dry_run: bool = False,
        quiet: bool = False,
        **kwargs: Any,
    ) -> RunSpec:
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith("max_")}
        if "gate_policy" in kwargs:
            overrides["gate_policy"] = kwargs.pop("gate_policy")
        name = os.fspath(rehearsal) if isinstance(rehearsal, (str, os.PathLike)) else None
        return cls(
            task=task,
            prompt=task,
            workspace=Path(workspace).expanduser().resolve(),
            workflow=workflow,
            rehearse=name,
            rehearsal=None if name is not None else rehearsal,
            dry_run=dry_run,
            overrides=overrides,
            session=session if isinstance(session, Session) else None,
            quiet=quiet,
            extra={"session": session, **kwargs} if session is not None else kwargs,
        )


class SessionRecorder:
    """A lifecycle subscriber that puts every finished step into the turn (autosaved)."""

    def __init__(self, session: Session, turn: Turn) -> None:
        self.session = session
        self.turn = turn

    def __call__(self, event: LifecycleEvent) -> None:
        if isinstance(event, RunStarted):
            self.turn.run_id = event.run_id
            # Saved now: if the kernel dies in the first step, the next start finds this turn
            # by its run and marks it interrupted.
            self.session.autosave()
        elif isinstance(event, StepFinished):
            self.session.record_step(self.turn, event.result)


class CellRun:
    def __init__(self, spec: RunSpec, shell: Any, *, interactive: bool) -> None:
        self.spec = spec
        self.shell = shell
        self.interactive = interactive
        self.turn: Turn | None = None

    # -- the two ways to run --------------------------------------------------------------

    def blocking(self) -> WorkflowResult | None:
        """Run now; an interrupt cancels it and leaves one line, not a traceback."""
        gate, reason = gate_setup(self.shell, background=False)
        sink = CellSink(self.shell) if self.shell is not None else None
        if sink is not None and not self.interactive and getattr(self.shell, "kernel", None):
            # Unattended execution (nbclient, nbval, papermill) keeps no step areas, only the
            # notes (gates, budgets) and the final result: nobody watches, and such clients
            # cannot replay display updates anyway.
            sink.live = False
        live = self._live(sink, reason)
        subscribers = self._subscribers(live)
        try:
            result = run_sync(lambda: self._execute(None, subscribers, gate))
        except KeyboardInterrupt:
            print(self._stopped(live, "interrupted"))
            return None
        except BaseException as exc:
            self._failed(live, exc)
            raise
        self._finished(live, result)
        return result

    def background(self) -> Run:
        """Start in a worker thread and return its handle at once."""
        if self.interactive:
            sink: DisplaySink = WidgetSink()
            self._show(sink)
        else:
            print(BATCH_NOTE)
            sink = CellSink(self.shell)
        add = sink.add_widget if isinstance(sink, WidgetSink) else None
        gate, reason = gate_setup(self.shell, background=True, add_widget=add)
        live = self._live(sink, reason)
        subscribers = self._subscribers(live)

        async def body(cancel: asyncio.Event) -> WorkflowResult:
            if isinstance(gate, WidgetGate):
                gate.cancel = cancel
            try:
                result = await self._execute(cancel, subscribers, gate)
            except BaseException as exc:
                self._failed(live, exc)
                sink.show("orchestrator-error", {"text/plain": f"{type(exc).__name__}: {exc}"})
                raise
            self._finished(live, result)
            sink.show(f"orchestrator-result-{id(result)}", workflow_bundle(result))
            return result

        run = launch(body, self.spec.label)
        if not self.interactive and self.shell is not None:
            await_at_cell_end(self.shell, run, lambda: print(self._stopped(live, "interrupted")))
        return run

    # -- shared parts ---------------------------------------------------------------------

    def _show(self, obj: Any) -> None:
        from IPython import display as ipython_display

        show: Any = ipython_display.display
        show(obj)

    def _live(self, sink: DisplaySink | None, gate_reason: str | None) -> LiveDisplay | None:
        if self.spec.quiet or sink is None or self.spec.dry_run:
            return None
        return LiveDisplay(sink, gate_note=gate_reason)

    def _subscribers(self, live: LiveDisplay | None) -> list[Subscriber]:
        subscribers: list[Subscriber] = [live] if live is not None else []
        spec = self.spec
        if spec.session is not None and not spec.dry_run:
            self.turn = spec.session.begin_turn(
                spec.task,
                workflow=None if spec.agent else spec.workflow,
                agent=spec.agent,
                workspace=spec.workspace,
                decision=spec.decision,
            )
            subscribers.append(SessionRecorder(spec.session, self.turn))
        return subscribers

    def _finished(self, live: LiveDisplay | None, result: WorkflowResult) -> None:
        if live is not None:
            live.close(clear=True)
        if self.spec.session is not None and self.turn is not None:
            self.spec.session.finish_turn(
                self.turn, result.outcome, error=result.error, run_id=result.run_id
            )

    def _failed(self, live: LiveDisplay | None, exc: BaseException) -> None:
        if live is not None:
            live.close()
        if self.spec.session is not None and self.turn is not None:
            cancelled = isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError))
            outcome = "cancelled" if cancelled else "failed"
            self.spec.session.finish_turn(self.turn, outcome, error=str(exc) or type(exc).__name__)

    def _stopped(self, live: LiveDisplay | None, why: str) -> str:
        self._failed(live, KeyboardInterrupt(why))
        done = len(self.turn.steps) if self.turn is not None else 0
        line = f"⏹ {why}: {self.spec.label} cancelled after {done} finished step(s)"
        line += "; its agents were stopped."
        session = self.spec.session
        if session is not None:
            line += f" Session {session.name!r} keeps {len(session.turns)} turn(s)."
        return line

    @contextlib.contextmanager
    def _rehearsal(self) -> Iterator[RehearsalEndpoint | None]:
        spec = self.spec
        if spec.dry_run:
            yield None
            return
        from ..rehearsal.endpoint import rehearsal_scope

        home = None
        if spec.rehearse is not None and spec.session is not None:
            home = rehearsal_home(spec.session.id)  # a named scenario keeps its HOME per session
        chosen = spec.rehearse if spec.rehearse is not None else spec.rehearsal
        with rehearsal_scope(chosen, workspace=spec.workspace, home=home) as endpoint:
            yield endpoint

    async def _execute(
        self, cancel: asyncio.Event | None, subscribers: list[Subscriber], gate: GateHandler | None
    ) -> WorkflowResult:
        spec = self.spec
        with self._rehearsal() as reh:
            if spec.agent is not None:
                return await self._one_agent(spec.agent, reh, cancel, subscribers)
            return await arun(
                spec.prompt,
                spec.workflow,
                workspace=spec.workspace,
                config=spec.settings,
                rehearsal=reh,
                dry_run=spec.dry_run,
                gate=gate,
                cancel=cancel,
                subscribers=subscribers,
                **{"session": spec.session, **spec.extra},
                **spec.overrides,
            )

    async def _one_agent(
        self,
        agent: str,
        reh: RehearsalEndpoint | None,
        cancel: asyncio.Event | None,
        subscribers: list[Subscriber],
    ) -> WorkflowResult:
        """``-a``: one agent, with the same events, diff and result shape as a workflow."""
        spec = self.spec
        name = f"agent:{agent}"
        if spec.dry_run:
            plan = [PlannedStep(agent, "agent", agent, 0, spec.prompt)]
            return WorkflowResult("dry-run", name, spec.task, "completed", plan=plan)
        bus = EventBus()
        for subscriber in subscribers:
            bus.subscribe(subscriber)
        ws = Workspace(spec.workspace)
        run_id = ws.run_id
        bus.emit(RunStarted(run_id, name, spec.task, str(ws.root), rehearsal=reh is not None))

        async def call(prompt: str, resume: str | None) -> Any:
            bus.emit(StepStarted(run_id, agent, agent, "agent", None, prompt))
            with ws.step(agent) as tracker:
                result = await arun_agent(
                    agent,
                    prompt,
                    workspace=ws.root,
                    config=spec.settings,
                    rehearsal=reh,
                    step=agent,
                    resume=resume,
                    timeout=spec.timeout,
                    cancel=cancel,
                    on_event=lambda ev: bus.emit(AgentEventEmitted(run_id, agent, agent, ev)),
                    log_dir=ws.state.root / "runs" / run_id / "agents" / agent,
                )
            result.changes = tracker.changes.file_changes()
            result.diff = tracker.changes.diff
            bus.emit(StepFinished(run_id, agent, agent, result))
            return result

        result = await call(spec.task if spec.resume_id else spec.prompt, spec.resume_id)
        if spec.resume_id and result.error_kind == "config":  # the CLI lost that session
            result = await call(spec.prompt, None)
        outcome: Outcome = "completed" if result.ok else "failed"
        if result.error_kind == "cancelled":
            outcome = "cancelled"
        error = None if result.ok or result.error is None else f"{agent}: {result.error.message}"
        wf = WorkflowResult(
            run_id,
            name,
            spec.task,
            outcome,
            steps=[result],
            changes=list(result.changes),
            diff=result.diff,
            error=error,
            duration_s=result.duration_s,
        )
        bus.emit(RunFinished(run_id, name, outcome, wf.ok, wf.usage, wf.duration_s, error))
        return wf


__all__ = ["CellRun", "RunSpec", "SessionRecorder", "rehearsal_home"]
