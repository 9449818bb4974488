"""The dashboard driven from Python: its buttons clicked, its state read, no browser."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from dash_helpers import agent_processes, require, require_clis

from orchestrator_nb import trust
from orchestrator_nb.dashboard import Dashboard, dashboard, revert_paths
from orchestrator_nb.dashboard.changes import merge_changes
from orchestrator_nb.dashboard.dispatch import Dispatcher, Throttle, walk
from orchestrator_nb.errors import ConfigError, RevertConflict, WorkspaceError
from orchestrator_nb.events import FileChange
from orchestrator_nb.lifecycle import StepStarted
from orchestrator_nb.rehearsal import shipped_scenarios
from orchestrator_nb.sessions import SessionStore
from orchestrator_nb.workflow.result import WorkflowResult
from orchestrator_nb.workspace import Workspace


def _fake(ws: Path, **kwargs: object) -> Dashboard:
    return dashboard(
        workspace=ws, store=SessionStore(), workflow="solo", check_agents=False, **kwargs
    )


# -- without agents ------------------------------------------------------------------------


def test_every_control_is_there(fake_workspace: Path) -> None:
    d = _fake(fake_workspace, task="write a.txt saying hi", budget=1.5, max_iterations=4)
    c = d.controls
    assert c.task.value == "write a.txt saying hi"
    assert [v for _, v in c.workflow.options] == list(d.settings.workflows)
    assert "solo" in d.settings.workflows and "default" in d.settings.workflows
    assert [v for _, v in c.rehearsal.options] == ["", *sorted(shipped_scenarios())]
    assert c.max_iterations.value == 4 and c.overrides() == {
        "max_iterations": 4,
        "max_cost_usd": 1.5,
    }
    assert c.budget.value == "1.5" and c.budget.placeholder == "no limit"
    assert not c.conversation.value and c.followup.value == ""
    assert not c.run.disabled and c.stop.disabled
    assert set(d.lights.lights) == set(d.settings.agents)
    assert d.state()["status"] == "idle" and d.state()["steps"] == []
    bundle = d._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_status_lights_show_found_missing_version_and_install_hint(fake_workspace: Path) -> None:
    config = fake_workspace / "orchestrator.yaml"
    ghost = "agents:\n  ghost:\n    driver: claude\n    path: /nonexistent/claude\n"
    config.write_text(config.read_text().replace("agents:\n", ghost, 1))
    trust(fake_workspace)  # the changed configuration must be trusted again
    d = _fake(fake_workspace)
    assert "checking" in d.lights.lights["ghost"].value
    d.lights.refresh(background=False)
    ghost = d.lights.lights["ghost"]
    assert "missing" in ghost.value and "#cf222e" in ghost.value
    assert "Install:" in ghost.tooltip and "claude" in ghost.tooltip
    assert d.lights.statuses["fake"].found  # the command agent's python is there


async def test_a_run_of_a_fake_agent_updates_every_part(fake_workspace: Path) -> None:
    d = _fake(fake_workspace, task="write a.txt saying hello write b.txt saying bye")
    run = d.run_clicked()
    assert run is not None and d.running and d.controls.run.disabled
    assert not d.controls.stop.disabled
    result = await d.wait(30)
    assert isinstance(result, WorkflowResult) and result.ok, d.state()
    state = d.state()
    assert state["status"] == "completed" and not state["running"]
    assert [(s["step"], s["agent"], s["status"]) for s in state["steps"]] == [
        ("write", "fake", "ok")
    ]
    assert state["agents"] == ["fake"] and d.tabs.titles == ("fake",)
    assert "did: write a.txt saying hello" in d.agent_text("fake")
    assert [(c["path"], c["kind"], c["state"]) for c in state["changes"]] == [
        ("a.txt", "added", "changed"),
        ("b.txt", "added", "changed"),
    ]
    assert state["selected"] == "a.txt" and "+hello" in d.changes.diff_view.value
    assert "completed" in d.controls.status.value and not d.controls.run.disabled
    assert "turn 1: workflow solo, completed" in state["history"][0]
    assert "write a.txt saying hello" in d.history.table.value

    d.select_file("b.txt")
    assert "+bye" in d.changes.diff_view.value and "+hello" not in d.changes.diff_view.value
    revert_a, diff_a, _label = d.changes.list.children[0].children
    diff_a.click()
    assert d.changes.selected == "a.txt" and "+hello" in d.changes.diff_view.value
    revert_b = d.changes.list.children[1].children[0]
    revert_b.click()  # the per-file Revert asks first, saying what it will restore
    assert (fake_workspace / "b.txt").exists() and d.state()["revert_pending"] == "b.txt"
    assert d.changes.confirm_box.layout.display == "flex"
    assert "Revert b.txt?" in d.changes.confirm_html.value
    assert "delete b.txt, which this run created" in d.changes.confirm_html.value
    d.changes.cancel_button.click()
    assert d.changes.confirm_box.layout.display == "none" and d.state()["revert_pending"] is None
    assert (fake_workspace / "b.txt").exists()
    revert_b.click()
    d.changes.confirm_button.click()  # confirmed: b.txt goes, a.txt stays
    assert not (fake_workspace / "b.txt").exists() and (fake_workspace / "a.txt").exists()
    assert d.changes.confirm_box.layout.display == "none"
    assert [c["state"] for c in d.changes.state()] == ["changed", "reverted"]
    assert revert_b.disabled and not revert_a.disabled and d.error == ""
    d.select_file("nope.txt")
    assert "not among the changed files" in d.error


def test_join_waits_from_sync_code(fake_workspace: Path) -> None:
    d = _fake(fake_workspace, task="write j.txt saying joined")
    assert d.join() is None  # nothing ran yet
    d.run_clicked()
    result = d.join(30)
    assert result is not None and result.ok and d.status == "completed"
    assert (fake_workspace / "j.txt").read_text() == "joined\n"


async def test_a_callback_that_raises_is_shown_and_the_panel_keeps_working(
    fake_workspace: Path,
) -> None:
    d = _fake(fake_workspace)
    d.controls.run.click()  # the button itself, with an empty task
    assert "the task is empty" in d.error and d.error_box.layout.display == "flex"
    assert "the task is empty" in d.error_html.value and not d.running
    d.dismiss.click()
    assert d.error == "" and d.error_box.layout.display == "none"

    calls: list[str] = []

    def boom(result: WorkflowResult) -> None:
        calls.append(result.outcome)
        if len(calls) == 1:
            raise RuntimeError(f"boom after {result.outcome}")

    d.on_finished(boom)
    d.controls.task.value = "write b.txt saying one"
    d.controls.run.click()
    assert d.run_clicked() is None  # a second Run while one runs is refused, shown
    assert "a run is in progress" in d.error
    assert (await d.wait(30)) is not None
    assert "boom after completed" in d.error and "RuntimeError" in d.error_html.value
    assert d.status == "completed" and not d.controls.run.disabled

    d.controls.task.value = "write c.txt saying two"  # and it still runs
    assert d.run_clicked() is not None and d.error == ""
    assert (await d.wait(30)) is not None
    assert (fake_workspace / "c.txt").read_text() == "two\n"
    assert calls == ["completed", "completed"] and d.error == ""
    assert len(d.state()["errors"]) == 3


async def test_followup_and_conversation_mode(fake_workspace: Path) -> None:
    d = _fake(fake_workspace, task="write f.txt saying first")
    d.run_clicked()
    await d.wait(30)
    d.controls.followup.value = "write g.txt saying second"
    assert d.followup_clicked() is not None and d.controls.followup.value == ""
    await d.wait(30)
    turns = d.session.turns
    assert [t.followup for t in turns] == [False, True]
    # The follow-up's agent saw the previous turn first.
    assert "first line: Context: this continues" in d.agent_text("fake")
    d.controls.conversation.value = True
    assert d.session.conversation and "conversation mode" in d.history.table.value


def test_export_writes_the_history(fake_workspace: Path) -> None:
    d = _fake(fake_workspace)
    d.history.path.value = "out/history.json"
    d.history.format.value = "json"
    path = d.export_clicked()
    assert path == fake_workspace / "out" / "history.json" and '"turns"' in path.read_text()
    d.history.path.value = " "
    assert d.export_clicked() is None and "export path is empty" in d.error


def test_revert_paths_undoes_one_file_only(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("old keep\n")
    (tmp_path / "back.txt").write_text("old back\n")
    ws = Workspace(tmp_path, run_id="r1")
    with ws.step("edit"):
        (tmp_path / "keep.txt").write_text("new keep\n")
        (tmp_path / "back.txt").write_text("new back\n")
        (tmp_path / "added.txt").write_text("added\n")
    result = revert_paths(tmp_path, "r1", ["back.txt", "added.txt"])
    assert result.restored == ["back.txt"] and result.deleted == ["added.txt"]
    assert (tmp_path / "back.txt").read_text() == "old back\n"
    assert (tmp_path / "keep.txt").read_text() == "new keep\n"
    assert not (tmp_path / "added.txt").exists()
    with pytest.raises(WorkspaceError, match="no change to revert"):
        revert_paths(tmp_path, "r1", ["back.txt"])
    (tmp_path / "keep.txt").write_text("edited again\n")
    with pytest.raises(RevertConflict):
        revert_paths(tmp_path, "r1", ["keep.txt"])
    # The run's own revert sees the per-file revert in the journal.
    Workspace(tmp_path, run_id="r1").revert_run(force=True)
    assert (tmp_path / "keep.txt").read_text() == "old keep\n"


def test_the_dispatcher_shows_errors_and_the_throttle_collapses_updates() -> None:
    shown: list[str] = []
    dispatcher = Dispatcher(shown.append)
    assert dispatcher.call("ok", lambda: 3) == 3
    assert dispatcher.call("bad", lambda: 1 / 0) is None
    assert shown == ["bad: ZeroDivisionError: division by zero"]

    now = [0.0]
    timers: list[object] = []
    flushed: list[float] = []

    def schedule(delay: float, fn: object) -> object:
        timers.append(fn)
        return lambda: None

    throttle = Throttle(
        lambda: flushed.append(now[0]),
        0.2,
        clock=lambda: now[0],
        schedule=schedule,  # type: ignore[arg-type]
    )
    for _ in range(50):
        throttle.poke()
    assert flushed == [0.0] and len(timers) == 1  # one render now, one timer for the rest
    now[0] = 0.2
    timers[0]()  # type: ignore[operator]
    assert flushed == [0.0, 0.2]


def test_progress_events_render_at_most_a_few_times(fake_workspace: Path) -> None:
    d = _fake(fake_workspace)
    before = d._throttle.flushes
    for i in range(200):
        d.progress(StepStarted("r", f"s{i}", "fake", "agent"))
    assert d._throttle.flushes - before <= 2  # one now, perhaps one by the timer
    deadline = time.monotonic() + 2
    while "s199" not in d.progress_html.value and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "s199" in d.progress_html.value  # the last change is rendered by the timer
    assert d._throttle.flushes - before <= 4


# -- the real CLIs under rehearsal ---------------------------------------------------------


@pytest.mark.real_cli
async def test_real_run_diff_revert_and_export(workspace: Path) -> None:
    require_clis("codex")
    d = dashboard(
        workspace=workspace,
        store=SessionStore(),
        workflow="quick",
        rehearsal="write-file",
        task="Create hello.txt saying hi",
        check_agents=False,
    )
    started = time.monotonic()
    assert d.run_clicked() is not None
    assert time.monotonic() - started < 1.0  # the kernel is not blocked
    result = await d.wait(60)
    assert result is not None and result.ok, d.state()
    state = d.state()
    step = state["steps"][0]
    assert (step["step"], step["agent"], step["status"]) == ("implement", "codex", "ok")
    assert step["input_tokens"] > 0 and step["elapsed_s"] > 0
    assert "Done. I created hello.txt" in d.agent_text("codex")
    assert state["changes"] == [{"path": "hello.txt", "kind": "added", "state": "changed"}]
    assert "hello.txt" in d.changes.diff_view.value and "+hi" in d.changes.diff_view.value
    assert state["metrics"] is not None and state["metrics"]["runs"] >= 1
    # codex reports no cost: the kernel's metrics line says so rather than showing $0.
    assert state["metrics"]["agents"]["codex"] is False
    assert "not reported" in d.history.metrics.value

    reverted = d.revert_clicked("hello.txt")
    assert reverted is not None and reverted.deleted == ["hello.txt"]
    assert not (workspace / "hello.txt").exists()
    assert d.changes.state()[0]["state"] == "reverted"
    assert d.changes.list.children[0].children[0].disabled  # its Revert button
    assert d.revert_clicked("hello.txt") is None and "reverted already" in d.error

    d.history.path.value = "session.md"
    exported = d.export_clicked()
    assert exported is not None and "Create hello.txt saying hi" in exported.read_text()


@pytest.mark.real_cli
async def test_stop_cancels_a_hanging_run_within_two_seconds(workspace: Path) -> None:
    require_clis("codex")
    d = dashboard(
        workspace=workspace,
        store=SessionStore(),
        workflow="quick",
        rehearsal="hang",
        task="Create hello.txt saying hi",
        check_agents=False,
    )
    assert d.run_clicked() is not None
    deadline = time.monotonic() + 30
    while not agent_processes(workspace) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert agent_processes(workspace), "the agent never started"
    await asyncio.sleep(0.5)
    assert d.running and d.progress.rows()[0]["status"] == "running"
    assert "running</b> (rehearsal: hang, nothing real is called)" in d._status_html()

    clicked = time.monotonic()
    d.controls.stop.click()
    result = await d.wait(10.0)  # prompt, yet with room for a loaded machine
    assert time.monotonic() - clicked < 10.0
    assert result is not None and result.outcome == "cancelled"
    assert d.status == "cancelled" and not d.running and d.controls.stop.disabled
    assert "workflow quick (rehearsal): cancelled" in d._status_html()
    assert d.progress.rows()[0]["status"] == "cancelled"
    assert agent_processes(workspace) == []
    assert d.session.turns[-1].outcome == "cancelled"


def test_the_package_is_callable_as_orchestrator_nb_dashboard(fake_workspace: Path) -> None:
    import orchestrator_nb
    import orchestrator_nb.dashboard as package

    # Importing the subpackage made it the parent's attribute: calling it must still work.
    assert orchestrator_nb.dashboard is package
    panel = package(workspace=fake_workspace, store=SessionStore(), check_agents=False)
    assert isinstance(panel, Dashboard) and panel.controls.workflow.value == "default"
    assert package.__all__ == ["Dashboard", "dashboard", "revert_paths"]


def test_a_missing_tool_skips_saying_what_is_missing() -> None:
    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        require(False, "no chromium")
    require(True, "never shown")


def test_bad_arguments_name_what_is_known(fake_workspace: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown workflow 'nope'") as caught:
        _fake_with(fake_workspace, workflow="nope")
    assert "solo" in str(caught.value)
    with pytest.raises(ConfigError, match="unknown rehearsal scenario 'nope'"):
        _fake_with(fake_workspace, rehearsal="nope")
    with pytest.raises(WorkspaceError, match="not an existing folder"):
        _fake_with(tmp_path / "missing")
    own = tmp_path / "mine.yaml"
    own.write_text("name: mine\ndefault:\n  say: hi\n")
    d = _fake_with(fake_workspace, rehearsal=str(own))
    assert d.controls.rehearsal.value == str(own)
    assert ("mine.yaml", str(own)) in d.controls.rehearsal.options


def _fake_with(ws: Path, **kwargs: object) -> Dashboard:
    return dashboard(workspace=ws, store=SessionStore(), check_agents=False, **kwargs)


# -- the panel in its cell, and what it follows --------------------------------------------


def test_it_opens_on_the_sessions_workspace_and_moves_with_its_field(
    fake_workspace: Path, tmp_path: Path
) -> None:
    store = SessionStore()
    store.current.begin_turn("an earlier cell", workflow="solo", workspace=fake_workspace)
    d = dashboard(store=store, check_agents=False)  # no workspace given: the session's
    assert d.workspace == fake_workspace.resolve() and "solo" in d.settings.workflows
    assert d.workspace_field.value == str(fake_workspace.resolve())
    assert d.state()["workspace"] == str(fake_workspace.resolve())

    other = tmp_path / "other"
    other.mkdir()
    d.workspace_field.value = str(other)  # typed, then Enter
    assert d.workspace == other.resolve() and d.error == ""
    assert "solo" not in d.settings.workflows and d.controls.workflow.value == "default"
    assert d.history.workspace == other.resolve() and d.trust_row.workspace == other.resolve()
    d.workspace_field.value = str(tmp_path / "nowhere")
    assert "not an existing folder" in d.error
    assert d.workspace == other.resolve() and d.workspace_field.value == str(other.resolve())
    assert d.open_workspace(fake_workspace) == fake_workspace.resolve()
    assert "solo" in d.settings.workflows


def test_workflow_names_are_shortened_with_the_whole_name_a_hover_away(
    fake_workspace: Path,
) -> None:
    d = _fake(fake_workspace)
    labels = dict((v, label) for label, v in d.controls.workflow.options)
    long = [n for n, wf in d.settings.workflows.items() if len(f"{n} — {wf.description}") > 44]
    assert long, "the shipped descriptions are long enough to be shortened"
    for name in long:
        assert len(labels[name]) <= 44 and labels[name].endswith("…")
    d.controls.workflow.value = "thorough"
    assert d.controls.workflow.tooltip.startswith("thorough — codex implements")
    assert d.controls.workflow.tooltip.endswith("gemini verifies")


async def test_an_empty_budget_means_no_limit_and_a_bad_one_is_named(fake_workspace: Path) -> None:
    d = _fake(fake_workspace, task="write e.txt saying x")
    assert d.controls.budget.value == "" and d.controls.budget.placeholder == "no limit"
    assert "max_cost_usd" not in d.controls.overrides()
    d.controls.budget.value = "lots"
    assert d.run_clicked() is None and "the budget 'lots' is not a number" in d.error
    d.controls.budget.value = "$2.50"
    assert d.controls.overrides()["max_cost_usd"] == 2.5


def test_no_row_is_wider_than_a_default_jupyterlab_cell(fake_workspace: Path) -> None:
    import ipywidgets as widgets

    d = _fake(fake_workspace)
    d.session.begin_turn("a task " * 40, workflow="solo", workspace=fake_workspace)
    d.progress(StepStarted("r", "a_step_with_a_long_name" * 3, "fake", "agent"))
    d.changes.show(
        [FileChange("a/very/long/path/" * 8 + "file.txt", "added")], "", None, None, final=False
    )
    d.resync()
    for w in walk(d.widget):
        width = w.layout.width or ""
        assert not width.endswith("px") or int(width[:-2]) <= 200, (w, width)
        if isinstance(w, widgets.HBox):  # every row wraps instead of widening the panel
            assert w.layout.flex_flow == "row wrap", w
    # The class the browser test measures (scrollWidth <= clientWidth) by.
    assert "orchestrator-dashboard" in d.widget._dom_classes
    for html_value in (d.progress_html.value, d.history.table.value):
        assert "overflow-x:auto" in html_value  # tables scroll inside their own box


async def test_the_output_tab_follows_the_running_agent(fake_workspace: Path) -> None:
    d = _fake(fake_workspace, task="write two.txt saying two", throttle_s=0.0)
    d.controls.workflow.value = "pair"
    d.run_clicked()
    assert (await d.wait(30)) is not None and d.status == "completed", d.state()
    assert d.tabs.titles == ("fake", "twin") and d.state()["output_tab"] == "twin"
    d.tabs.selected_index = 0  # the user looks back: nothing moves it while nothing runs
    d.resync()
    assert d.state()["output_tab"] == "fake"


async def test_a_fallback_shows_in_the_tab_of_the_agent_that_took_the_step(
    fake_workspace: Path,
) -> None:
    d = _fake(fake_workspace, task="write f.txt saying fell", throttle_s=0.0)
    d.controls.workflow.value = "fallback"
    d.run_clicked()
    result = await d.wait(30)
    assert result is not None and result.ok, d.state()
    assert d.tabs.titles == ("fake",) and d.state()["output_tab"] == "fake"
    assert "absent is not installed: fake took the step" in d.agent_text("fake")
    assert [(s["step"], s["agent"], s["status"]) for s in d.state()["steps"]] == [
        ("write", "fake", "ok")
    ]


async def test_changed_files_are_listed_after_each_step(
    fake_workspace: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    d = _fake(fake_workspace, task=f"wait for {go}", throttle_s=0.0)
    d.controls.workflow.value = "pair"  # one.txt by the first step; the second waits for `go`
    d.run_clicked()
    deadline = time.monotonic() + 30
    # Rendered from the run's thread: wait for the last thing a render sets, the diff.
    while "+one" not in d.changes.diff_view.value and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert d.running, "the second step must still be waiting"
    assert d.changes.state() == [{"path": "one.txt", "kind": "added", "state": "changed"}]
    assert "1 file changed so far" in d.changes.summary.value
    assert "+one" in d.changes.diff_view.value
    revert = d.changes.list.children[0].children[0]
    assert revert.disabled and "when the run ends" in revert.tooltip
    assert d.ask_revert("one.txt") is None and "Revert waits for its end" in d.error
    go.write_text("")
    assert (await d.wait(30)) is not None and d.status == "completed"
    assert d.changes.state() == [{"path": "one.txt", "kind": "added", "state": "changed"}]
    assert "1 file changed</b>" in d.changes.summary.value
    assert not d.changes.list.children[0].children[0].disabled


async def test_history_follows_turns_that_other_cells_run(fake_workspace: Path) -> None:
    from orchestrator_nb.workflow import arun

    d = _fake(fake_workspace, throttle_s=0.0)
    assert "no runs yet" in d.history.table.value
    # What a %%orchestrate cell does: a run recorded in the same session, not by the panel.
    result = await arun(
        "write h.txt saying cell", "solo", workspace=fake_workspace, session=d.session
    )
    assert result.ok
    assert "write h.txt saying cell" in d.history.table.value
    assert "1 turn" in d.history.table.value


def test_the_session_signals_changes_and_holds_a_views_callback_weakly() -> None:
    import gc

    calls: list[str] = []

    class View:
        def changed(self) -> None:
            calls.append("view")

    session = SessionStore().current
    view = View()
    session.subscribe(view.changed)
    stop = session.subscribe(lambda: calls.append("fn"))
    turn = session.begin_turn("t")
    assert calls == ["view", "fn"]
    del view
    gc.collect()
    session.finish_turn(turn, "completed")  # the view is gone: only the function is called
    assert calls == ["view", "fn", "fn"]
    stop()
    session.reset()
    assert calls == ["view", "fn", "fn"]


def test_merge_changes_keeps_what_the_run_did_to_each_file() -> None:
    added = [FileChange("a", "added"), FileChange("m", "modified")]
    step = [FileChange("a", "modified"), FileChange("m", "deleted"), FileChange("n", "added")]
    assert merge_changes(added, step) == [
        FileChange("a", "added"),
        FileChange("m", "deleted"),
        FileChange("n", "added"),
    ]
    assert merge_changes([FileChange("t", "added")], [FileChange("t", "deleted")]) == []


def test_the_kernel_metrics_line_names_whom_its_cost_covers() -> None:
    from orchestrator_nb.dashboard.history import metrics_html

    totals = {"runs": 2, "runs_failed": 0, "agent_calls": 3, "agent_errors": 0, "retries": 1,
              "input_tokens": 9600, "output_tokens": 120, "cost_usd": 0.25,
              "agents": {"claude": True, "codex": False}}  # fmt: skip
    line = metrics_html(totals)
    assert "2 runs" in line and "1 retry" in line
    assert "9,600 in / 120 out tokens, $0.2500 (claude; codex not reported)" in line
    assert "cost not reported" in metrics_html(totals | {"cost_usd": None})
