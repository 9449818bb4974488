"""Sessions: the follow-up heuristic, turns and steps, autosave, export and import."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nbformat
import pytest

from orchestrator_nb.errors import AgentError, ConfigError
from orchestrator_nb.events import FileChange, StepResult, Usage
from orchestrator_nb.notebook.export import export_session, format_for, to_markdown
from orchestrator_nb.sessions import (
    Session,
    SessionStore,
    atomic_write_text,
    decide_followup,
)


class Clock:
    """A clock that ticks one second per reading."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def step(agent: str = "claude", text: str = "done", **kw: object) -> StepResult:
    base: dict[str, object] = {
        "session_id": f"native-{agent}",
        "usage": Usage(100, 20, 5, 0.01),
        "changes": [FileChange("a.py", "added")],
        "diff": "+x\n",
        "step_id": "implement",
    }
    base.update(kw)
    return StepResult(agent, True, text=text, **base)  # type: ignore[arg-type]


@pytest.fixture
def store() -> SessionStore:
    return SessionStore(clock=Clock())


def with_turn(session: Session, ws: Path | None = None, task: str = "Write a.py") -> Session:
    turn = session.begin_turn(task, workflow="default", workspace=ws)
    session.record_step(turn, step())
    session.finish_turn(turn, "completed", run_id="r1")
    return session


@pytest.mark.parametrize(
    ("message", "followup", "why"),
    [
        ("now add a test for div", True, "'add'"),
        ("Also handle negative numbers", True, "'also'"),
        ("Could you please rename it", True, "'please'"),
        ("can you make it faster", True, "'can you'"),
        ("Fix the bug", True, "'fix'"),
        ("Write a web server in Go with tests", False, "no follow-up words"),
        ("additional thoughts about nowhere", False, "no follow-up words"),  # words, not parts
        (("add " + "word " * 40).strip(), False, "more than 30 words"),
    ],
)
def test_followup_heuristic(message: str, followup: bool, why: str, store: SessionStore) -> None:
    session = with_turn(store.current)
    decision = decide_followup(message, session)
    assert decision.followup is followup
    assert why in decision.reason
    hint = "--new" if followup else "--followup"
    assert hint in str(decision)  # the cell says how to override


def test_followup_forced_and_first_turn(store: SessionStore) -> None:
    session = store.current
    first = decide_followup("now add tests", session)
    assert not first.followup and "first turn" in str(first)
    assert "--followup" not in str(first)
    assert not decide_followup("x", session, force=True).followup  # nothing to follow
    with_turn(session)
    assert decide_followup("Write a web server", session, force=True).followup
    forced_new = decide_followup("now add tests", session, force=False)
    assert not forced_new.followup and "--new" in str(forced_new)
    session.conversation = True
    assert decide_followup("Write a web server", session).reason == "conversation mode is on"


def test_turns_steps_history_and_resume_ids(store: SessionStore, tmp_path: Path) -> None:
    session = with_turn(store.current, tmp_path)
    turn = session.turns[0]
    assert turn.number == 1 and turn.outcome == "completed" and turn.run_id == "r1"
    assert turn.started_at == "2025-01-02T03:04:07+00:00"  # the injected clock
    record = turn.steps[0]
    assert (record.native_session_id, record.usage.cost_usd) == ("native-claude", 0.01)
    assert turn.changed_paths == ["a.py"] and turn.text == "done"
    assert session.history == [
        {
            "task": "Write a.py",
            "text": "done",
            "workflow": "default",
            "agent": None,
            "outcome": "completed",
            "changes": ["a.py"],
        }
    ]
    assert session.resume_ids == {"claude": "native-claude"}
    running = session.begin_turn("more", workflow="default")
    assert len(session.history) == 1  # a running turn is not history yet
    failed = StepResult("codex", False, session_id="x", error=AgentError("boom", agent="codex"))
    session.record_step(running, failed)
    assert session.resume_ids == {"claude": "native-claude"}  # failed runs are not resumed
    assert running.steps[0].error == "boom"


def test_native_sessions_resume_only_in_their_own_workspace(
    store: SessionStore, tmp_path: Path
) -> None:
    # Resumed from another folder, claude 2.1.332 keeps working in the session's old folder.
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    session = with_turn(store.current, here)
    assert session.resume_ids_for(here) == {"claude": "native-claude"}
    assert session.resume_ids_for(there) == {}
    assert session.resume_ids_for(None) == session.resume_ids == {"claude": "native-claude"}


