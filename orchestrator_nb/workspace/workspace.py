"""The :class:`Workspace` facade: one object per workspace folder and run."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import WorkspaceError
from ._git import RepoInfo, discover, run_git
from .codeblocks import CodeBlockWrites, write_files
from .diff import ChangeSet, build_changes
from .lock import locked_for
from .revert import (
    Journal,
    JournalEntry,
    NetChange,
    RecordedChange,
    RevertResult,
    compose,
    revert_changes,
)
from .safe_write import SafeWriter
from .snapshot import PathChange, Snapshot, Snapshotter
from .state import StateDir
from .store import DEFAULT_MAX_BLOB, ObjectStore, load_contents
from .worktree import WorktreeManager


def new_run_id() -> str:
    """Sortable and unique enough: ``20250101-120000-3f9a1c``."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


@dataclass
class StepTracker:
    """What :meth:`Workspace.step` hands out: the writer now, the changes after the block."""

    step_id: str
    before: Snapshot
    writer: SafeWriter
    after: Snapshot | None = None
    changes: ChangeSet = field(default_factory=ChangeSet)


class Workspace:
    """A user's folder as the orchestrator sees it: snapshots, changes, safe writes, revert.

    ``Workspace(path, run_id=...)`` creates ``path/.orchestrator/`` (listed in ``.git/info/exclude``
    in a git workspace). Steps are recorded in the run's journal, so ``revert_step`` and
    ``revert_run`` also work from a later process given the same ``run_id``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        run_id: str | None = None,
        use_git: bool | None = None,
        max_blob_bytes: int = DEFAULT_MAX_BLOB,
    ) -> None:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise WorkspaceError(
                f"workspace {root} is not a folder", hint="create it first, or pick another path"
            )
        self.root = Path(os.path.realpath(root))
        self.run_id = run_id or new_run_id()
        repo = discover(self.root) if use_git is not False else None
        if repo is not None and repo.prefix and _is_ignored(repo, self.root):
            repo = None  # git would not report anything in an ignored folder: walk it instead
        if use_git and repo is None:
            raise WorkspaceError(f"{self.root} is not inside a git work tree", hint="git init")
        self.repo: RepoInfo | None = repo
        self.state = StateDir(self.root, repo)
        self.state.ensure()
        algo = repo.object_format if repo else "sha1"
        self.store = ObjectStore(self.state.objects, algo, max_blob_bytes)
        self.journal = Journal(self.state.journal_path(self.run_id))
        self._snapshotter = Snapshotter(self.root, self.store, self.state.cache, repo)
        self._worktrees: WorktreeManager | None = None

    def __repr__(self) -> str:
        return f"<Workspace {self.root} {self.kind} run={self.run_id}>"

    @property
    def kind(self) -> Literal["git", "tree"]:
        return "git" if self.repo else "tree"

    @property
    def is_git(self) -> bool:
        return self.repo is not None

    # -- snapshots and changes ------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The workspace's files now (see :mod:`.snapshot` for what is stored)."""
        return self._snapshotter.take()

    def changes(
        self, before: Snapshot, after: Snapshot, *, step_id: str | None = None
    ) -> ChangeSet:
        """What changed from ``before`` to ``after``; journaled for revert if ``step_id`` is set."""
        raw = self._snapshotter.compare(before, after)
        renames = {n: o for n, o in after.renames.items() if before.renames.get(n) != o}
        changes = build_changes(raw, self.load, renames)
        meta = {"before": before.id, "after": after.id}
        changeset = ChangeSet(tuple(changes), step_id, meta)
        if step_id is not None:
            self.journal.record_changeset(changeset, step_id)
        return changeset

    def load(self, oids: Iterable[str]) -> dict[str, bytes]:
        """File contents by id, from the object store or git."""
        return load_contents(oids, self.store, self.repo.toplevel if self.repo else None)

    @contextlib.contextmanager
    def step(self, step_id: str) -> Iterator[StepTracker]:
        """Snapshot around a block; afterwards ``tracker.changes`` holds its (journaled) changes."""
        tracker = StepTracker(step_id, self.snapshot(), self.writer(step_id))
        try:
            yield tracker
        finally:
            tracker.after = self.snapshot()
            tracker.changes = self.changes(tracker.before, tracker.after, step_id=step_id)

    # -- writing --------------------------------------------------------------------------

    def writer(self, step_id: str) -> SafeWriter:
        """A safe writer whose writes are backed up and recorded under ``step_id``."""
        return SafeWriter(
            self.root,
            step_id=step_id,
            backup_dir=self.state.backup_dir(self.run_id, step_id),
            store=self.store,
            on_write=self.journal.record_write,
        )

    def write_code_blocks(
        self,
        text: str,
        step_id: str,
        *,
        on_unsafe: Literal["raise", "skip"] = "raise",
    ) -> CodeBlockWrites:
        """Write every file the fenced code blocks of ``text`` name (see :mod:`.codeblocks`)."""
        return write_files(text, self.writer(step_id), on_unsafe=on_unsafe)

    # -- recorded history and revert ------------------------------------------------------

    def steps(self) -> list[str]:
        """The run's recorded steps, in order."""
        return self.journal.steps()

    def step_changes(self, step_id: str) -> ChangeSet:
        """The net changes recorded for one step (from the journal, with diffs)."""
        entries = [
            e for e in self.journal.entries() if e.step_id == step_id and e.source != "revert"
        ]
        return self._changeset(entries, step_id)

    def run_changes(self) -> ChangeSet:
        """The net changes of the whole run so far, reverts included."""
        return self._changeset(self.journal.entries(), None)

    def _changeset(self, entries: list[JournalEntry], step_id: str | None) -> ChangeSet:
        net = compose(entries)
        raw = [PathChange(n.path, n.before, n.after) for n in net.values()]
        return ChangeSet(tuple(build_changes(raw, self.load)), step_id)

    def revert_step(self, step_id: str, *, force: bool = False) -> RevertResult:
        """Undo one step; :class:`RevertConflict` if its files changed since, unless forced."""
        entries = [
            e for e in self.journal.entries() if e.step_id == step_id and e.source != "revert"
        ]
        if not entries:
            raise WorkspaceError(
                f"run {self.run_id} has no recorded changes for step {step_id!r}",
                hint=f"recorded steps: {', '.join(self.steps()) or 'none'}",
            )
        return self._revert(f"step {step_id}", compose(entries), f"revert-{step_id}", force)

    def revert_run(self, *, force: bool = False) -> RevertResult:
        """Undo every change the run recorded, back to the state before its first step."""
        return self._revert(
            f"run {self.run_id}", compose(self.journal.entries()), "revert-run", force
        )

    def _revert(
        self, target: str, net: dict[str, NetChange], step_key: str, force: bool
    ) -> RevertResult:
        # Not while a run writes here: its snapshots would take the revert for its own changes.
        with locked_for(self.state.root, self.run_id, "revert"):
            return self._revert_locked(target, net, step_key, force)

    def _revert_locked(
        self, target: str, net: dict[str, NetChange], step_key: str, force: bool
    ) -> RevertResult:
        writer = SafeWriter(
            self.root,
            step_id=step_key,
            backup_dir=self.state.backup_dir(self.run_id, f"{step_key}-{secrets.token_hex(3)}"),
            store=self.store,
        )
        result = revert_changes(
            target,
            net,
            root=self.root,
            store=self.store,
            load=lambda oids, hints: load_contents(
                oids, self.store, self.repo.toplevel if self.repo else None, hints
            ),
            writer=writer,
            force=force,
        )
        self.journal.append(
            step_key,
            "revert",
            [
                RecordedChange(r.path, r.before, r.after, r.backup)
                for r in result.records
                if r.changed
            ],
        )
        return result

    # -- worktrees ------------------------------------------------------------------------

    @property
    def worktrees(self) -> WorktreeManager:
        """Per-step git worktrees of this run (git workspaces only)."""
        if self.repo is None:
            raise WorkspaceError(
                f"worktrees need a git repository; {self.root} is not one",
                hint="run `git init` and commit, or run the steps one after another",
            )
        if self._worktrees is None:
            self._worktrees = WorktreeManager(self.repo, self.state, self.run_id)
        return self._worktrees


def _is_ignored(repo: RepoInfo, root: Path) -> bool:
    proc = run_git(
        ["check-ignore", "-q", "--", repo.prefix.rstrip("/")], repo.toplevel, check=False
    )
    return proc.returncode == 0
