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
    step_page = step(Usage(1, 2))._repr_mimebundle_()["text/html"]
    assert "font-family:monospace" in step_page


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
