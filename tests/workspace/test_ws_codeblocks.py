"""Files named by fenced code blocks, and writing them through the safe writer."""

from __future__ import annotations

from pathlib import Path

import pytest
from ws_helpers import listing, write

from orchestrator_nb.errors import UnsafePathError
from orchestrator_nb.workspace import SafeWriter, Workspace, extract_files, write_files


def named(text: str) -> dict[str, str]:
    return {f.path: f.content for f in extract_files(text)}


@pytest.mark.parametrize(
    "opening",
    [
        "```python path=src/app.py",
        '```python title="src/app.py"',
        "```python filename='src/app.py'",
        "```python file=src/app.py",
        "```python:src/app.py",
        "```src/app.py",
        '``` {.python file="src/app.py"}',
        "~~~python path=src/app.py",
    ],
)
def test_info_string_names(opening: str) -> None:
    fence = opening[:3]
    files = extract_files(f"Here:\n\n{opening}\nprint(1)\n{fence}\n")
    assert [(f.path, f.content, f.named_by) for f in files] == [
        ("src/app.py", "print(1)\n", "info")
    ]


def test_info_language_is_kept() -> None:
    (f,) = extract_files("```python path=a.py\nx\n```\n")
    assert f.language == "python" and f.line == 1


@pytest.mark.parametrize(
    ("marker", "lang"),
    [
        ("# file: src/app.py", "python"),
        ("# File: src/app.py", "python"),
        ("// file: src/app.py", "js"),
        ("<!-- file: src/app.py -->", "html"),
        ("/* path: src/app.py */", "css"),
        ("-- filename: src/app.py", "sql"),
    ],
)
def test_first_line_marker_names_and_is_dropped(marker: str, lang: str) -> None:
    files = extract_files(f"```{lang}\n{marker}\nbody\n```\n")
    assert [(f.path, f.content, f.named_by) for f in files] == [
        ("src/app.py", "body\n", "first_line")
    ]


@pytest.mark.parametrize(
    "label",
    [
        "File: src/app.py",
        "file: `src/app.py`",
        "**File:** `src/app.py`",
        "**File**: src/app.py",
        "Filename: src/app.py",
        "### src/app.py",
        "**`src/app.py`**",
        "`src/app.py`:",
        "- path: src/app.py",
    ],
)
def test_preceding_line_names(label: str) -> None:
    for gap in ("", "\n"):
        files = extract_files(f"Some text.\n\n{label}\n{gap}```python\nbody\n```\n")
        assert [(f.path, f.named_by) for f in files] == [("src/app.py", "preceding_line")]


def test_blocks_without_a_name_are_not_files() -> None:
    text = "Run this:\n\n```bash\nls -la\n```\n\nExample:\n```\nplain\n```\n"
    assert extract_files(text) == []


def test_sentences_before_a_block_are_not_names() -> None:
    assert extract_files("Here is the updated version:\n```python\nx\n```\n") == []
    assert extract_files("Use Python 3.11:\n```python\nx\n```\n") == []


def test_unclosed_block_is_not_written() -> None:
    assert extract_files("```python path=a.py\nprint(1)\n") == []


def test_longer_fence_keeps_inner_fences() -> None:
    text = "````markdown path=README.md\n# Title\n\n```python\nx = 1\n```\n````\n"
    assert named(text) == {"README.md": "# Title\n\n```python\nx = 1\n```\n"}


def test_indented_fence_is_dedented_and_crlf_is_normalized() -> None:
    text = "  ```python path=a.py\r\n  def f():\r\n      pass\r\n  ```\r\n"
    assert named(text) == {"a.py": "def f():\n    pass\n"}


def test_several_files_and_last_version_wins() -> None:
    text = "```python path=a.py\nv1\n```\nFile: b.txt\n```\nb\n```\n```python path=a.py\nv2\n```\n"
    files = extract_files(text)
    assert [(f.path, f.content) for f in files] == [("b.txt", "b\n"), ("a.py", "v2\n")]


def test_empty_block_is_an_empty_file() -> None:
    assert named("```text path=empty.txt\n```\n") == {"empty.txt": ""}


def test_write_files_writes_through_the_writer(tmp_path: Path) -> None:
    w = SafeWriter(tmp_path)
    out = write_files("```python path=pkg/mod.py\nx = 1\n```\n", w)
    assert (tmp_path / "pkg" / "mod.py").read_text() == "x = 1\n"
    assert [r.path for r in out.written] == ["pkg/mod.py"] and w.writes == out.written


def test_one_unsafe_path_writes_nothing(tmp_path: Path) -> None:
    write(tmp_path / "ws" / "keep.txt", "k\n")
    before = listing(tmp_path)
    text = "```python path=good.py\nok\n```\n```sh path=../evil.sh\nrm -rf ~\n```\n"
    with pytest.raises(UnsafePathError) as info:
        write_files(text, SafeWriter(tmp_path / "ws"))
    assert info.value.path == "../evil.sh"
    assert listing(tmp_path) == before


def test_skip_mode_writes_the_safe_ones(tmp_path: Path) -> None:
    text = "```python path=good.py\nok\n```\n```\n# file: .git/hooks/post-commit\nx\n```\n"
    out = write_files(text, SafeWriter(tmp_path), on_unsafe="skip")
    assert [r.path for r in out.written] == ["good.py"]
    assert [(f.path, e.rule) for f, e in out.refused] == [
        (".git/hooks/post-commit", "the path is inside .git/, which only git may write")
    ]
    assert not (tmp_path / ".git").exists()


def test_workspace_writes_code_blocks_and_can_revert_them(tmp_path: Path) -> None:
    write(tmp_path / "app.py", "old\n")
    ws = Workspace(tmp_path, run_id="r")
    answer = "Updated:\n\n**File:** `app.py`\n```python\nnew\n```\n\n```md path=NOTES.md\nn\n```\n"
    out = ws.write_code_blocks(answer, "gen")
    assert sorted(r.path for r in out.written) == ["NOTES.md", "app.py"]
    assert {c.path: c.kind for c in ws.step_changes("gen")} == {
        "NOTES.md": "added",
        "app.py": "modified",
    }
    ws.revert_step("gen")
    assert (tmp_path / "app.py").read_text() == "old\n" and not (tmp_path / "NOTES.md").exists()
