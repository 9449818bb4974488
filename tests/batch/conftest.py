"""Fixtures: a plain folder or a git repository, with the scripted agent ``a`` configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from batch_helpers import Scripted


@pytest.fixture
def sc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scripted:
    monkeypatch.setenv("CALLS_LOG", str(tmp_path / "calls.jsonl"))
    return Scripted(tmp_path, git_repo=False)


@pytest.fixture
def sg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scripted:
    monkeypatch.setenv("CALLS_LOG", str(tmp_path / "calls.jsonl"))
    return Scripted(tmp_path, git_repo=True)
