"""The suite's own rules (tests/conftest.py): a skip fails under CI=true; temp files stay inside."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).parent / "conftest.py"

INNER = """
import os, tempfile, pytest

def test_needs_a_tool():
    pytest.skip("no such tool here")

@pytest.mark.xfail(reason="known", strict=True)
def test_known_failure():
    assert False

def test_temp_is_the_session_folder():
    open(os.path.join(tempfile.gettempdir(), "left-behind.txt"), "w").write("x")
    print("TMP=" + tempfile.gettempdir() + "|" + os.environ["TMPDIR"])
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_inner=INNER)
    return pytester


def test_a_skip_passes_locally_and_fails_under_ci(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    inner.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(
        passed=1, skipped=1, xfailed=1
    )
    monkeypatch.setenv("CI", "true")
    result = inner.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1, xfailed=1)  # an xfail is no skip
    result.stdout.fnmatch_lines(["*CI=true: a skip is a failure*no such tool here*"])


def test_a_run_keeps_its_temp_files_in_one_folder_it_removes(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CI", raising=False)
    outside = tmp_path / "system-tmp"
    outside.mkdir()
    monkeypatch.setenv("TMPDIR", str(outside))
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", "-s", "-k", "temp")
    result.assert_outcomes(passed=1)
    line = next(x for x in result.outlines if x.startswith("TMP=") or "TMP=" in x)
    used, exported = line.split("TMP=", 1)[1].split("|")
    assert used == exported  # subprocesses see the same folder
    assert Path(used).parent == outside and Path(used).name.startswith("onbt-")
    assert list(outside.iterdir()) == []  # the session folder, file and all, is gone


def test_this_run_is_inside_its_own_folder() -> None:
    assert Path(tempfile.gettempdir()).name.startswith("onbt-")
    assert os.environ["TMPDIR"] == tempfile.gettempdir()
