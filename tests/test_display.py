"""One display module: the same numbers, cost wording and diff HTML wherever a run is shown."""

from __future__ import annotations

import re

from orchestrator_nb import display
from orchestrator_nb.batching.result import BatchResult, BatchRow
from orchestrator_nb.events import StepResult, Usage
from orchestrator_nb.notebook.render import workflow_bundle
from orchestrator_nb.sessions import StepRecord, Turn
from orchestrator_nb.workflow.result import WorkflowResult

DIFF = """diff --git a/calc.py b/calc.py
--- a/calc.py
+++ b/calc.py
@@ -1,3 +1,3 @@
 def div(a, b):
-    return a / b
+    return a // b
"""


def step(usage: Usage) -> StepResult:
    result = StepResult("codex", True, text="done", usage=usage)
    result.step_id = "implement"
    return result


def test_numbers_have_one_format_and_a_missing_cost_says_so() -> None:
    assert display.number(9600) == "9,600"
    assert display.number(1234567.0) == "1,234,567"
    assert display.cost(0.0123) == "$0.0123"
    assert display.cost(None) == "not reported"
    assert display.usage_line(Usage(9600, 120, 0, None)) == (
        "9,600 in / 120 out tokens, cost not reported"
    )
    assert display.usage_line(Usage(9600, 120, 0, 0.5)) == "9,600 in / 120 out tokens, $0.5000"
    assert display.tokens_pair(9600, 120) == "9,600 / 120"


def test_the_same_usage_reads_the_same_in_every_view() -> None:
    usage = Usage(9600, 120, 0, None)
    line = "9,600 in / 120 out tokens, cost not reported"
    one = step(usage)
    run = WorkflowResult("r", "quick", "task", "completed", steps=[one])
    assert line in one._summary_line()
    assert line in run.summary()
    assert line in str(run) and line in run._repr_mimebundle_()["text/html"]
    row = BatchRow("t-1", "quick", "task", "completed", 9600, 120, None)
    batch = BatchResult("b", "/ws", "/ws/j", "copy", rows=[row])
    assert line in batch.summary()
    assert "9,600" in str(batch) and "not reported" in str(batch)
    assert "9600" not in str(batch)  # no view falls back to the bare number


def test_a_result_renders_the_same_with_or_without_the_extension() -> None:
    run = WorkflowResult("r", "quick", "task", "completed", steps=[step(Usage(1, 2))], diff=DIFF)
    # `workflow_bundle` is what `%load_ext` registers; without it IPython asks the result.
    assert workflow_bundle(run) == run._repr_mimebundle_()
    assert "calc.py" in run._repr_mimebundle_()["text/html"]


def test_code_and_diffs_are_monospace_with_indentation_kept() -> None:
    page = display.diff_html(DIFF)
    pres = re.findall(r"<pre style=\"([^\"]*)\">", page)
    assert pres and all("font-family:monospace" in style for style in pres)
    assert "    return a " in page  # the indentation is in the <pre>, not collapsed
    assert not re.search(r"<(style|script)|class=", page)  # inline styles only
    text = display.pre("def f():\n    return 1")
    assert "font-family:monospace" in text and "\n    return 1" in text
    coded = step(Usage(1, 2))
    coded.text = "Here:\n\n```python\ndef f():\n    return 1\n```"
    step_page = coded._repr_mimebundle_()["text/html"]
    assert '<pre style="' in step_page and "font-family:monospace" in step_page
    assert "\n    return 1" in step_page and not re.search(r"class=", step_page)


def test_plural_forms_durations_and_scripted_cost() -> None:
    assert display.plural(1, "step") == "1 step" and display.plural(0, "step") == "0 steps"
    assert display.plural(9600, "file") == "9,600 files"
    assert display.plural(2, "branch", "branches") == "2 branches"
    assert [display.duration(s) for s in (0.04, 12.345, 125, 3725)] == [
        "0.0s",
        "12.3s",
        "2m 05s",
        "1h 02m",
    ]
    usage = Usage(9600, 120, 0, 0.0123)
    assert display.usage_line(usage, scripted=True) == "9,600 in / 120 out tokens, $0.0123 scripted"
    # No cost reported: nothing to call scripted, and nothing to mistake for money.
    assert display.usage_line(Usage(1, 2), scripted=True).endswith("cost not reported")


