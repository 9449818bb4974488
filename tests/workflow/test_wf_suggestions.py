"""Counting a reviewer's suggestions, in the shapes reviewers actually answer in."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator_nb.workflow.suggestions import count_suggestions, extract_suggestions

# --- rule 1: JSON ---------------------------------------------------------------------------


def test_fenced_json_block() -> None:
    text = 'Review done.\n```json\n{"suggestions": ["rename x", "add tests"]}\n```\n- stray'
    assert extract_suggestions(text) == ["rename x", "add tests"]


def test_fenced_json_with_objects_uses_their_text() -> None:
    text = (
        "```json\n"
        '{"verdict": "changes", "suggestions": [\n'
        '  {"title": "Rename x", "severity": "minor"},\n'
        '  {"description": "Add  tests\\nfor y"},\n'
        '  {"file": "a.py", "line": 3},\n'
        "  42\n"
        "]}\n```"
    )
    assert extract_suggestions(text) == [
        "Rename x",
        "Add tests for y",
        '{"file": "a.py", "line": 3}',
        "42",
    ]


def test_empty_json_list_is_zero_even_with_lists_elsewhere() -> None:
    text = 'What I checked:\n- a\n- b\n```json\n{"suggestions": []}\n```'
    assert count_suggestions(text) == 0


def test_null_suggestions_is_zero() -> None:
    assert count_suggestions('{"suggestions": null}\n- a\n- b') == 0


def test_the_last_json_block_wins() -> None:
    text = (
        'Answer in this form:\n```json\n{"suggestions": ["..."]}\n```\n'
        'Here it is:\n```json\n{"suggestions": ["a", "b", "c"]}\n```'
    )
    assert count_suggestions(text) == 3


def test_fenced_json_beats_a_bare_object() -> None:
    text = 'Later: {"suggestions": [1, 2, 3]}\n```json\n{"suggestions": ["only"]}\n```'
    assert extract_suggestions(text) == ["only"]


def test_bare_json_object_in_prose() -> None:
    text = 'My review: {"summary": "ok", "meta": {"n": 1}, "suggestions": ["a", "b"]} thanks'
    assert extract_suggestions(text) == ["a", "b"]


def test_bare_json_nested_under_another_key() -> None:
    assert count_suggestions('{"review": {"suggestions": ["a"]}, "x": 1}') == 1


def test_key_case_is_ignored() -> None:
    assert count_suggestions('```json\n{"Suggestions": ["a", "b"]}\n```') == 2


def test_json_without_a_suggestions_list_falls_through() -> None:
    text = '```json\n{"files": ["a", "b", "c"]}\n```\nSuggestions:\n- one'
    assert extract_suggestions(text) == ["one"]


def test_invalid_json_block_falls_through() -> None:
    text = '```json\n{"suggestions": ["a", "b",]}\n```\n- only item'
    assert extract_suggestions(text) == ["only item"]


# --- rule 2: ```suggestions blocks -----------------------------------------------------------


def test_suggestions_block_list_items() -> None:
    text = "Intro\n- not this\n```suggestions\n- a\n  - detail of a\n1. b\n* c\n```"
    assert extract_suggestions(text) == ["a", "b", "c"]


def test_suggestions_block_lines_without_markers() -> None:
    assert extract_suggestions("```suggestions\nrename foo\n\nadd tests\n```") == [
        "rename foo",
        "add tests",
    ]


def test_empty_suggestions_block_is_zero() -> None:
    assert count_suggestions("```suggestions\n```\n- a\n- b") == 0


def test_suggestions_blocks_add_up() -> None:
    assert count_suggestions("```suggestions\n- a\n```\ntext\n~~~suggestions\n- b\n~~~") == 2


# --- rule 3: headings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "heading",
    [
        "Suggestions:",
        "suggestions",
        "**Suggestions:**",
        "**Suggestions**:",
        "__Suggestions__",
        "## Suggestions",
        "### Suggestions (2)",
        "## Suggestions for the parser",
        "Suggested changes:",
        "Recommendations:",
    ],
)
def test_heading_shapes(heading: str) -> None:
    text = f"Overall fine.\n\n{heading}\n- first\n- second\n\nThanks!\n- not a suggestion"
    assert extract_suggestions(text) == ["first", "second"]


@pytest.mark.parametrize("marker", ["-", "*", "+", "1.", "2)"])
def test_item_markers(marker: str) -> None:
    assert count_suggestions(f"Suggestions:\n{marker} a\n{marker} b\n{marker} c") == 3


def test_nested_items_belong_to_their_parent() -> None:
    text = "## Suggestions\n1. a\n   - why\n   - how\n2. b\n    * detail\n"
    assert extract_suggestions(text) == ["a", "b"]


def test_code_between_items_and_an_intro_paragraph() -> None:
    text = (
        "## Suggestions\n\nHere is what I would change:\n\n"
        "1. Rename `x`:\n```python\n- old = 1\n+ new = 1\n```\n"
        "2. Add tests\n\nOverall good.\n- unrelated"
    )
    assert extract_suggestions(text) == ["Rename `x`:", "Add tests"]


def test_section_ends_at_the_next_heading() -> None:
    text = "### Suggestions\n- a\n- b\n### Nits\n- c\n**Verdict**\n- d"
    assert count_suggestions(text) == 2


def test_several_sections_add_up() -> None:
    text = "Suggestions:\n  - a\n  - b\n\nSuggested changes:\n- c\n"
    assert extract_suggestions(text) == ["a", "b", "c"]


def test_checkbox_items() -> None:
    assert extract_suggestions("Suggestions:\n- [ ] a\n- [x] b") == ["a", "b"]


@pytest.mark.parametrize(
    "text",
    [
        "Suggestions: none",
        "**Suggestions:** None.",
        "Suggestions: N/A\n\nWhat I checked:\n- a\n- b",
        "## Suggestions\nNone at this time.\n\n## Checked\n- a",
        "Suggestions:\nNo suggestions.\n\nFiles:\n- a.py",
        "## Suggestions\n- None.\n",
        "## Suggestions\n- N/A",
    ],
)
def test_a_section_that_says_none_is_zero(text: str) -> None:
    assert count_suggestions(text) == 0


def test_a_section_without_a_list_counts_paragraphs() -> None:
    text = "## Suggestions\nConsider renaming foo.\nIt is unclear.\n\nAlso add tests."
    assert extract_suggestions(text) == ["Consider renaming foo.", "Also add tests."]


def test_inline_single_suggestion() -> None:
    assert extract_suggestions("Suggestion: rename foo to bar.") == ["rename foo to bar."]


def test_a_sentence_is_not_a_heading() -> None:
    # "Suggestions are welcome" is prose, so the fallback counts every list item.
    assert count_suggestions("Suggestions are welcome.\n- x\n- y") == 2


def test_an_item_starting_with_suggestion_is_not_a_heading() -> None:
    text = "* Suggestion: rename\n* Suggestion: test"
    assert extract_suggestions(text) == ["Suggestion: rename", "Suggestion: test"]


def test_none_of_is_a_real_suggestion() -> None:
    assert count_suggestions("Suggestions:\n- None of the tests cover the error path") == 1


# --- rule 4: says none ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\n",
        "LGTM",
        "lgtm!",
        "Looks good to me.",
        "No suggestions.",
        "No further suggestions — nice work.",
        "Nothing to suggest.",
        "LGTM.\n\nWhat I checked:\n- tests pass\n- types are clean",
        "The change is fine; I read it carefully.",
    ],
)
def test_no_suggestions(text: str) -> None:
    assert count_suggestions(text) == 0


def test_structure_beats_lgtm() -> None:
    assert count_suggestions("LGTM overall.\n\nSuggestions:\n- tiny nit") == 1


# --- rule 5: any list -----------------------------------------------------------------------


def test_top_level_list_items() -> None:
    text = "Review:\n- a\n- b\n  - nested\n\nAlso:\n1. c\n2) d\n"
    assert extract_suggestions(text) == ["a", "b", "c", "d"]


def test_an_indented_answer_still_has_a_top_level() -> None:
    assert count_suggestions("  - a\n    - a1\n  - b") == 2


def test_fenced_code_is_never_a_list() -> None:
    text = "```diff\n- old line\n+ new line\n```\n~~~\n* bullet in code\n~~~\nFine."
    assert count_suggestions(text) == 0


def test_an_unclosed_fence_runs_to_the_end() -> None:
    assert count_suggestions("- a\n```\n- in code\n- in code") == 1


def test_inline_triple_backticks_are_not_a_fence() -> None:
    assert count_suggestions("```x``` is inline\n- a\n- b") == 2


def test_thematic_breaks_are_not_items() -> None:
    assert count_suggestions("- a\n\n* * *\n\n- b") == 2


def test_tabs_and_crlf() -> None:
    assert count_suggestions("Suggestions:\r\n-\ta\r\n-\tb\r\n") == 2


# --- never raises -----------------------------------------------------------------------------


def test_pathological_inputs_are_fast_and_safe() -> None:
    assert count_suggestions("[" * 100_000) == 0
    assert count_suggestions('{"suggestions": ' + "[" * 50_000) == 0
    assert count_suggestions('{"suggestions": "' * 2_000) == 0
    assert count_suggestions("{" * 50_000 + '"suggestions": []') == 0


_PIECES = st.sampled_from(
    [
        "\n",
        "- ",
        "* ",
        "1. ",
        "  ",
        "```",
        "```json\n",
        "```suggestions\n",
        "~~~",
        "{",
        "}",
        "[",
        "]",
        '"suggestions"',
        ":",
        ",",
        '"a"',
        "null",
        "Suggestions:",
        "## ",
        "**",
        "none",
        "LGTM",
        "text",
        "\t",
        "\r\n",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES | st.text(max_size=5), max_size=40).map("".join))
def test_never_raises_on_review_like_text(text: str) -> None:
    items = extract_suggestions(text)
    assert all(isinstance(item, str) and item for item in items)
    assert count_suggestions(text) == len(items)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_never_raises_on_any_text(text: str) -> None:
    assert count_suggestions(text) >= 0
