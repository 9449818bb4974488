"""Prompt and condition templates: sandbox, strict names, literal braces, error messages."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from orchestrator_nb.errors import AgentFailed, ConfigError
from orchestrator_nb.events import FileChange, StepResult
from orchestrator_nb.workflow.templates import (
    StepView,
    TemplateError,
    Turn,
    evaluate,
    make_context,
    render,
    render_notebook_vars,
)


def _context(**steps: StepView) -> dict[str, Any]:
    return make_context(
        task="add a --verbose flag",
        steps=steps,
        iteration=2,
        history=[Turn(task="first", text="did it")],
        vars={"lang": "python"},
    )


REVIEW = StepView(text="LGTM, ship it", ok=True, agent="codex", suggestions=0)


# --- rendering -----------------------------------------------------------------------------


def test_renders_the_context_names() -> None:
    template = (
        "{{ task }} (round {{ iteration }}, {{ vars.lang }})\n"
        "{{ steps.review.agent }}: {{ steps.review.text }}\n"
        "{% for turn in history %}{{ turn.task }} -> {{ turn.text }}{% endfor %}\n"
    )
    out = render(template, _context(review=REVIEW), step_id="refine")
    assert out == (
        "add a --verbose flag (round 2, python)\ncodex: LGTM, ship it\nfirst -> did it\n"
    )


def test_keeps_the_trailing_newline() -> None:
    assert render("{{ task }}\n", _context(), step_id="s") == "add a --verbose flag\n"


def test_no_html_escaping() -> None:
    out = render("{{ vars.code }}", make_context(task="", vars={"code": "<a & b>"}), step_id="s")
    assert out == "<a & b>"


def test_a_step_view_renders_as_its_text() -> None:
    assert render("{{ steps.review }}", _context(review=REVIEW), step_id="s") == "LGTM, ship it"


@pytest.mark.parametrize(
    "literal",
    [
        '{"a": 1}',
        '{"a": {"b": [1, 2]}}',
        "{x} and {y!r:>10}",
        "d = {'k': {'n': 1}}",
        "close }} and } alone",
        "css {#id} and #{ruby} and {#fff}",
        "{% raw %}{{ not code }}{% endraw %}",
        "set notation {1, 2} ∪ {3}",
    ],
)
def test_literal_braces_need_no_escaping(literal: str) -> None:
    out = render(f"JSON please: {literal}\n{{{{ task }}}}", _context(), step_id="s")
    expected = literal.replace("{% raw %}", "").replace("{% endraw %}", "")
    assert out == f"JSON please: {expected}\nadd a --verbose flag"


def test_a_single_hash_brace_does_not_start_a_comment() -> None:
    # With Jinja's default `{#`, everything up to "#}" below would vanish silently.
    template = "keep {# this #} and {{ task }}"
    assert render(template, _context(), step_id="s") == "keep {# this #} and add a --verbose flag"


def test_double_hash_comments_are_dropped() -> None:
    assert render("a{## note to self ##}b", _context(), step_id="s") == "ab"


def test_filters_and_tests_work_in_the_sandbox() -> None:
    view = StepView(
        text="x",
        ok=True,
        changes=(FileChange("src/a.py"), FileChange("b.md", "added")),
        diff="+1\n",
    )
    template = (
        "{{ steps.impl.changes | length }} {{ steps.impl.paths | join(',') }} "
        "{{ 'src/a.py' in steps.impl.paths }} {{ steps.impl.diff | trim }} "
        "{{ steps.other is defined }}"
    )
    assert render(template, _context(impl=view), step_id="s") == "2 src/a.py,b.md True +1 False"


# --- errors ---------------------------------------------------------------------------------


def test_undefined_name_names_step_what_line_and_available_names() -> None:
    with pytest.raises(TemplateError) as caught:
        render("line one\n\n{{ taks }}\n", _context(review=REVIEW), step_id="implement")
    err = caught.value
    assert isinstance(err, ConfigError)
    assert err.step_id == "implement"
    assert err.what == "prompt"
    assert err.template_line == 3
    assert err.key == "prompt"
    text = str(err)
    assert "step 'implement', prompt line 3" in text
    assert "'taks' is undefined" in text
    assert "3 | {{ taks }}" in text
    assert err.hint is not None
    assert "task" in err.hint
    assert "steps so far: review" in err.hint
    assert "vars: lang" in err.hint


def test_missing_step_and_missing_field_are_errors_not_empty_text() -> None:
    with pytest.raises(TemplateError, match="no attribute 'review'"):
        render("{{ steps.review.text }}", _context(), step_id="s")
    with pytest.raises(TemplateError, match="no attribute 'txt'"):
        render("{{ steps.review.txt }}", _context(review=REVIEW), step_id="s")


@pytest.mark.parametrize(
    ("template", "line"),
    [
        ("{{ ''.__class__ }}", 1),
        ("ok\n{{ ''.__class__.__mro__[1].__subclasses__() }}", 2),
        ("{{ history.append(1) }}", 1),
        ("{{ vars.update({'a': 1}) }}", 1),
        ("{{ steps.review.__dict__ }}", 1),
        ("{{ steps.review.__dataclass_fields__ }}", 1),
    ],
)
def test_sandbox_violations_are_template_errors(template: str, line: int) -> None:
    with pytest.raises(TemplateError) as caught:
        render(template, _context(review=REVIEW), step_id="review", what="message")
    err = caught.value
    assert "not allowed in the sandbox" in str(err)
    assert "step 'review', message" in str(err)
    assert err.template_line == line
    assert err.hint is not None and "private attributes" in err.hint


def test_the_context_cannot_be_changed_by_a_template() -> None:
    context = _context()
    with pytest.raises(TemplateError):
        render("{% set _ = history.pop() %}", context, step_id="s")
    assert len(context["history"]) == 1


def test_syntax_error_has_the_line_and_a_hint() -> None:
    with pytest.raises(TemplateError) as caught:
        render("a\nb\n{% if task %}never closed\n", _context(), step_id="fix")
    err = caught.value
    assert "syntax error" in err.problem
    assert err.template_line is not None and err.template_line >= 3
    assert err.hint is not None and "{% raw %}" in err.hint


def test_other_runtime_errors_are_template_errors() -> None:
    with pytest.raises(TemplateError, match="ZeroDivisionError") as caught:
        render("x\n{{ 1 / 0 }}", _context(), step_id="s")
    assert caught.value.template_line == 2
    assert isinstance(caught.value.__cause__, ZeroDivisionError)


def test_template_error_pickles() -> None:
    with pytest.raises(TemplateError) as caught:
        render("{{ nope }}", _context(), step_id="s")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert isinstance(copy, TemplateError)
    assert str(copy) == str(caught.value)
    assert copy.template_line == 1


# --- conditions -----------------------------------------------------------------------------


def test_evaluate_until_expression() -> None:
    expr = "steps.review.ok and 'LGTM' in steps.review.text"
    assert evaluate(expr, _context(review=REVIEW), step_id="loop") is True
    failing = StepView(text="needs work", ok=True)
    assert evaluate(expr, _context(review=failing), step_id="loop") is False


def test_evaluate_returns_a_bool_for_any_value() -> None:
    assert evaluate("steps.review.text", _context(review=REVIEW), step_id="b") is True
    assert evaluate("iteration - 2", _context(), step_id="b") is False
    assert evaluate("steps.review.suggestions < 1", _context(review=REVIEW), step_id="b") is True


def test_evaluate_accepts_a_wrapped_expression() -> None:
    assert evaluate("{{ iteration >= 2 }}", _context(), step_id="loop") is True


def test_evaluate_errors_name_what() -> None:
    with pytest.raises(TemplateError) as caught:
        evaluate("steps.reveiw.ok", _context(review=REVIEW), step_id="loop", what="until")
    assert "step 'loop', until line 1" in str(caught.value)
    with pytest.raises(TemplateError, match="syntax error"):
        evaluate("steps.review.ok and", _context(review=REVIEW), step_id="b", what="when")
    with pytest.raises(TemplateError, match="sandbox"):
        evaluate("task.__class__", _context(), step_id="b", what="when")


# --- StepView -------------------------------------------------------------------------------


def test_step_view_from_result_counts_suggestions_of_a_successful_step() -> None:
    result = StepResult(
        agent="codex",
        ok=True,
        text="Suggestions:\n- rename x\n- add tests\n",
        changes=[FileChange("a.py")],
    )
    view = StepView.from_result(result, diff="--- a\n")
    assert view == StepView(
        text=result.text,
        ok=True,
        changes=(FileChange("a.py"),),
        diff="--- a\n",
        agent="codex",
        suggestions=2,
        error=None,
    )
    assert StepView.from_result(result, suggestions=7).suggestions == 7


def test_step_view_of_a_failed_step_has_no_suggestion_count() -> None:
    result = StepResult(agent="claude", ok=False, error=AgentFailed("boom", agent="claude"))
    view = StepView.from_result(result)
    assert view.suggestions is None
    assert view.error == "failed"
    assert not view.ok


# --- notebook variables ---------------------------------------------------------------------


def test_render_notebook_vars_substitutes_only_known_identifiers() -> None:
    namespace = {"path": "src/app.py", "n": 3, "_": "last output", "obj": object()}
    body = (
        "Fix {{ path }} ({{n}} bugs). Keep {{ unknown }}, {{ obj.attr }}, {{ _ }},\n"
        '{"json": {"nested": 1}} and {x} and {{ steps.review.text }} and {% if a %}'
    )
    assert render_notebook_vars(body, namespace) == (
        "Fix src/app.py (3 bugs). Keep {{ unknown }}, {{ obj.attr }}, {{ _ }},\n"
        '{"json": {"nested": 1}} and {x} and {{ steps.review.text }} and {% if a %}'
    )


def test_render_notebook_vars_inserts_values_verbatim() -> None:
    # The value is text, not template code: braces in it are not evaluated again.
    assert render_notebook_vars("{{ a }}", {"a": "{{ b }}", "b": "no"}) == "{{ b }}"