def test_a_rehearsed_run_says_so_and_its_cost_is_scripted_in_every_form() -> None:
    one = step(Usage(9600, 120, 0, 0.0123))
    one.duration_s = 2.5
    run = WorkflowResult(
        "r", "quick", "task", "completed", steps=[one], duration_s=12.3, rehearsal=True
    )
    assert run.summary() == (
        "workflow quick (rehearsal): completed in 12.3s — 1 step, 0 files changed, "
        "9,600 in / 120 out tokens, $0.0123 scripted (codex)"
    )
    bundle = run._repr_mimebundle_()
    for form in bundle.values():
        assert "(rehearsal)" in form and "$0.0123 scripted" in form
        assert "$0.0123," not in form  # never the bare figure, as if spent
        assert "2.5s" in form  # the step's own time
    real = WorkflowResult("r", "quick", "task", "timeout", steps=[one], duration_s=8)
    assert real.summary().startswith("workflow quick: timeout after 8.0s — 1 step, ")
    assert "scripted" not in str(real)
    assert WorkflowResult.from_dict(run.to_dict()).rehearsal is True


def test_step_answers_render_as_markdown_with_tool_calls_folded() -> None:
    from orchestrator_nb.events import ToolCallEvent, ToolResultEvent

    review = step(Usage(10, 2))
    review.text = 'Looks good.\n\n```json\n{"suggestions": 0}\n```\n\n- one <b>two</b>'
    review.events = [
        ToolCallEvent("t1", "Read", {"file_path": "calc.py"}),
        ToolResultEvent("t1", True),
        ToolCallEvent("t2", "Bash", {"command": "pytest -q"}),
        ToolResultEvent("t2", False),
    ]
    page = display.result_html(WorkflowResult("r", "q", "t", "completed", steps=[review]))
    assert "```" not in page  # the fence became a code block
    assert re.search(
        r'<pre style="[^"]*monospace[^"]*"><code style="font-family:monospace">'
        r"\{&quot;suggestions&quot;: 0\}",
        page,
    )
    assert "<li>one &lt;b&gt;two&lt;/b&gt;</li>" in page  # raw HTML in an answer stays text
    folded = re.search(
        r"<details style=[^>]*><summary[^>]*>2 tool calls</summary>(.*?)</details>", page
    )
    assert folded is not None
    assert "✓ <code" in folded.group(1) and ">Read</code> calc.py" in folded.group(1)
    assert "✗ <code" in folded.group(1) and ">Bash</code> pytest -q" in folded.group(1)
    # The final answer is open; the summary line of each step carries its time.
    assert re.search(r"<details open [^>]*><summary[^>]*>implement \(codex\): ok, .*, 0\.0s<", page)


def test_one_diff_renderer_for_results_and_the_workspace() -> None:
    from orchestrator_nb.workspace.diff import diff_block_html

    run = WorkflowResult("r", "quick", "task", "completed", diff=DIFF)
    in_result = run._repr_mimebundle_()["text/html"]
    in_workspace = diff_block_html(DIFF, "<code>calc.py</code>")
    word = '<span style="background:#abf2bc">//</span>'  # the changed word, highlighted
    assert word in in_result and word in in_workspace


def test_session_turns_and_their_export_use_the_usage_line() -> None:
    from orchestrator_nb.notebook.export import _step_md

    record = StepRecord.from_result(step(Usage(9600, 120, 0, None)), "2026-01-01T00:00:00")
    turn = Turn(number=1, task="t", workflow="quick", started_at="x", steps=[record])
    line = "9,600 in / 120 out tokens, cost not reported"
    assert turn.summary().endswith(line)
    assert line in _step_md(turn, record)[0]


def test_a_total_with_a_cost_says_which_agents_it_covers() -> None:
    claude = StepResult("claude", True, usage=Usage(100, 10, 0, 0.0123))
    codex = StepResult("codex", True, usage=Usage(9600, 120, 0, 0.0))
    gemini = StepResult("gemini", True, usage=Usage(3620, 285, 0, None))
    run = WorkflowResult("r", "default", "task", "completed", steps=[claude, codex, gemini])
    assert run.summary().endswith(
        "13,320 in / 415 out tokens, $0.0123 (claude, codex; gemini not reported)"
    )
    assert "(claude, codex; gemini not reported)" in run._repr_mimebundle_()["text/html"]
    # Every agent priced: the total names them all; none priced: "cost not reported" says it.
    priced = WorkflowResult("r", "default", "task", "completed", steps=[claude, codex, claude])
    assert priced.summary().endswith("$0.0246 (claude, codex)")
    unpriced = WorkflowResult("r", "default", "task", "completed", steps=[gemini])
    assert unpriced.summary().endswith("tokens, cost not reported")
    # A session turn (history, exports) says the same of its steps.
    records = [StepRecord.from_result(s, "2026-01-01T00:00:00") for s in (claude, gemini)]
    turn = Turn(number=1, task="t", workflow="default", started_at="x", steps=records)
    assert turn.summary().endswith("$0.0123 (claude; gemini not reported)")
