"""The repository's trip as git bundles: to a worker's fresh repository and back as a branch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator_nb.errors import ConfigError, WorkspaceError
from orchestrator_nb.scaleout import repo


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "init")
    return root


def test_a_task_round_trip_leaves_a_branch_like_a_local_task(ws: Path, tmp_path: Path) -> None:
    (ws / "scratch.txt").write_text("not committed\n")
    snap = repo.snapshot(ws)
    assert snap.commit == git(ws, "rev-parse", "HEAD")
    assert snap.uncommitted and snap.prefix == ""
    assert ".orchestrator/" in (ws / ".git" / "info" / "exclude").read_text()

    branch = repo.branch_name("b1", "t1")
    assert branch == "orchestrator-batch/b1/t1"
    worker = tmp_path / "worker" / "b1" / "t1-ab"
    repo.checkout(worker, snap.bundle, snap.commit, branch)
    assert git(worker, "rev-parse", "HEAD") == snap.commit
    assert git(worker, "branch", "--show-current") == branch
    assert not (worker / "scratch.txt").exists()  # tasks begin from HEAD
    (worker / "pkg" / "mod.py").write_text("x = 2\n")
    (worker / ".orchestrator").mkdir()
    (worker / ".orchestrator" / "run.log").write_text("state\n")
    assert repo.commit_all(worker, "t1: change x\n\norchestrator-nb batch b1")
    data = repo.bundle_branch(worker, branch, snap.commit)

    repo.import_branch(ws, branch, snap.commit, data)
    assert git(ws, "show", f"{branch}:pkg/mod.py") == "x = 2"
    assert git(ws, "log", "-1", "--format=%an", branch) == "orchestrator-nb"
    changed = git(ws, "diff", "--name-only", snap.commit, branch)
    assert changed == "pkg/mod.py"  # the run's state folder stayed out of the commit
    assert git(ws, "branch", "--show-current") != branch  # the user's checkout is untouched

    # Nothing changed: the branch still exists, at the batch's commit (as a local task's does).
    again = tmp_path / "worker" / "b1" / "t2-cd"
    repo.checkout(again, snap.bundle, snap.commit, repo.branch_name("b1", "t2"))
    assert not repo.commit_all(again, "t2")
    repo.import_branch(ws, repo.branch_name("b1", "t2"), snap.commit, None)
    assert git(ws, "rev-parse", repo.branch_name("b1", "t2")) == snap.commit


def test_checkout_replaces_the_leftovers_of_a_cut_attempt(ws: Path, tmp_path: Path) -> None:
    snap = repo.snapshot(ws)
    target = tmp_path / "w" / "t1-x"
    target.mkdir(parents=True)
    (target / "half-done.txt").write_text("junk\n")
    repo.checkout(target, snap.bundle, snap.commit, "orchestrator-batch/b/t1")
    assert not (target / "half-done.txt").exists()
    assert (target / "pkg" / "mod.py").read_text() == "x = 1\n"


def test_a_subfolder_workspace_keeps_its_prefix(ws: Path) -> None:
    assert repo.snapshot(ws / "pkg").prefix == "pkg/"


def test_the_workspace_must_be_a_repository_with_a_commit(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ConfigError, match="needs a git workspace") as info:
        repo.snapshot(plain)
    assert "executor='local'" in (info.value.hint or "")
    git(plain, "init", "-q")
    with pytest.raises(WorkspaceError, match="no commit"):
        repo.snapshot(plain)
