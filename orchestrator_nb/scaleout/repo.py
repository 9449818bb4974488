"""The repository travels as git bundles: to the workers at the batch's commit, back as branches.

The driver bundles HEAD once (``git bundle create``) and puts the bytes in Ray's object store,
so a worker needs neither access to the driver's disk nor a git server: each task fetches the
bundle into a fresh repository of its own, on branch ``orchestrator-batch/<batch>/<task>`` at
the batch's commit, runs the workflow there, commits what changed (as the local batch does)
and sends back a bundle of that one commit. The driver fetches it into the workspace's
repository under the same branch name, so a task run on Ray leaves exactly what a local task
leaves: a branch to inspect or merge.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..batching.isolation import BRANCH_PREFIX
from ..errors import ConfigError, WorkspaceError
from ..workspace import StateDir
from ..workspace._git import IDENTITY_ENV, discover, run_git
from ..workspace.state import exclude_from_git


@dataclass(frozen=True)
class Snapshot:
    """What the workers start from: the commit, the bundle holding it, where the workspace is."""

    toplevel: Path
    prefix: str  # the workspace folder inside the repository: "" or "sub/dir/"
    commit: str
    bundle: bytes
    uncommitted: bool


def branch_name(batch_id: str, task_id: str) -> str:
    return f"{BRANCH_PREFIX}{batch_id}/{task_id}"


def snapshot(workspace: Path) -> Snapshot:
    """Bundle the workspace's repository at HEAD (the driver side)."""
    repo = discover(workspace)
    if repo is None:
        raise ConfigError(
            f"the Ray executor needs a git workspace; {workspace} is not in one",
            key="executor",
            hint="run `git init` and commit, or use executor='local' (it can copy folders)",
        )
    StateDir(workspace, repo).ensure()  # the journal lives there: keep it out of git
    head = run_git(
        ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], repo.toplevel, check=False
    )
    if head.returncode != 0:
        raise WorkspaceError(
            f"the repository of {workspace} has no commit for the tasks to start from",
            hint="commit once (git add -A && git commit -m init)",
        )
    commit = head.stdout.decode().strip()
    status = run_git(["status", "--porcelain", "--", "."], workspace).stdout
    with tempfile.TemporaryDirectory(prefix="orchestrator-nb-bundle-") as tmp:
        target = Path(tmp) / "batch.bundle"
        run_git(["bundle", "create", "--quiet", str(target), "HEAD"], repo.toplevel)
        data = target.read_bytes()
    return Snapshot(repo.toplevel, repo.prefix, commit, data, bool(status.strip()))


def checkout(root: Path, bundle: bytes, commit: str, branch: str) -> None:
    """A fresh repository in ``root`` on ``branch`` at ``commit`` (the worker side)."""
    if root.exists():
        shutil.rmtree(root)  # the leftovers of an attempt that was cut short
    root.mkdir(parents=True)
    run_git(["init", "--quiet", "."], root)
    source = root.parent / f".{root.name}.bundle"
    source.write_bytes(bundle)
    try:
        run_git(["fetch", "--quiet", "--no-tags", str(source), "HEAD"], root)
    finally:
        source.unlink(missing_ok=True)
    run_git(["checkout", "--quiet", "-B", branch, commit], root)
    info = discover(root)
    if info is not None:
        exclude_from_git(info)  # what the runs keep in .orchestrator/ is never committed


def commit_all(workspace: Path, message: str) -> bool:
    """Commit everything the task changed; True if there was anything."""
    run_git(["add", "--all", "--", "."], workspace)
    staged = run_git(["diff", "--cached", "--quiet"], workspace, check=False)
    if staged.returncode != 1:
        return False
    # The agents' work, not the user's: a fixed identity, and no hooks or signing that could
    # block or prompt on an unattended worker.
    run_git(
        ["-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "-m", message],
        workspace,
        env=IDENTITY_ENV,
    )
    return True


def bundle_branch(root: Path, branch: str, base: str) -> bytes:
    """The commits of ``branch`` after ``base``, as a bundle (the worker side)."""
    target = root.parent / f".{root.name}.result.bundle"
    try:
        run_git(["bundle", "create", "--quiet", str(target), branch, f"^{base}"], root)
        return target.read_bytes()
    finally:
        target.unlink(missing_ok=True)


def import_branch(toplevel: Path, branch: str, base: str, bundle: bytes | None) -> None:
    """Make ``branch`` in the driver's repository: the task's commit, or ``base`` if none."""
    if bundle is None:
        run_git(["branch", "--force", "--quiet", branch, base], toplevel)
        return
    fd, name = tempfile.mkstemp(prefix="orchestrator-nb-result-", suffix=".bundle")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(bundle)
        ref = f"refs/heads/{branch}"
        run_git(["fetch", "--quiet", "--no-tags", name, f"+{ref}:{ref}"], toplevel)
    finally:
        os.unlink(name)


__all__ = [
    "Snapshot",
    "branch_name",
    "bundle_branch",
    "checkout",
    "commit_all",
    "import_branch",
    "snapshot",
]
