"""Each batch task's own workspace: a git worktree on its own branch, or a copy of the folder.

In a git workspace a task runs in a fresh worktree made from HEAD on branch
``orchestrator-batch/<batch>/<task>``; when it ends, whatever it changed is committed on that
branch and the worktree is removed, so the branch is the result to inspect or merge. Elsewhere
the task runs in a copy of the workspace (without ``.orchestrator/``) that stays as the result.
Both live under ``<workspace>/.orchestrator/batches/<batch>/<task>``; a task that a crash cut
short finds its leftovers there and starts again from scratch.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigError, WorkspaceError
from ..workspace import StateDir
from ..workspace._git import (
    IDENTITY_ENV,
    RepoInfo,
    discover,
    drop_worktrees,
    git_error,
    run_git,
)

Isolation = Literal["auto", "worktree", "copy"]
ISOLATIONS: tuple[Isolation, ...] = ("auto", "worktree", "copy")
BRANCH_PREFIX = "orchestrator-batch/"
ADD_ATTEMPTS = 4


@dataclass(frozen=True)
class Place:
    """Where one task runs, and what the summary calls it (its branch, or its folder)."""

    task_id: str
    path: Path  # the task's workspace
    root: Path  # the worktree or copy as a whole
    where: str
    branch: str | None = None


class Isolator:
    """Makes and finishes the per-task workspaces of one batch."""

    def __init__(self, workspace: Path, batch_id: str, mode: str) -> None:
        if mode not in ISOLATIONS:
            raise ConfigError(
                f"unknown isolation {mode!r}",
                key="isolation",
                hint=f"accepted: {', '.join(ISOLATIONS)}",
            )
        self.workspace = workspace
        self.batch_id = batch_id
        self.repo = _repo_of(workspace)
        if mode == "worktree" and self.repo is None:
            raise ConfigError(
                f"isolation='worktree' needs a git workspace; {workspace} is not in one",
                key="isolation",
                hint="run `git init` and commit, or use isolation='copy'",
            )
        self.mode: Literal["worktree", "copy"] = (
            "worktree" if mode != "copy" and self.repo is not None else "copy"
        )
        StateDir(workspace, self.repo).ensure()  # also lists .orchestrator/ in info/exclude
        self.dir = workspace / ".orchestrator" / "batches" / batch_id
        self.dir.mkdir(parents=True, exist_ok=True)
        # git takes locks on shared refs and worktree metadata: one git command at a time.
        self._git_lock = threading.Lock()
        if self.mode == "worktree":
            self._check_head()

    @property
    def uncommitted(self) -> bool:
        """Whether the workspace has changes HEAD lacks (tasks start from HEAD without them)."""
        if self.repo is None or self.mode != "worktree":
            return False
        status = run_git(["status", "--porcelain", "--", "."], self.workspace).stdout
        return bool(status.strip())

    def _check_head(self) -> None:
        assert self.repo is not None
        head = run_git(
            ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], self.repo.toplevel, check=False
        )
        if head.returncode != 0:
            raise WorkspaceError(
                f"the repository of {self.workspace} has no commit for the tasks to start from",
                hint="commit once (git add -A && git commit -m init), or use isolation='copy'",
            )

    def branch(self, task_id: str) -> str:
        return f"{BRANCH_PREFIX}{self.batch_id}/{task_id}"

    def prepare(self, task_id: str) -> Place:
        """A fresh workspace for ``task_id`` (leftovers of an interrupted attempt removed)."""
        root = self.dir / task_id
        if self.mode == "copy":
            if root.exists():
                shutil.rmtree(root)
            shutil.copytree(self.workspace, root, symlinks=True, ignore=self._skip_state)
            return Place(task_id, root, root, str(root.relative_to(self.workspace)))
        assert self.repo is not None
        branch = self.branch(task_id)
        top = self.repo.toplevel
        # -B: a branch left by an interrupted attempt is reset to HEAD (no `branch -D` first).
        # --no-checkout: only the registration needs the lock; the checkout, the slow part,
        # runs beside the other tasks' (each worktree has its own index).
        add = ["worktree", "add", "--quiet", "--no-checkout", "-B", branch, str(root), "HEAD"]
        for attempt in range(1, ADD_ATTEMPTS + 1):
            with self._git_lock:
                if os.path.lexists(root) or attempt > 1:
                    drop_worktrees(top, [root])
                done = run_git(add, top, check=False)
            if done.returncode == 0:
                run_git(["reset", "--hard", "--quiet"], root)
                break
            if attempt == ADD_ATTEMPTS:
                raise git_error(
                    ["git", "-c", "core.quotepath=off", *add], done.returncode, done.stderr
                )
            # A workflow starting in another task's worktree runs `git worktree prune`, which
            # can remove this worktree's half-made metadata before git has locked it.
            time.sleep(0.05 * attempt)
        path = root / self.repo.prefix if self.repo.prefix else root
        path.mkdir(parents=True, exist_ok=True)
        return Place(task_id, path, root, branch, branch)

    def finish(self, place: Place, message: str) -> bool:
        """Commit the task's changes on its branch and remove the worktree; True if committed."""
        if place.branch is None:
            return False
        # The commit needs no lock: the task's own index and branch, and git's object store
        # takes concurrent writers. Only removing the worktree touches what tasks share.
        try:
            run_git(["add", "--all", "--", "."], place.path)
            staged = run_git(["diff", "--cached", "--quiet"], place.path, check=False)
            committed = staged.returncode == 1
            if committed:
                # The agents' work, not the user's: a fixed identity, and no hooks or signing
                # that could block or prompt in an unattended batch.
                run_git(
                    [
                        "-c",
                        "commit.gpgsign=false",
                        "commit",
                        "-q",
                        "--no-verify",
                        "-m",
                        message,
                    ],
                    place.path,
                    env=IDENTITY_ENV,
                )
        finally:
            assert self.repo is not None
            with self._git_lock:
                drop_worktrees(self.repo.toplevel, [place.root])
        return committed

    def discard(self, place: Place) -> None:
        """Remove an unfinished task's worktree and branch, or its copy."""
        if place.branch is None:
            shutil.rmtree(place.root, ignore_errors=True)
            return
        assert self.repo is not None
        with self._git_lock:  # the folder is ours: under this batch's, made by prepare
            drop_worktrees(self.repo.toplevel, [place.root], [place.branch])

    def _skip_state(self, folder: str, names: list[str]) -> list[str]:
        return [".orchestrator"] if Path(folder) == self.workspace else []


def _repo_of(workspace: Path) -> RepoInfo | None:
    repo = discover(workspace)
    if repo is not None and repo.prefix:
        ignored = run_git(
            ["check-ignore", "-q", "--", repo.prefix.rstrip("/")], repo.toplevel, check=False
        )
        if ignored.returncode == 0:
            return None  # an ignored folder inside a repository: git cannot carry it
    return repo


__all__ = ["BRANCH_PREFIX", "ISOLATIONS", "Isolation", "Isolator", "Place"]