def test_followup_task_carries_previous_turn(store: SessionStore) -> None:
    session = store.current
    assert session.followup_task("now add tests") == "now add tests"
    with_turn(session)
    text = session.followup_task("now add tests")
    assert "Previous request: Write a.py" in text
    assert "- implement (claude): done" in text
    assert "Files changed: a.py" in text
    assert text.endswith("New request:\nnow add tests")


def test_autosave_after_every_step_appends_one_record(store: SessionStore, tmp_path: Path) -> None:
    session = store.current
    turn = session.begin_turn("Write a.py", workflow="default", workspace=tmp_path)
    path = tmp_path / ".orchestrator" / "sessions" / f"{session.id}.json"
    assert Session.load(path).turns[0].outcome == "running"
    before = path.read_bytes()
    session.record_step(turn, step())
    after = path.read_bytes()
    # Appended, not rewritten: the file as it was is still its beginning, plus one line.
    assert after.startswith(before) and after[len(before) :].count(b"\n") == 1
    session.finish_turn(turn, "completed", run_id="r1")
    saved = Session.load(path)
    assert saved.id == session.id and len(saved.turns[0].steps) == 1
    assert saved.turns[0].outcome == "completed" and saved.turns[0].run_id == "r1"
    assert saved.updated_at == session.updated_at
    session.record_step(turn, step(text="late"))  # a step of a finished turn is kept too
    assert [s.text for s in Session.load(path).turns[0].steps] == ["done", "late"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


def test_a_torn_last_line_is_ignored_on_load(store: SessionStore, tmp_path: Path) -> None:
    session = store.current
    turn = session.begin_turn("Write a.py", workflow="default", workspace=tmp_path)
    session.record_step(turn, step(text="first"))
    path = tmp_path / ".orchestrator" / "sessions" / f"{session.id}.json"
    whole = path.read_bytes()
    session.record_step(turn, step(text="second"))
    line = path.read_bytes()[len(whole) :]
    for cut in (1, len(line) // 2, len(line) - 2):  # a crash in the middle of the write
        path.write_bytes(whole + line[:cut])
        loaded = Session.load(path)
        assert [s.text for s in loaded.turns[0].steps] == ["first"]
    # Damage before the last line is not a crash: it is refused, naming the line.
    lines = whole.split(b"\n")
    path.write_bytes(b"\n".join([lines[0], b"{oops", *lines[1:]]))
    with pytest.raises(ConfigError, match=r":2\b.*damaged session log"):
        Session.load(path)


def test_a_file_written_by_someone_else_is_rewritten_not_appended_to(
    store: SessionStore, tmp_path: Path
) -> None:
    session = store.current
    turn = session.begin_turn("Write a.py", workflow="default", workspace=tmp_path)
    path = tmp_path / ".orchestrator" / "sessions" / f"{session.id}.json"
    session.save(path)  # an export over the autosave file: one JSON object
    session.record_step(turn, step())
    loaded = Session.load(path)
    assert len(loaded.turns[0].steps) == 1
    session.reset()  # a reset cannot be appended: the file is written whole again
    assert Session.load(path).turns == []


def test_each_workspace_log_holds_its_own_turns(store: SessionStore, tmp_path: Path) -> None:
    session = store.current
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    with_turn(session, a, "task in a")
    with_turn(session, b, "task in b")
    with_turn(session, a, "again in a")
    for where, tasks in ((a, ["task in a", "again in a"]), (b, ["task in b"])):
        loaded = Session.load(where / ".orchestrator" / "sessions" / f"{session.id}.json")
        assert [t.task for t in loaded.turns] == tasks
        assert all(t.outcome == "completed" and len(t.steps) == 1 for t in loaded.turns)


def test_autosave_failure_is_kept_not_raised(store: SessionStore, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    session = store.current
    session.begin_turn("x", workflow="default", workspace=blocker)
    assert session.save_error is not None and "autosave" in session.save_error


def test_atomic_write_keeps_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "s.json"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):  # fails half-way: after the temp file was made
        atomic_write_text(target, 42)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_store_sessions(store: SessionStore) -> None:
    first = store.current
    assert first.name == "default"
    second = store.new()
    assert second.name == "session-2" and store.current is second
    with pytest.raises(ConfigError, match="exists already"):
        store.new("default")
    assert store.switch("default") is first
    assert store.switch(second.id) is second
    with pytest.raises(ConfigError, match=r"no session 'nope' \(known: default, session-2\)"):
        store.get("nope")
    made = store.get_or_create("feature")
    assert store.current is made and store.get_or_create("feature") is made
    with_turn(made)
    made.reset()
    assert made.turns == []


def test_json_round_trip(store: SessionStore, tmp_path: Path) -> None:
    session = with_turn(store.current)
    path, fmt = export_session(session, tmp_path / "s.json")
    assert fmt == "json"
    other = SessionStore()
    back = other.import_file(path)
    assert back.model_dump() == session.model_dump()
    assert other.current is back
    again = other.import_file(path)  # same id: replaced, not doubled
    assert other.sessions == [again]


def test_import_renames_on_name_clash(store: SessionStore, tmp_path: Path) -> None:
    session = with_turn(store.current)
    path, _ = export_session(session, tmp_path / "s.json")
    other = SessionStore()
    other.new("default")
    imported = other.import_file(path)
    assert imported.name == f"default-{session.id[:4]}"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"bad\.json:1: not valid JSON"),
        ("[1, 2]", "holds one JSON object"),
        ('{"kind": "other"}', "not an orchestrator-nb session"),
        ('{"kind": "orchestrator-nb.session", "schema_version": 99}', "upgrade"),
        ('{"kind": "orchestrator-nb.session"}', "schema_version None is not supported"),
    ],
)
def test_import_rejects_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        SessionStore().import_file(path)


