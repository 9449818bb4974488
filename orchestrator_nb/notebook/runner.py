"""One cell's run: live display, gates, blocking or in the background.

The magic and :func:`orchestrator_nb.notebook.background.start` both describe a run as a
:class:`RunSpec` (a :class:`~orchestrator_nb.runs.RunRequest` and how to show it) and hand it
to :class:`CellRun`, which wires the live display and the gates, has the run service execute
the request (session turn, rehearsal, follow-up, engine) and turns a kernel interrupt into a
one-line summary.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, replace
from typing import Any

from .._sync import run_sync
from ..display import REHEARSAL_MARK, plural
from ..lifecycle import Subscriber
from ..publish import say, show
from ..runs import RunOptions, RunRequest, RunService, SessionRecorder, rehearsal_home
from ..sessions import Session, Turn
from ..workflow.engine import GateHandler
from ..workflow.result import WorkflowResult
from ..workspace.lock import Isolation
from .approvals import approvals_setup
from .background import BATCH_NOTE, Run, WidgetSink, await_at_cell_end, launch
from .gates import WidgetGate, gate_setup
from .live import CellSink, DisplaySink, LiveDisplay
from .render import workflow_bundle


@dataclass(frozen=True)
class RunSpec:
    """What a cell asked for: the run request, and how the cell shows it."""

    request: RunRequest
    quiet: bool = False

    @property
    def label(self) -> str:
        return self.request.label

    @classmethod
    def from_python(
        cls,
        task: str,
        workflow: str = "default",
        *,
        workspace: str | os.PathLike[str] = ".",
        session: Session | str | None = None,
        followup: bool | None = None,
        rehearsal: Any = None,
        dry_run: bool = False,
        quiet: bool = False,
        config: Any = None,
        trust: bool | None = None,
        variables: dict[str, Any] | None = None,
        isolation: Isolation = "shared",
        approvals: Any = None,
        **overrides: Any,
    ) -> RunSpec:
        request = RunRequest.build(
            task,
            workflow=workflow,
            workspace=workspace,
            config=config,
            session=session,
            force_followup=followup,
            trust=trust,
            rehearsal=rehearsal,
            options=replace(RunOptions.from_overrides(overrides), isolation=isolation),
            dry_run=dry_run,
            variables=dict(variables or {}),
            approvals=approvals,
        )
        return cls(request, quiet=quiet)


class CellRun:
    def __init__(self, spec: RunSpec, shell: Any, *, interactive: bool) -> None:
        self.spec = spec
        self.shell = shell
        self.interactive = interactive

    # -- the two ways to run --------------------------------------------------------------

    def blocking(self) -> WorkflowResult | None:
        """Run now; an interrupt cancels it and leaves one line, not a traceback."""
        sink = CellSink(self.shell) if self.shell is not None else None
        add = sink.add_widget if sink is not None else None
        gate, reason = gate_setup(self.shell, background=False, add_widget=add)
        unattended = not self.interactive and bool(getattr(self.shell, "kernel", None))
        if sink is not None and unattended:
            # Unattended execution (nbclient, nbval, papermill) keeps no step areas, only the
            # notes (gates, budgets) and the final result, which shows every step once: nobody
            # watches, and such clients cannot replay display updates anyway.
            sink.live = False
        live = self._live(sink, reason, steps=not unattended)
        self._ask_in_cell(add, live, background=False)
        subscribers = self._subscribers(live)
        try:
            result = run_sync(lambda: self._execute(None, subscribers, gate))
        except KeyboardInterrupt:
            say(self._stopped(live, "interrupted"))
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
            say(BATCH_NOTE)
            sink = CellSink(self.shell)
        add = sink.add_widget if isinstance(sink, WidgetSink) else None
        gate, reason = gate_setup(self.shell, background=True, add_widget=add)
        live = self._live(sink, reason)
        self._ask_in_cell(add, live, background=True)
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
            await_at_cell_end(self.shell, run, lambda: say(self._stopped(live, "interrupted")))
        return run

    # -- shared parts ---------------------------------------------------------------------

    def _ask_in_cell(self, add: Any, live: LiveDisplay | None, *, background: bool) -> None:
        """ACP permission requests become questions in this cell (see notebook/approvals.py),
        unless the caller passed its own ``approvals=``."""
        if self.spec.request.approvals is not None:
            return
        note = live.note if live is not None else None
        ask, _why = approvals_setup(self.shell, background=background, add_widget=add, note=note)
        if ask is not None:
            self.spec = replace(self.spec, request=replace(self.spec.request, approvals=ask))

    def _show(self, obj: Any) -> None:
        show(obj)

    def _live(
        self, sink: DisplaySink | None, gate_reason: str | None, *, steps: bool = True
    ) -> LiveDisplay | None:
        if self.spec.quiet or sink is None or self.spec.request.dry_run:
            return None
        return LiveDisplay(sink, gate_note=gate_reason, steps=steps)

    def _subscribers(self, live: LiveDisplay | None) -> list[Subscriber]:
        # The run service opens and closes the session turn; the cell only watches.
        return [live] if live is not None else []

    def _turn(self) -> Turn | None:
        session = self.spec.request.session
        if session is None or not session.turns or self.spec.request.dry_run:
            return None
        return session.turns[-1]

    def _finished(self, live: LiveDisplay | None, result: WorkflowResult) -> None:
        if live is not None:
            live.close(clear=True)

    def _failed(self, live: LiveDisplay | None, exc: BaseException) -> None:
        if live is not None:
            live.close()
        turn, session = self._turn(), self.spec.request.session
        if session is not None and turn is not None and turn.outcome == "running":
            # Interrupted between the run's end and the cell's: the turn still says running.
            session.finish_turn(turn, "cancelled", error=str(exc) or type(exc).__name__)

    def _stopped(self, live: LiveDisplay | None, why: str) -> str:
        self._failed(live, KeyboardInterrupt(why))
        turn = self._turn()
        done = len(turn.steps) if turn is not None else 0
        mark = f" ({REHEARSAL_MARK})" if self.spec.request.rehearsal is not None else ""
        finished = plural(done, "finished step")
        line = f"⏹ {why}: {self.spec.label}{mark} cancelled after {finished}"
        line += "; its agents were stopped."
        session = self.spec.request.session
        if session is not None:
            line += f" Session {session.name!r} keeps {plural(len(session.turns), 'turn')}."
        return line

    async def _execute(
        self, cancel: asyncio.Event | None, subscribers: list[Subscriber], gate: GateHandler | None
    ) -> WorkflowResult:
        return await RunService().execute(
            self.spec.request, subscribers=subscribers, gate=gate, cancel=cancel
        )


__all__ = ["CellRun", "RunSpec", "SessionRecorder", "rehearsal_home"]
