"""Real git repositories and plain folders for the workspace tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from ws_helpers import git, write


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit: README.md, src/app.py, data.bin."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write(root / "README.md", "# demo\n\nline two\n")
    write(root / "src" / "app.py", "def main():\n    return 1\n")
    write(root / "data.bin", bytes(range(256)))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A plain folder (no git) with a few files."""
    root = tmp_path / "plain"
    write(root / "README.md", "# plain\n")
    write(root / "src" / "app.py", "print('hi')\n")
    return root