def test_import_names_the_bad_key(store: SessionStore, tmp_path: Path) -> None:
    data = with_turn(store.current).to_json_dict()
    data["turns"][0]["steps"][0]["usage"]["input_tokens"] = -5
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"turns\.0\.steps\.0\.usage\.input_tokens"):
        SessionStore().import_file(path)
    with pytest.raises(ConfigError, match="cannot read"):
        SessionStore().import_file(tmp_path / "missing.json")


def test_markdown_and_notebook_exports(store: SessionStore, tmp_path: Path) -> None:
    session = with_turn(store.current)
    md = to_markdown(session)
    assert "## Turn 1: workflow default — completed" in md
    assert "> Write a.py" in md and "```diff" in md and "native session: `native-claude`" in md
    path, fmt = export_session(session, tmp_path / "s.ipynb")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert fmt == "ipynb" and nb.cells[1].source == "%load_ext orchestrator_nb"
    assert nb.cells[2].source == "%%orchestrate -w default\nWrite a.py"
    assert "turn 1: workflow default, completed" in nb.cells[2].outputs[0]["data"]["text/plain"]
    assert format_for("x.md") == "md" and format_for("x.txt") == "json"
    with pytest.raises(ConfigError, match="accepted: json, md, ipynb"):
        format_for("x", "yaml")


def rehearsed_session(store: SessionStore, ws: Path) -> Session:
    """Turn 1 rehearsed in ``ws``; turn 2 a real follow-up there; turn 3 a real new task."""
    session = store.current
    turn = session.begin_turn(
        "Write a.py", workflow="default", workspace=ws, rehearsal="calculator"
    )
    session.record_step(turn, step())
    session.finish_turn(turn, "completed")
    turn = session.begin_turn(
        "now add pow", agent="codex", workspace=ws, decision=decide_followup("now", session)
    )
    session.record_step(turn, step("codex"))
    session.finish_turn(turn, "completed")
    turn = session.begin_turn("Write b.py", workflow="quick", workspace=ws)
    session.finish_turn(turn, "completed")
    return session


def test_exported_cells_carry_the_workspace_and_the_rehearsal_as_run(
    store: SessionStore, tmp_path: Path
) -> None:
    ws = tmp_path / "my calc $HOME"
    ws.mkdir()
    session = rehearsed_session(store, ws)
    path, _ = export_session(session, tmp_path / "s.ipynb")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    quoted = '"' + str(ws).replace("$", "$$") + '"'
    first, second, third = (c.source.split("\n")[0] for c in nb.cells[2:])
    assert first == f"%%orchestrate -w default --workspace {quoted} --rehearse calculator"
    assert second == f"%%orchestrate -a codex --workspace {quoted} --followup"
    assert third == f"%%orchestrate -w quick --workspace {quoted} --new"
    header = nb.cells[0].source
    assert "**Rehearsal:** turn 1 ran under rehearsal" in header
    assert "tokens and cost are scripted by the rehearsal, nothing spent" in header
    assert "**Real runs:** running a cell without `--rehearse` calls the real agents" in header
    plain = nb.cells[2].outputs[0]["data"]["text/plain"]
    assert "(rehearsal calculator: scripted, nothing spent)" in plain
    assert "rehearsal" not in nb.cells[3].outputs[0]["data"]["text/plain"]


