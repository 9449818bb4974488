"""batch(): tasks in their own worktrees or copies, the journal, resuming, the caps, the summary."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from batch_helpers import Scripted, git, processes_in

import orchestrator_nb
from orchestrator_nb.agents.registry import agents_bin_dirs
from orchestrator_nb.batching import BatchProgress, BatchRow, abatch, batch, load_tasks
from orchestrator_nb.batching.progress import LineLog, TerminalBar, Tracker, _View, choose_display
from orchestrator_nb.errors import ConfigError, WorkspaceError
from orchestrator_nb.lifecycle import StepStarted

ONE = {"match": "ONE", "write": {"one.txt": "1\n"}, "say": "wrote one"}
TWO = {"match": "TWO", "write": {"two.txt": "2\n"}, "say": "wrote two"}
BAD = {"match": "BAD", "exit": 1, "say": "cannot"}


# -- tasks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("t.txt", "# a comment\nfirst task\n\n  second task  \n"),
        ("t.jsonl", '"first task"\n\n{"id": "b", "task": "second task", "vars": {"n": 2}}\n'),
        ("t.yaml", "- first task\n- {id: b, task: second task, workflow: quick, vars: {n: 2}}\n"),
        ("t.yml", "tasks:\n  - first task\n  - id: b\n    task: second task\n"),
    ],
)
def test_tasks_come_from_lists_and_files(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    tasks = load_tasks(tmp_path / name)
    assert [t.task for t in tasks] == ["first task", "second task"]
    assert tasks[0].id == "task-1"
    assert tasks[1].id == ("task-2" if name == "t.txt" else "b")
    if name in ("t.jsonl", "t.yaml"):
        assert tasks[1].vars == {"n": 2}
    listed = load_tasks(["x", {"id": "y", "task": "z", "workflow": "quick"}])
    assert [(t.id, t.workflow) for t in listed] == [("task-1", None), ("y", "quick")]


@pytest.mark.parametrize(
    ("tasks", "file", "expected"),
    [
        ([], None, "there are no tasks to run"),
        (["a", {"id": "task-1", "task": "b"}], None, "already used by task #1"),
        ([{"id": "a/b", "task": "x"}], None, "cannot name a branch and a folder"),
        ([{"task": "x", "agent": "codex"}], None, "task #1: unknown key"),
        ([3], None, "task #1 is a int"),
        (None, ("missing.txt", None), "missing.txt: the tasks file does not exist"),
        (None, ("t.txt", "# only comments\n\n"), "there are no tasks to run"),
        (None, ("t.jsonl", '"ok"\n{"task": \n'), "t.jsonl:2: not valid JSON"),
        (None, ("t.yaml", "- fine\n- {task: x, agnt: y}\n"), "t.yaml:2 (agnt): unknown key"),
        (None, ("t.yaml", "tasks: 3\n"), "expected a list of tasks"),
    ],
)
def test_bad_tasks_are_one_config_error_with_the_fix(
    tmp_path: Path, tasks: Any, file: tuple[str, str | None] | None, expected: str
) -> None:
    if file is not None:
        name, text = file
        if text is not None:
            (tmp_path / name).write_text(text)
        tasks = str(tmp_path / name)
    with pytest.raises(ConfigError) as info:
        load_tasks(tasks)
    assert expected in str(info.value)
    assert info.value.hint


def test_unknown_workflow_and_overrides_fail_before_any_task_runs(sc: Scripted) -> None:
    config = sc.setup([ONE])
    with pytest.raises(ConfigError, match=r"unknown workflow 'nope' \(tasks b"):
        batch(["do ONE", {"id": "b", "task": "x", "workflow": "nope"}], "w", workspace=sc.ws,
              config=config)  # fmt: skip
    with pytest.raises(ConfigError, match="unknown override"):
        batch(["do ONE"], "w", workspace=sc.ws, config=config, max_itrations=2)
    with pytest.raises(ConfigError, match="at least 1"):
        batch(["do ONE"], "w", workspace=sc.ws, config=config, max_concurrency=0)
    assert sc.log() == []


# -- isolation and the summary ------------------------------------------------------------


def test_copies_outside_git_and_the_summary(sc: Scripted) -> None:
    config = sc.setup([ONE, TWO, BAD])
    seen: list[BatchProgress] = []
    result = batch(["do ONE", "do TWO", "BAD"], "w", workspace=sc.ws, config=config,
                   on_progress=seen.append, progress=False)  # fmt: skip
    assert not result.ok
    assert [(r.id, r.outcome) for r in result] == [
        ("task-1", "completed"),
        ("task-2", "completed"),
        ("task-3", "failed"),
    ]
    home = sc.ws / ".orchestrator" / "batches" / result.batch_id
    assert (home / "task-1" / "one.txt").read_text() == "1\n"
    assert (home / "task-2" / "two.txt").read_text() == "2\n"
    assert (home / "task-2" / "README.md").exists()
    assert not (home / "task-2" / ".orchestrator" / "batches").exists()  # the state stays out
    assert not (sc.ws / "one.txt").exists()  # the workspace itself is untouched
    assert result.row("task-1").where == f".orchestrator/batches/{result.batch_id}/task-1"
    assert "exited with code 1" in (result.row("task-3").error or "")
    assert result.results["task-1"].text == "wrote one"
    assert [c.path for c in result.results["task-2"].changes] == ["two.txt"]

    records = [json.loads(x) for x in Path(result.journal).read_text().splitlines()]
    assert [r["kind"] for r in records] == ["batch", "task", "task", "task"]
    assert seen[0].event == "start" and seen[-1].event == "done"
    assert seen[-1].finished == 3 and seen[-1].failed == 1 and seen[-1].journal == result.journal
    assert {p.task_id for p in seen if p.event == "step"} == {"task-1", "task-2", "task-3"}

    text = str(result)
    assert "task    outcome    tokens in" in text and "2/3 completed" in text
    assert not result.rehearsal and "rehearsal" not in text  # real agents: real figures
    bundle = result._repr_mimebundle_()
    assert bundle["text/plain"] == text
    assert "<table" in bundle["text/html"] and "<style" not in bundle["text/html"]
    csv_text = result.to_csv(sc.root / "s.csv").read_text().splitlines()
    assert csv_text[0].startswith("id,workflow,outcome,input_tokens,output_tokens,cost_usd")
    assert csv_text[1].startswith("task-1,w,completed,0,0,,")
    data = json.loads(result.to_json(sc.root / "s.json").read_text())
    assert data["ok"] is False and [t["id"] for t in data["tasks"]][-1] == "task-3"


def test_worktrees_in_git_leave_each_result_committed_on_its_branch(sg: Scripted) -> None:
    config = sg.setup([ONE, TWO, BAD])
    result = batch(["do ONE", "do TWO", "BAD"], "w", workspace=sg.ws, config=config, progress=False)
    assert [r.outcome for r in result] == ["completed", "completed", "failed"]
    branch = f"orchestrator-batch/{result.batch_id}/task-1"
    assert result.row("task-1").where == branch
    assert git(sg.ws, "show", f"{branch}:one.txt") == "1\n"
    assert "task-1: do ONE" in git(sg.ws, "log", "-1", "--format=%B", branch)
    assert git(sg.ws, "show", f"orchestrator-batch/{result.batch_id}/task-2:two.txt") == "2\n"
    # the failed task changed nothing: its branch is HEAD itself
    assert git(sg.ws, "rev-parse", f"orchestrator-batch/{result.batch_id}/task-3") == git(
        sg.ws, "rev-parse", "HEAD"
    )
    assert len(git(sg.ws, "worktree", "list").splitlines()) == 1  # worktrees removed
    assert git(sg.ws, "status", "--porcelain") == ""  # the user's checkout is untouched
    assert result.notes == []


def test_progress_displays_for_a_terminal_a_log_and_a_notebook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "80")

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    row = BatchRow("b", "w", "t", "failed", seconds=1.25)
    tty, log = Tty(), io.StringIO()
    bar, lines = choose_display(None, tty), choose_display(None, log)
    assert isinstance(bar, TerminalBar) and isinstance(lines, LineLog)
    assert choose_display(False, tty) is None
    for display in (bar, lines):
        tracker = Tracker(2, [BatchRow("a", "w", "t", "completed")], None, display)
        tracker.begin()
        tracker.started("b")
        tracker.on_lifecycle("b", StepStarted("run", "review", "a", "agent"))
        tracker.finished_task(row)
        tracker.end()
    assert "1/2 done · running: b [review]" in tty.getvalue()
    assert tty.getvalue().endswith("[####################] 2/2 done, 1 failed".ljust(79) + "\n")
    assert log.getvalue() == "batch: 2 tasks, 1 done earlier\n[2/2] b: failed (1.2 s)\n"
    view = _View(BatchProgress("step", 4, 1, 1, {"c": "write"}, 0.5))._repr_mimebundle_()
    assert view["text/plain"] == "batch: 1/4 done · running: c [write]"
    assert 'style="width:25%' in view["text/html"] and "<style" not in view["text/html"]


# -- concurrency --------------------------------------------------------------------------


async def test_max_concurrency_caps_the_tasks_running_at_once(sc: Scripted) -> None:
    config = sc.setup([{"match": "SLEEP", "sleep": 0.8, "say": "slept"}])  # overlaps under load too
    running: list[int] = []
    result = await abatch([f"SLEEP {i}" for i in range(5)], "w", workspace=sc.ws, config=config,
                          max_concurrency=2, progress=False,
                          on_progress=lambda p: running.append(len(p.running)))  # fmt: skip
    assert result.ok
    assert sc.peak() == 2  # really concurrent, never more than the cap
    assert max(running) == 2


def test_the_engines_agent_caps_hold_across_tasks(sc: Scripted) -> None:
    # One agent slot in the configuration: three tasks at once must still queue for it.
    config = sc.setup([{"match": "SLEEP", "sleep": 0.3}], limits={"per_agent": {"a": 1}})
    result = batch([f"SLEEP {i}" for i in range(3)], "w", workspace=sc.ws, config=config,
                   max_concurrency=3, progress=False)  # fmt: skip
    assert result.ok
    assert sc.peak() == 1


async def test_the_sync_form_works_inside_a_running_event_loop(sc: Scripted) -> None:
    flows = {"w": {"steps": [{"id": "s", "agent": "a", "prompt": "{{ task }} n={{ n }}"}]}}
    config = sc.setup([ONE], workflows=flows)

    def broken(progress: BatchProgress) -> None:
        raise RuntimeError("a bug in the caller's callback")

    # `batch` is a plain function of the package: `orchestrator_nb.batch(...)`.
    result = orchestrator_nb.batch([{"task": "do ONE", "vars": {"n": 7}}], "w", workspace=sc.ws,
                                   config=config, progress=False, on_progress=broken)  # fmt: skip
    assert result.ok  # ran in a worker thread, as in a notebook cell, despite the callback
    assert sc.prompts() == ["do ONE n=7"]


# -- the journal: resume, retry, mismatch --------------------------------------------------


def test_a_killed_batch_resumes_without_rerunning_finished_tasks(sg: Scripted) -> None:
    config = sg.setup([ONE, TWO, {"match": "SLOW", "sleep": 120, "say": "slow"}, {"match": "FOUR"}])
    tasks = sg.root / "tasks.txt"
    tasks.write_text("do ONE\ndo TWO\nSLOW three\ndo FOUR\n")
    journal = sg.root / "journal.jsonl"
    code = textwrap.dedent(
        """
        import sys
        from orchestrator_nb import batch
        batch(sys.argv[1], "w", workspace=sys.argv[2], journal=sys.argv[3], config=sys.argv[4],
              max_concurrency=1, progress=False)
        """
    )
    args = [sys.executable, "-c", code, str(tasks), str(sg.ws), str(journal), str(config)]
    proc = subprocess.Popen(args, env=sg.env(), stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any("SLOW" in p for p in sg.prompts()):
            assert proc.poll() is None and time.monotonic() < deadline, "the batch never got there"
            time.sleep(0.05)
        # The journal is that batch's while it runs: a second one is refused, naming it.
        with pytest.raises(WorkspaceError, match=r"in use by another running batch \(batch pro"):
            batch(tasks, "w", workspace=sg.ws, journal=journal, config=config, progress=False)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    for pid in processes_in(sg.ws / ".orchestrator"):  # the agent the kill orphaned
        os.kill(pid, signal.SIGKILL)
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [r["kind"] for r in records] == ["batch", "task", "task"]

    sg.setup([ONE, TWO, {"match": "SLOW", "say": "fast now"}, {"match": "FOUR"}])
    result = batch(tasks, "w", workspace=sg.ws, journal=journal, config=config, progress=False)
    assert result.ok, str(result)
    assert [(r.id, r.resumed) for r in result] == [
        ("task-1", True),
        ("task-2", True),
        ("task-3", False),
        ("task-4", False),
    ]
    prompts = sg.prompts()
    assert [sum(word in p for p in prompts) for word in ("ONE", "TWO", "SLOW", "FOUR")] == [
        1,
        1,
        2,  # killed once, then run again from scratch
        1,
    ]
    assert result.results["task-1"].text == "wrote one"  # rebuilt from the journal
    assert len(git(sg.ws, "worktree", "list").splitlines()) == 1
    assert len(git(sg.ws, "branch", "--list", "orchestrator-batch/*").splitlines()) == 4

    again = batch(tasks, "w", workspace=sg.ws, journal=journal, config=config, progress=False)
    assert all(r.resumed for r in again) and len(sg.prompts()) == len(prompts)


def test_retry_failed_and_a_changed_task_under_a_recorded_id(sc: Scripted) -> None:
    config = sc.setup([ONE, BAD])
    first = batch(["do ONE", "BAD"], "w", workspace=sc.ws, config=config, progress=False)
    assert [r.outcome for r in first] == ["completed", "failed"]
    sc.setup([ONE, {"match": "BAD", "say": "fixed"}])
    again = batch(["do ONE", "BAD"], "w", workspace=sc.ws, config=config, progress=False,
                  journal=first.journal, retry_failed=True)  # fmt: skip
    assert again.ok and again.batch_id == first.batch_id
    assert [r.resumed for r in again] == [True, False]
    assert sc.prompts().count("do ONE") == 1
    with pytest.raises(ConfigError, match="not the task the journal recorded"):
        batch(["do ONE again", "BAD"], "w", workspace=sc.ws, config=config, journal=first.journal)
    with pytest.raises(ConfigError, match="not a batch journal"):
        batch(["x"], "w", workspace=sc.ws, config=config, journal=config)


# -- the real CLIs --------------------------------------------------------------------------


@pytest.mark.real_cli
@pytest.mark.slow
def test_real_clis_under_one_rehearsal_each_task_on_its_branch(sg: Scripted) -> None:
    missing = [c for c in ("claude", "codex") if not _cli(c)]
    if missing:
        reason = f"agent CLIs not installed ({', '.join(missing)}): run `make agents`"
        pytest.skip(reason)  # a failure under CI=true (tests/conftest.py)
    config = sg.root / "real.yaml"
    config.write_text(
        "workflows:\n"
        "  hello-claude: {steps: [{id: write, agent: claude}]}\n"
        "  hello-codex: {steps: [{id: write, agent: codex}]}\n"
    )
    tasks = [
        {"id": "claude-1", "task": "Create hello.txt containing hi"},
        {"id": "claude-2", "task": "Please create hello.txt containing hi"},
        {"id": "codex", "task": "Create hello.txt containing hi", "workflow": "hello-codex"},
    ]
    result = batch(tasks, "hello-claude", workspace=sg.ws, config=config, rehearsal="write-file",
                   max_concurrency=3, progress=False)  # fmt: skip
    assert result.ok, str(result)
    for row in result:
        assert git(sg.ws, "show", f"{row.where}:hello.txt") == "hi\n"
        assert row.input_tokens > 0 and row.output_tokens > 0
    assert result.row("claude-1").cost_usd is not None  # claude reports its cost
    assert not (sg.ws / "hello.txt").exists()
    # A rehearsed batch says so, and its cost is a script's, never read as money spent.
    summary = result.summary()
    assert summary.startswith(f"batch {result.batch_id} (rehearsal): 3/3 completed"), summary
    # claude reports a cost, codex none: the total names whom it covers, as a run's does.
    assert summary.endswith(" scripted (claude; codex not reported)"), summary
    assert result.row("codex").agents == {"codex": False}


def _cli(name: str) -> bool:
    return bool(shutil.which(name)) or any((d / name).exists() for d in agents_bin_dirs())
