"""The :class:`Dashboard`: a control panel for workflow runs, made of stock ipywidgets.

Runs start in a worker thread (:func:`orchestrator_nb.notebook.background.launch`), so the
kernel stays free; Stop sets the run's cancel event and the engine stops every agent process
group. Lifecycle events only record state and poke a throttle; one render at most every
``throttle_s`` copies that state into the widgets, each under ``hold_sync()``. Every callback,
from a button, an observer, a thread or a timer, goes through one :class:`Dispatcher` that
shows what it raises in the panel.

It opens on the session's workspace (where its last cell ran) unless told otherwise; the
Workspace field moves it to another folder. While a run goes, the output tab follows the agent
that is running, the changed files are listed after each step, and the session history
follows every turn, the panel's own and those of ``%%orchestrate`` cells alike.

Tests (and users) drive it from Python: ``run_clicked()``, ``stop_clicked()``,
``revert_clicked(path)`` (at once; the Revert button asks first, see ``ask_revert``),
``open_workspace(path)``, ``export_clicked()``, ``await wait()``, ``state()``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from traitlets import Bool, HasTraits, Unicode

from ..config import Settings
from ..lifecycle import (
    BudgetWarning,
    LifecycleEvent,
    RunStarted,
    StepFinished,
)
from ..notebook.background import Run
from ..notebook.live import LiveDisplay
from ..observe.checks import existing_workspace
from ..observe.redact import redact_obj
from ..publish import html_widget, set_value
from ..rehearsal import shipped_scenarios
from ..sessions import Session, SessionStore, default_store
from ..workflow.result import WorkflowResult
from ..workspace import RevertResult
from .approvals import ApprovalsArea
from .changes import ChangesPanel
from .controls import AgentLights, Controls
from .dispatch import Dispatcher, Throttle, batched, set_if_changed, walk
from .history import HistoryPanel, metrics_summary
from .layout import flexible, row, scroll_x
from .progress import AgentTabs, Progress, error_html, section_html, status_html
from .runs import build_request, join, start_run, wait_for
from .tabs import OutputTabs
from .trust import TrustRow
from .where import WorkspaceField

Finished = Callable[[WorkflowResult], object]


def _section(title: str) -> Any:

    return html_widget(section_html(title))


class Dashboard(HasTraits):
    """The panel; display it (it is the last expression of a cell) or use ``.widget``."""

    status = Unicode("idle", help="idle, running, stopping, or the last run's outcome")
    running = Bool(False, help="a run started here has not finished")
    error = Unicode("", help="the latest error a callback raised ('' when dismissed)")
    run_id = Unicode("", help="the id of the latest run")

    def __init__(
        self,
        *,
        workspace: str | os.PathLike[str] | None = None,
        config: Settings | str | os.PathLike[str] | None = None,
        session: Session | None = None,
        store: SessionStore | None = None,
        task: str = "",
        workflow: str | None = None,
        rehearsal: str | None = None,
        max_iterations: int = 3,
        budget: float = 0.0,
        check_agents: bool = True,
        throttle_s: float = 0.2,
    ) -> None:
        super().__init__()
        import ipywidgets as widgets

        self.session = session or (store or default_store()).current
        if workspace is None:  # where the session's last cell ran, if that folder is still there
            last = self.session.workspace
            workspace = last if last and Path(last).is_dir() else "."
        self.workspace = existing_workspace(workspace)
        self._config = config
        self.trust_row = TrustRow(self.workspace, config, self._trusted)
        # The panel opens in an untrusted workspace too; its Run refuses what needs trust.
        self.settings = config if isinstance(config, Settings) else self.trust_row.settings()
        self._finished_callbacks: list[Finished] = []
        self._run: Run | None = None
        self._started = 0.0
        self.result: WorkflowResult | None = None
        self._render_lock = threading.RLock()
        self._dispatch = Dispatcher(self._show_error)
        self._throttle = Throttle(self._dispatch.wrap("render", self._render), throttle_s)
        self.progress = Progress(self._throttle.poke)
        self.outputs = AgentTabs(self._throttle.poke)
        self.output_tabs = OutputTabs(self.outputs)
        self._note_text = ""
        self._rehearsal: str | None = None

        self.controls = Controls(
            self.settings,
            sorted(shipped_scenarios()),
            task=task,
            workflow=workflow,
            rehearsal=rehearsal,
            max_iterations=max_iterations,
            budget=budget,
        )
        set_value(self.controls.conversation, self.session.conversation)
        self.lights = AgentLights(self.settings, self._dispatch.report)
        self.error_html = flexible(widgets.HTML(""), "300px")
        self.dismiss = widgets.Button(description="dismiss", layout=widgets.Layout(width="auto"))
        self.error_box = row([self.error_html, self.dismiss])
        self.error_box.layout.display = "none"
        self.progress_html = html_widget(scroll_x(self.progress.table_html()))
        self.tabs = self.output_tabs.tab
        self.changes = ChangesPanel(self._dispatch, self._note)
        self.history = HistoryPanel(self._dispatch, self.session, self.workspace)
        self.approvals = ApprovalsArea()  # ACP permission questions (dashboard/approvals.py)
        # Turns recorded anywhere (a %%orchestrate cell too) show here; held weakly by the session.
        self._unsubscribe = self.session.subscribe(self._throttle.poke)
        c = self.controls
        c.run.on_click(self._dispatch.wrap("run", self._start_task))
        c.stop.on_click(self._dispatch.wrap("stop", self._stop))
        c.followup_button.on_click(self._dispatch.wrap("follow-up", self._start_followup))
        c.conversation.observe(self._dispatch.wrap("conversation", self._conversation), "value")
        self.dismiss.on_click(self._dispatch.wrap("dismiss", self.dismiss_error))
        self.observe(self._dispatch.wrap("buttons", self._buttons), ["running"])
        self.where = WorkspaceField(self.workspace, self._open, self._dispatch.wrap)
        self.workspace_field = self.where.field
        agents_row = row([widgets.HTML("<b>Agents</b>&nbsp;"), self.lights.box])
        self.trust_row.button.on_click(self._dispatch.wrap("trust", self.trust_row.trust))
        self.widget = widgets.VBox(
            [
                self.where.header,
                self.where.box,
                c.box,
                agents_row,
                self.trust_row.box,
                self.error_box,
                _section("Progress"),
                self.progress_html,
                self.approvals.box,
                _section("Output per agent"),
                self.tabs,
                _section("Changed files"),
                self.changes.box,
                _section("Session history"),
                self.history.box,
            ],
            # No width: a block fills its cell with the border and padding inside, where
            # width 100% would add them on top and overflow.
            layout=widgets.Layout(min_width="0", border="1px solid #d0d7de", padding="6px"),
        )
        self.widget.add_class("orchestrator-dashboard")
        self._check_agents = check_agents
        if check_agents:
            self.lights.refresh()

    # -- display --------------------------------------------------------------------------

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.widget._repr_mimebundle_(include=include, exclude=exclude)

    def __repr__(self) -> str:
        return f"<Dashboard {self.workspace} status={self.status}>"

    # -- the buttons, callable from Python ---------------------------------------------------

    def run_clicked(self) -> Run | None:
        """Run the task in the box (as the Run button does); None if it could not start."""
        return self._dispatch.call("run", self._start_task)

    def followup_clicked(self) -> Run | None:
        """Run the follow-up box's text as a follow-up of the session's last turn."""
        return self._dispatch.call("follow-up", self._start_followup)

    def stop_clicked(self) -> bool:
        """Ask the running workflow to stop; False if nothing was running."""
        return bool(self._dispatch.call("stop", self._stop))

    def revert_clicked(self, path: str) -> RevertResult | None:
        """Undo the last run's change to ``path`` at once (a call from code is its own
        confirmation; the Revert button asks first, as :meth:`ask_revert` does)."""
        return self._dispatch.call(f"revert {path}", self.changes.revert, path)

    def ask_revert(self, path: str) -> list[str] | None:
        """What ``path``'s Revert button does: list what it would restore and ask to confirm."""
        return self._dispatch.call(f"revert {path}", self.changes.ask, path)

    def confirm_revert(self) -> RevertResult | None:
        """The confirmation's Revert button."""
        return self._dispatch.call("revert", self.changes.confirm)

    def open_workspace(self, path: str | os.PathLike[str]) -> Path | None:
        """Move the panel to another folder (as typing it in the Workspace field does)."""
        return self._dispatch.call("workspace", self._open, path)

    def select_file(self, path: str) -> None:
        """Show ``path``'s diff (its diff button)."""
        self._dispatch.call(f"diff {path}", self.changes.select, path)

    def export_clicked(self) -> Path | None:
        """Export the session to the path and format in the Export row."""
        return self._dispatch.call("export", self.history.export)

    def dismiss_error(self) -> None:
        with batched(self.error_html, self.error_box):
            self.error = ""
            set_value(self.error_html, "")
            self.error_box.layout.display = "none"

    def on_finished(self, callback: Finished) -> None:
        """Call ``callback(result)`` after each run; what it raises is shown in the panel."""
        self._finished_callbacks.append(callback)

    async def wait(self, timeout: float | None = None) -> WorkflowResult | None:
        """Wait for the current run without blocking the kernel's loop; None if it raised.

        The panel's final state is sent again afterwards, so a batch executor (nbclient),
        which records only messages of the executing cell, stores the finished run.
        """
        run = self._run
        if run is None:
            return None
        await wait_for(run, timeout)
        return self._settled(run)

    def join(self, timeout: float | None = None) -> WorkflowResult | None:
        """The blocking form of :meth:`wait` (the run itself stays in its thread)."""
        run = self._run
        if run is None:
            return None
        join(run, timeout)
        return self._settled(run)

    def _settled(self, run: Run) -> WorkflowResult | None:
        self.resync()
        return None if run.exception() is not None else run.result()

    def resync(self) -> None:
        """Render now and send every widget's whole state again."""
        with self._render_lock:
            self._dispatch.call("render", self._render)
            for w in walk(self.widget):
                # Output's msg_id is about capturing, not content; nbclient's Output emulation
                # breaks on an empty one it never saw set (AttributeError: no msg_id).
                w.send_state(key=[k for k in w.keys if k != "msg_id"])

    def state(self) -> dict[str, Any]:
        """What the panel shows, as plain data (redacted, as the widgets show it)."""
        shown: dict[str, Any] = redact_obj(
            {
                "workspace": str(self.workspace),
                "status": self.status,
                "running": self.running,
                "run_id": self.run_id,
                "error": self.error,
                "errors": list(self._dispatch.errors),
                "steps": self.progress.rows(),
                "agents": list(self.outputs.agents()),
                "changes": self.changes.state(),
                "selected": self.changes.selected,
                "revert_pending": self.changes.pending,
                "output_tab": self.output_tabs.selected,
                "history": [t.summary() for t in self.session.turns],
                "metrics": metrics_summary(),
            }
        )
        return shown

    def agent_text(self, agent: str) -> str:
        """The text of ``agent``'s output tab."""
        return self.outputs.text(agent)

    # -- running --------------------------------------------------------------------------

    def _start_task(self) -> Run:
        return self._start(self.controls.task.value, False)  # Run: a new task, never resumed

    def _start_followup(self) -> Run:
        run = self._start(self.controls.followup.value, True)
        set_value(self.controls.followup, "")
        return run

    def _trusted(self, settings: Settings) -> None:
        self.settings = settings

    def trust_clicked(self) -> Any:
        """Trust the workspace (as the Trust button does)."""
        return self._dispatch.call("trust", self.trust_row.trust)

    def _start(self, text: str, force: bool | None) -> Run:
        if self._run is not None and not self._run.done():
            raise RuntimeError("a run is in progress: Stop it, or wait for it to finish")
        if self.settings.ignored:
            self.trust_row.check_run()  # the same refusal as every other entry point
        request = build_request(
            text,
            force_followup=force,
            workflow=self.controls.workflow.value,
            scenario=self.controls.rehearsal.value or None,
            overrides=self.controls.overrides(),
            session=self.session,
            settings=self.settings,
            workspace=self.workspace,
        )
        self._reset_view()
        live = LiveDisplay(self.outputs)
        self.outputs.display = live
        request = self.approvals.attach(request, note=self._note)
        self._started = time.monotonic()
        self._rehearsal = self.controls.rehearsal.value or None
        self.status, self.running = "running", True
        try:
            self._run = start_run(
                request,
                live,
                subscribers=[self.progress, self.output_tabs, self._on_event],
                finished=lambda result: self._dispatch.call("run end", self._finished, result),
                failed=lambda exc: self._dispatch.call("run end", self._failed, exc),
                tick=self._throttle.poke,
            )
        except BaseException:
            self.status, self.running = "error", False
            raise
        if request.decision is not None and request.decision.previous is not None:
            self._note(str(request.decision))  # new task, or follow-up of turn N
        self._throttle.now()
        return self._run

    def _on_event(self, event: LifecycleEvent) -> None:
        if isinstance(event, RunStarted):
            self.run_id = event.run_id
        elif isinstance(event, StepFinished) and event.result.changes:
            self.changes.step_finished(event.result.changes, event.result.diff)
            self._throttle.poke()
        elif isinstance(event, BudgetWarning):
            self._note(f"budget {event.budget}: {event.used:g} of {event.limit:g} used")

    def _stop(self) -> bool:
        run = self._run
        if run is None or run.done():
            return False
        if run.cancel():
            self.status = "stopping"
            self._throttle.now()
            return True
        return False

    def _finished(self, result: WorkflowResult) -> None:
        self.changes.drop_steps()  # the run's own list replaces what its steps reported
        self.result = result
        if not result.ok:
            self.progress.stop_running("stopped" if result.outcome == "cancelled" else "failed")
        self.changes.show(result.changes, result.diff, result.workspace, result.run_id)
        if result.error:
            self._note(str(result.error))
        self.status, self.running = result.outcome, False
        self._throttle.now()
        for callback in self._finished_callbacks:
            self._dispatch.call(
                f"callback {getattr(callback, '__name__', callback)}", callback, result
            )

    def _failed(self, exc: BaseException) -> None:
        self.progress.stop_running("error")
        self.status, self.running = "error", False
        self._dispatch.report("run", exc)
        self._throttle.now()

    def _reset_view(self) -> None:
        self.progress.reset()
        self.outputs.reset()
        self.result = None
        self.run_id = ""
        self.changes.drop_steps()
        with self._render_lock:  # nothing in here may poke: a render waits on this lock
            self.output_tabs.reset()
        self.changes.clear()
        self.dismiss_error()
        self._note("")

    # -- rendering ------------------------------------------------------------------------

    def _render(self) -> None:
        with self._render_lock:
            with batched(self.progress_html, self.controls.status):
                set_if_changed(self.progress_html, value=scroll_x(self.progress.table_html()))
                set_if_changed(self.controls.status, value=self._status_html())
            self.output_tabs.render()
            if self.running:
                self.changes.show_steps()
            self.history.refresh()

    def _status_html(self) -> str:
        elapsed = time.monotonic() - self._started if self.running else None
        summary = self.result.summary() if self.result is not None else None
        # While it runs, a rehearsal says so (the summary says it once the run is over).
        rehearsal = self._rehearsal if self.running else None
        return status_html(self.status, elapsed, summary, self._note_text, rehearsal=rehearsal)

    def _note(self, text: str) -> None:
        self._note_text = text
        self._throttle.poke()

    def _show_error(self, message: str) -> None:
        with batched(self.error_html, self.error_box):
            self.error = message
            set_value(self.error_html, error_html(message))
            self.error_box.layout.display = "flex"

    def _buttons(self) -> None:
        c = self.controls
        with batched(c.run, c.stop, c.followup_button):
            c.run.disabled = self.running
            c.followup_button.disabled = self.running
            c.stop.disabled = not self.running

    def _open(self, path: str | os.PathLike[str]) -> Path:
        if self.running:
            raise RuntimeError("a run is in progress: Stop it, or wait for it to finish")
        root = existing_workspace(path)
        # Everything that can fail comes first: a bad orchestrator.yaml there leaves the panel
        # where it was.
        if isinstance(self._config, Settings):
            settings = self._config
        else:
            settings = self.trust_row.settings(root)
        self.controls.use(settings)
        self.workspace, self.settings = root, settings
        self.trust_row.move(root)
        self.history.workspace = root
        self.lights.use(settings)
        if self._check_agents:
            self.lights.refresh()
        self._reset_view()
        self.where.opened(root)
        self._throttle.now()
        return root

    def _conversation(self) -> None:
        self.session.conversation = bool(self.controls.conversation.value)
        self.history.refresh()


__all__ = ["Dashboard"]