def test_the_magic_line_reads_back_as_it_was_run(store: SessionStore, tmp_path: Path) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from orchestrator_nb.notebook.export import magic_line
    from orchestrator_nb.notebook.magics import OrchestratorMagics, _unquote

    ws = tmp_path / "a {b} $c 'd'"
    ws.mkdir()
    session = rehearsed_session(store, ws)
    shell = InteractiveShell.instance()
    try:
        magics = OrchestratorMagics(shell, store=SessionStore())
        line = magic_line(session.turns[0]).removeprefix("%%orchestrate ")
        expanded = shell.var_expand(line, depth=0)  # what IPython does to a magic line
        parser: object = magics.orchestrate.parser  # type: ignore[attr-defined]
        args = parser.parse_argstring(expanded)  # type: ignore[attr-defined]
    finally:
        InteractiveShell.clear_instance()
    got = (_unquote(args.workspace), _unquote(args.rehearse), args.workflow)
    assert got == (str(ws), "calculator", "default")


def test_markdown_and_json_exports_say_which_turns_were_rehearsals(
    store: SessionStore, tmp_path: Path
) -> None:
    session = rehearsed_session(store, tmp_path)
    md = to_markdown(session)
    assert "## Turn 1: workflow default — completed (rehearsal)" in md
    assert "*Rehearsal `calculator`: the real CLIs ran against a scripted model" in md
    assert "(scripted by the rehearsal, nothing spent)" in md.split("## Turn 2")[0]
    assert "rehearsal" not in md.split("## Turn 2")[1]
    path, _ = export_session(session, tmp_path / "s.json")
    data = json.loads(path.read_text())
    assert [t["rehearsal"] for t in data["turns"]] == ["calculator", None, None]
    assert SessionStore().import_file(path).turns[0].rehearsal == "calculator"


def test_a_failed_turn_is_not_the_parent_of_a_followup(store: SessionStore, tmp_path: Path) -> None:
    session = with_turn(store.current, tmp_path)
    turn = session.begin_turn("now break it", workflow="default", workspace=tmp_path)
    session.record_step(turn, StepResult("codex", False, text="", session_id="bad-thread"))
    session.finish_turn(turn, "failed", error="boom")
    decision = decide_followup("now add tests", session, workspace=tmp_path)
    assert decision.followup and decision.previous == 1
    prompt = session.followup_task("now add tests", workspace=tmp_path)
    assert "Previous request: Write a.py" in prompt and "now break it" not in prompt
    assert session.resume_ids_for(tmp_path) == {"claude": "native-claude"}
    only_failed = store.new("other")
    turn = only_failed.begin_turn("Write a.py", workflow="default", workspace=tmp_path)
    only_failed.finish_turn(turn, "failed", error="refused")
    decision = decide_followup("now add tests", only_failed, workspace=tmp_path)
    assert not decision.followup
    assert decision.reason == "turn 1 failed, and no earlier turn here finished"
    forced = decide_followup("x", only_failed, force=True, workspace=tmp_path)
    assert not forced.followup and forced.reason.startswith("--followup, but turn 1 failed")


def test_history_says_which_turns_were_rehearsed(store: SessionStore, tmp_path: Path) -> None:
    from orchestrator_nb.config import load_settings
    from orchestrator_nb.notebook.commands import Commands

    rehearsed_session(store, tmp_path)
    lines = str(Commands(store, load_settings)("history")).splitlines()
    assert "$0.0100 (rehearsal, scripted)" in lines[2]
    assert "rehearsal" not in lines[3] and "$0.0100" in lines[3]


def test_a_turn_records_its_rehearsal_as_the_magic_would_take_it(tmp_path: Path) -> None:
    from orchestrator_nb.rehearsal.scenario import load_scenario, parse_scenario
    from orchestrator_nb.sessions import rehearsal_label

    mine = tmp_path / "mine.yaml"
    mine.write_text("turns: [{say: hi}]\n")
    assert rehearsal_label(None) is None
    assert rehearsal_label("calculator") == "calculator"
    assert rehearsal_label(mine) == str(mine)
    assert rehearsal_label(load_scenario("calculator")) == "calculator"  # shipped: by name
    assert rehearsal_label(load_scenario(str(mine))) == str(mine)  # a file: by its path
    assert rehearsal_label(parse_scenario("turns: [{say: hi}]\n")) == "scenario"
