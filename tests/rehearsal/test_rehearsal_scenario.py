"""Scenario files: validation with file:line errors, loading by name, turn selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator_nb.errors import ConfigError, ScenarioError
from orchestrator_nb.rehearsal import (
    Action,
    Reply,
    Scenario,
    Turn,
    load_scenario,
    parse_scenario,
    shipped_scenarios,
)


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_scenarios_all_validate() -> None:
    shipped = shipped_scenarios()
    assert {"write-file", "calculator", "rate-limit", "hang"} <= set(shipped)
    for name, path in shipped.items():
        scenario = load_scenario(name)
        assert scenario.name == name
        assert scenario.source == str(path)


def test_load_by_name_path_and_object(tmp_path: Path) -> None:
    by_name = load_scenario("write-file")
    by_path = load_scenario(shipped_scenarios()["write-file"])
    assert by_name == by_path
    assert load_scenario(by_name) is by_name
    own = _write(tmp_path, "turns:\n  - say: hello\n", name="mine.yaml")
    assert load_scenario(own).name == "mine"  # the file stem when the file names none


def test_a_folder_named_like_a_shipped_scenario_does_not_hide_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "calculator").mkdir()  # e.g. the workspace a calculator rehearsal wrote into
    monkeypatch.chdir(tmp_path)
    assert load_scenario("calculator").source == str(shipped_scenarios()["calculator"])


def test_unknown_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario("no-such-scenario")
    assert "calculator" in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "name: x\nturns:\n  - agent: claude\n    say: hi\n  - agent: codex\n    sya: typo\n",
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    err = info.value
    assert err.line == 6
    assert err.key == "turns.1.sya"
    assert f"{path}:6" in str(err)
    assert "Extra inputs are not permitted" in str(err)


def test_action_with_two_kinds_points_at_the_action(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "turns:\n  - actions:\n      - say: a\n      - say: b\n        run: ls\n",
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.line == 4
    assert "exactly one of say/write/edit/read/run" in str(info.value)


def test_wrong_type_deep_in_a_turn(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "turns:\n  - say: hi\n    usage:\n      input: many\n",
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.line == 4
    assert info.value.key == "turns.0.usage.input"


def test_unknown_agent_and_fault_kind(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "turns:\n  - agent: cursor\n    say: hi\ndefault:\n  fault: {kind: explode}\n",
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    text = str(info.value)
    assert info.value.line == 2
    assert "and 1 more" in text and "line 5" in text


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "turns:\n  - say: [unclosed\n  - say: x\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.line is not None and info.value.line >= 2
    assert "invalid YAML" in str(info.value)


def test_duplicate_keys_are_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: a\nturns: []\nname: b\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.line == 3
    assert "duplicate key 'name'" in str(info.value)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="mapping"):
        load_scenario(_write(tmp_path, "- just\n- a list\n"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("turns:\n  - {}\n", "needs `say` or `actions`"),
        ("turns:\n  - say: a\n    actions: [{say: b}]\n", "either `say` or `actions`"),
        ("turns:\n  - say: a\n    usage: {input: 1, cached: 2}\n", "cannot exceed input"),
        ("turns:\n  - say: a\n    fault: {kind: error, status: 200}\n", "greater than or equal"),
        ("name: 'bad name!'\n", "letters, digits"),
        ("settings: {cli_max_retries: -1}\n", "greater than or equal"),
    ],
)
def test_semantic_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_scenario(_write(tmp_path, text))


def test_parse_scenario_from_text() -> None:
    scenario = parse_scenario("turns:\n  - say: hi\n", path="inline.yaml", default_name="inline")
    assert scenario.name == "inline"
    assert scenario.source == "inline.yaml"


def test_turn_selection_by_agent_step_and_words() -> None:
    scenario = Scenario(
        name="sel",
        turns=(
            Turn(agent="codex", step="implement", say="codex implements"),
            Turn(agent=("gemini", "copilot"), words="review calc.py", say="review"),
            Turn(step=("apply", "fix"), say="apply"),
            Turn(words=("Hello",), say="hello"),
        ),
    )
    assert scenario.select("codex", "implement", "anything")[0] == 0
    assert scenario.select("codex", "other", "anything")[0] == -1
    assert scenario.select("gemini", None, "Please REVIEW the calc.py file")[0] == 1
    assert scenario.select("gemini", None, "review it")[0] == -1  # "calc.py" missing
    assert scenario.select("claude", "fix", "x")[0] == 2
    assert scenario.select("claude", None, "say hello")[0] == 3


def test_default_reply_says_it_is_the_default() -> None:
    plain = Scenario(name="plain")
    index, reply = plain.select("claude", None, "whatever")
    assert index == -1
    text = reply.steps[0].say or ""
    assert "default" in text and "'plain'" in text
    custom = Scenario(name="custom", default=Reply(say="Ask me about calc.py."))
    first = custom.default_reply().steps[0].say or ""
    assert first.startswith("[default answer of rehearsal scenario 'custom']")
    assert first.endswith("Ask me about calc.py.")
    writes = Scenario(name="w", default=Reply(actions=(Action(run="ls"),)))
    assert "default" in (writes.default_reply().steps[0].say or "")


def test_fault_only_reply_has_an_answer_after_the_fault() -> None:
    scenario = parse_scenario("default:\n  fault: {kind: rate_limit, times: 2}\n")
    reply = scenario.default_reply()
    assert reply.fault is not None and reply.fault.times == 2
    assert reply.steps[-1].say


def test_action_kind() -> None:
    assert Action(run="ls").kind == "run"
    assert Action(say="x").kind == "say"


def test_calculator_review_loop_ends_with_an_empty_list() -> None:
    calc = load_scenario("calculator")
    names = {
        prompt: calc.turns[calc.select("gemini", "review", prompt)[0]].name
        for prompt in (
            "Review round 1 of the work on this task",
            "Review round 2 of the work. The last refinement said: Applied all three suggestions",
            "Review round 2 of the work on this task",
        )
    }
    assert list(names.values()) == ["review", "approve", "approve (round 2)"]
    assert calc.turns[calc.select("codex", "implement", "any task")[0]].name == "implement"
    assert calc.turns[calc.select("claude", "refine", "Apply these")[0]].name == "apply"
    approve = next(t for t in calc.turns if t.name == "approve").steps[0].say or ""
    assert '{"suggestions": []}' in approve


def test_calculator_answers_the_readmes_followup() -> None:
    calc = load_scenario("calculator")
    followup = (
        "Context: this continues the previous request in this workspace.\n"
        "Previous request: Write a small calculator module with tests.\n"
        "What the agents answered:\n- refine (claude): Applied all three suggestions; ...\n"
        "New request:\nnow add a pow function"
    )

    def name(agent: str, prompt: str) -> str | None:
        return calc.turns[calc.select(agent, None, prompt)[0]].name

    assert name("codex", followup) == "add pow"
    assert name("gemini", f"Review round 1 of the work on this task: {followup}") == "review pow"
    assert name("claude", f"Apply these review suggestions to: {followup}") == "export pow"
    assert name("gemini", f"Review round 2 of the work on this task: {followup}") == "approve pow"
    # The first turn is answered as before.
    assert name("codex", "Write a small calculator module with tests.") == "implement"
