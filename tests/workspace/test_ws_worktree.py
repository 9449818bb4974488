"""Per-step git worktrees: create, diff, apply, conflicts, cleanup, and leftovers of a crash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ws_helpers import git, write

from orchestrator_nb.errors import UnsafePathError, WorkspaceError
from orchestrator_nb.events import FileChange
from orchestrator_nb.workspace import STATE_DIR_NAME, Workspace


def branches(repo: Path) -> list[str]:
    out = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/orchestrator/")
    return out.split()


def test_create_starts_from_the_current_files(repo: Path) -> None:
    write(repo / "README.md", "# uncommitted edit\n")
    write(repo / "notes.txt", "untracked\n")
    ws = Workspace(repo, run_id="r1")
    path = ws.worktrees.create("review")
    assert path.is_dir() and path != repo
    assert (path / "README.md").read_text() == "# uncommitted edit\n"
    assert (path / "notes.txt").read_text() == "untracked\n"
    assert not (path / STATE_DIR_NAME).exists()
    assert branches(repo) == ["orchestrator/r1/review"]
    # the user's branch, index and files are untouched
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert git(repo, "status", "--porcelain") == " M README.md\n?? notes.txt\n"
    ws.worktrees.cleanup()


def test_diff_and_apply(repo: Path) -> None:
    ws = Workspace(repo, run_id="r1")
    with ws.worktrees as wts:
        path = wts.create("impl")
        write(path / "src" / "app.py", "def main():\n    return 2\n")
        write(path / "src" / "extra.py", "e = 1\n")
        git(path, "add", "-A")
        git(path, "commit", "-qm", "agent commit in the worktree")
        write(path / "README.md", "# demo\n\nline two\nuncommitted in worktree\n")
        (path / "data.bin").unlink()
        patch = wts.diff("impl")
        assert set(patch.files) == {
            FileChange("src/app.py", "modified"),
            FileChange("src/extra.py", "added"),
            FileChange("README.md", "modified"),
            FileChange("data.bin", "deleted"),
        }
        assert "+    return 2" in patch.text
        assert "<script" not in patch._repr_mimebundle_()["text/html"]
        result = wts.apply("impl")
        assert result.applied and not result.conflicts
        assert result.raise_for_conflict() is result
    assert (repo / "src" / "app.py").read_text() == "def main():\n    return 2\n"
    assert (repo / "src" / "extra.py").read_text() == "e = 1\n"
    assert not (repo / "data.bin").exists()
    assert "uncommitted in worktree" in (repo / "README.md").read_text()
    assert branches(repo) == []  # the context manager cleaned up
    assert git(repo, "log", "--oneline").count("\n") == 1  # main's history untouched


def test_parallel_worktrees_apply_one_after_another(repo: Path) -> None:
    ws = Workspace(repo, run_id="r1")
    a = ws.worktrees.create("a")
    b = ws.worktrees.create("b")
    write(a / "a.txt", "a\n")
    write(b / "b.txt", "b\n")
    assert ws.worktrees.apply("a").applied
    assert ws.worktrees.apply("b").applied
    assert (repo / "a.txt").exists() and (repo / "b.txt").exists()
    assert sorted(ws.worktrees.cleanup()) == ["orchestrator/r1/a", "orchestrator/r1/b"]


def test_conflict_is_reported_and_nothing_applied(repo: Path) -> None:
    ws = Workspace(repo, run_id="r1")
    path = ws.worktrees.create("impl")
    write(path / "README.md", "# from the worktree\n\nline two\n")
    write(path / "ok.txt", "fine\n")
    write(repo / "README.md", "# changed in main meanwhile\n\nline two\n")
    result = ws.worktrees.apply("impl")
    assert not result.applied
    assert result.conflicts == ("README.md",)
    assert "README.md" in str(result)
    with pytest.raises(WorkspaceError, match=r"README\.md"):
        result.raise_for_conflict()
    assert (repo / "README.md").read_text() == "# changed in main meanwhile\n\nline two\n"
    assert not (repo / "ok.txt").exists()
    ws.worktrees.cleanup()


def test_check_only_does_not_write(repo: Path) -> None:
    ws = Workspace(repo, run_id="r1")
    path = ws.worktrees.create("impl")
    write(path / "new.txt", "n\n")
    assert not ws.worktrees.apply("impl", check_only=True).applied
    assert not (repo / "new.txt").exists()
    ws.worktrees.cleanup()


def test_patch_into_the_state_folder_is_refused(repo: Path) -> None:
    ws = Workspace(repo, run_id="r1")
    path = ws.worktrees.create("impl")
    write(path / STATE_DIR_NAME / "runs" / "evil.json", "{}")
    git(path, "add", "-f", STATE_DIR_NAME)
    with pytest.raises(UnsafePathError, match=r"\.orchestrator"):
        ws.worktrees.apply("impl")
    assert not (repo / STATE_DIR_NAME / "runs" / "evil.json").exists()
    ws.worktrees.cleanup()


def test_cleanup_one_step(repo: Path) -> None:
    ws = Workspace(repo, run_id="r1")
    a = ws.worktrees.create("a")
    ws.worktrees.create("b")
    assert ws.worktrees.cleanup("a") == ["orchestrator/r1/a"]
    assert not a.exists() and branches(repo) == ["orchestrator/r1/b"]
    with pytest.raises(WorkspaceError, match="no worktree"):
        ws.worktrees.diff("a")
    ws.worktrees.cleanup()
    assert branches(repo) == []
    assert "orchestrator" not in git(repo, "worktree", "list")


def test_stale_worktrees_of_a_crashed_run_are_removed(repo: Path) -> None:
    crash = (
        "import os\n"
        "from orchestrator_nb.workspace import Workspace\n"
        f"ws = Workspace({str(repo)!r}, run_id='crashed')\n"
        "ws.worktrees.create('impl')\n"
        "ws.worktrees.create('review')\n"
        "os._exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", crash], check=False)
    assert proc.returncode == 3
    assert sorted(branches(repo)) == ["orchestrator/crashed/impl", "orchestrator/crashed/review"]
    leftovers = repo / STATE_DIR_NAME / "worktrees" / "crashed"
    assert leftovers.is_dir()

    ws = Workspace(repo, run_id="live")
    mine = ws.worktrees.create("mine")
    removed = ws.worktrees.cleanup_stale()
    assert sorted(removed) == ["orchestrator/crashed/impl", "orchestrator/crashed/review"]
    assert branches(repo) == ["orchestrator/live/mine"] and mine.is_dir()
    assert not leftovers.exists()
    assert "crashed" not in git(repo, "worktree", "list")
    ws.worktrees.cleanup()


def test_runs_of_live_processes_are_left_alone(repo: Path) -> None:
    other = Workspace(repo, run_id="other")  # same process: alive
    other.worktrees.create("x")
    ws = Workspace(repo, run_id="live")
    assert ws.worktrees.cleanup_stale() == []
    assert branches(repo) == ["orchestrator/other/x"]
    other.worktrees.cleanup()


def test_branch_without_owner_is_stale(repo: Path) -> None:
    git(repo, "branch", "orchestrator/ghost/step")
    ws = Workspace(repo, run_id="live")
    assert ws.worktrees.cleanup_stale() == ["orchestrator/ghost/step"]
    assert branches(repo) == []


def test_repository_without_commits(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q")
    write(root / "a.txt", "a\n")
    ws = Workspace(root, run_id="r1")
    path = ws.worktrees.create("impl")
    assert (path / "a.txt").read_text() == "a\n"
    write(path / "a.txt", "a\nb\n")
    assert ws.worktrees.apply("impl").applied
    assert (root / "a.txt").read_text() == "a\nb\n"
    ws.worktrees.cleanup()


def test_workspace_in_a_subfolder(repo: Path) -> None:
    ws = Workspace(repo / "src", run_id="r1")
    path = ws.worktrees.create("impl")
    assert path.name == "src" and (path / "app.py").is_file()
    write(path / "app.py", "changed\n")
    write(path.parent / "outside.txt", "not part of this workspace\n")
    patch = ws.worktrees.diff("impl")
    assert [f.path for f in patch.files] == ["src/app.py"]
    assert ws.worktrees.apply("impl").applied
    assert (repo / "src" / "app.py").read_text() == "changed\n"
    assert not (repo / "outside.txt").exists()
    ws.worktrees.cleanup()


def test_plain_folder_has_no_worktrees(folder: Path) -> None:
    with pytest.raises(WorkspaceError, match="git"):
        _ = Workspace(folder).worktrees


def test_failed_create_leaves_nothing_registered(repo: Path) -> None:
    git(repo, "branch", "orchestrator/r1/impl")  # the branch name is taken
    ws = Workspace(repo, run_id="r1")
    with pytest.raises(WorkspaceError, match="worktree add"):
        ws.worktrees.create("impl")
    assert list(ws.worktrees) == []
    git(repo, "branch", "-D", "orchestrator/r1/impl")
    assert ws.worktrees.create("impl").is_dir()
    ws.worktrees.cleanup()


def test_worktrees_created_from_parallel_threads(repo: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ws = Workspace(repo, run_id="r1")
    names = [f"child{i}" for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        paths = list(pool.map(ws.worktrees.create, names))
    assert all((p / "README.md").is_file() for p in paths)
    assert sorted(branches(repo)) == [f"orchestrator/r1/{n}" for n in names]
    for i, path in enumerate(paths):
        write(path / f"out{i}.txt", f"{i}\n")
    assert all(ws.worktrees.apply(n).ok for n in names)
    assert sorted(p.name for p in repo.glob("out*.txt")) == [f"out{i}.txt" for i in range(4)]
    ws.worktrees.cleanup()
    assert branches(repo) == []
