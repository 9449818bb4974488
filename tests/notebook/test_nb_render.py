"""The final render: per-file diffs, word-level highlights, folding, inline styles only."""

from __future__ import annotations

import re

from orchestrator_nb.events import FileChange, StepResult, Usage
from orchestrator_nb.notebook.render import diff_html, split_files, workflow_bundle
from orchestrator_nb.workflow.result import PlannedStep, WorkflowResult

DIFF = """diff --git a/calc.py b/calc.py
index 1111111..2222222 100644
--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,2 @@
 def div(a, b):
-    return a / b
+    return a // b if b else 0
diff --git a/new.txt b/new.txt
new file mode 100644
--- /dev/null
+++ b/new.txt
@@ -0,0 +1 @@
+<hi & bye>
"""


def result(**kw: object) -> WorkflowResult:
    steps = [StepResult("codex", True, text="done <b>", usage=Usage(10, 2, 0, 0.25))]
    steps[0].step_id = "implement"
    base: dict[str, object] = {
        "steps": steps,
        "changes": [FileChange("calc.py"), FileChange("new.txt", "added")],
        "diff": DIFF,
        "notes": ["gate g: approve by policy"],
    }
    base.update(kw)
    outcome = base.pop("outcome", "completed")
    return WorkflowResult("run-1", "default", "task", outcome, **base)  # type: ignore[arg-type]


def test_split_files() -> None:
    files = split_files(DIFF)
    assert [(f.path, f.added, f.removed) for f in files] == [("calc.py", 1, 1), ("new.txt", 1, 0)]
    bare = split_files("--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n")
    assert [(f.path, f.added, f.removed) for f in bare] == [("x.py", 1, 1)]


def test_word_level_highlights_only_the_changed_words() -> None:
    out = diff_html(DIFF)
    assert '<span style="background:#ffc1c0">/</span>' in out
    assert '<span style="background:#abf2bc">//</span>' in out
    assert '<span style="background:#abf2bc"> if b else 0</span>' in out
    assert "return a " in out  # the unchanged words stay plain
    assert "&lt;hi &amp; bye&gt;" in out  # escaped


def test_large_files_fold_with_their_counts() -> None:
    big = "diff --git a/b.txt b/b.txt\n--- a/b.txt\n+++ b/b.txt\n@@ -0,0 +1,100 @@\n"
    big += "".join(f"+line {i}\n" for i in range(100))
    out = diff_html(big + DIFF)
    first, second = out.split("</details>")[:2]
    assert first.startswith("<details style") and "+100</span>" in first  # folded
    assert second.startswith("<details open")  # small: open


def test_bundle_keeps_deterministic_text_and_inline_styles() -> None:
    r = result()
    bundle = workflow_bundle(r)
    assert set(bundle) == {"text/plain", "text/markdown", "text/html"}
    assert bundle["text/plain"] == str(r) and bundle["text/markdown"] == r._repr_markdown_()
    html = bundle["text/html"]
    assert not re.search(r"<(style|script)|class=", html)
    assert "2 files changed" in html and "done &lt;b&gt;" in html
    assert "gate g: approve by policy" in html


def test_plan_and_changes_without_a_diff() -> None:
    plan = [PlannedStep("implement", "agent", "codex", 0, "do it")]
    dry = WorkflowResult("dry-run", "quick", "t", "completed", plan=plan)
    assert "plan of workflow quick" in workflow_bundle(dry)["text/html"]
    no_diff = workflow_bundle(result(diff=""))["text/html"]
    assert ">added</code> new.txt" in no_diff
    failed = workflow_bundle(result(outcome="failed", error="step x failed"))["text/html"]
    assert "#cf222e" in failed and "step x failed" in failed
