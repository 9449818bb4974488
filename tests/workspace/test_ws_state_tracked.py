"""A state folder that git tracks is refused, also after an earlier run found it untracked."""

from __future__ import annotations

from pathlib import Path

import pytest
from ws_helpers import git, write

from orchestrator_nb.errors import WorkspaceError
from orchestrator_nb.workspace._git import discover
from orchestrator_nb.workspace.state import StateDir


def test_state_folder_committed_after_a_clean_check_is_refused(repo: Path) -> None:
    info = discover(repo)
    StateDir(repo, info).ensure()
    StateDir(repo, info).ensure()  # the same index: the earlier answer stands
    write(repo / ".orchestrator" / "runs" / "planted.json", "{}")
    git(repo, "add", "-f", ".orchestrator/runs/planted.json")
    with pytest.raises(WorkspaceError, match="tracked by git"):
        StateDir(repo, info).ensure()
