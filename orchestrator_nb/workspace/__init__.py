"""The workspace layer: users always see, and can undo, what an agent did to their files.

* :class:`Workspace` — the facade: ``snapshot()``, ``changes(before, after)``, ``step(id)``,
  ``writer(id)``, ``write_code_blocks(text, id)``, ``revert_step(id)``, ``revert_run()``,
  ``worktrees``.
* Snapshots: in a git workspace one ``git status --porcelain=v2`` plus HEAD, with dirty and
  untracked files hashed (stat-cached) and kept in ``.orchestrator/objects``; elsewhere a tree walk
  honouring ``.gitignore`` with a persistent stat cache.
* :class:`ChangeSet` / :class:`Change` — added, modified, deleted, renamed; binary or text; line
  counts; unified diffs; notebook display.
* :class:`SafeWriter` — the only writer: path rules, backups, atomic writes, a registry.
* :func:`extract_files` / :func:`write_files` — files named by fenced code blocks.
* :class:`WorktreeManager` — a git worktree per step, its diff, applying it, cleaning up.
"""

from __future__ import annotations

from .codeblocks import CodeBlockWrites, CodeFile, extract_files, write_files
from .diff import Change, ChangeSet
from .paths import check_relpath
from .revert import RevertResult
from .safe_write import SafeWriter, WriteRecord
from .snapshot import Snapshot
from .state import STATE_DIR_NAME, StateDir
from .store import FileState
from .workspace import StepTracker, Workspace, new_run_id
from .worktree import ApplyResult, Worktree, WorktreeManager, WorktreePatch

__all__ = [
    "STATE_DIR_NAME",
    "ApplyResult",
    "Change",
    "ChangeSet",
    "CodeBlockWrites",
    "CodeFile",
    "FileState",
    "RevertResult",
    "SafeWriter",
    "Snapshot",
    "StateDir",
    "StepTracker",
    "Workspace",
    "Worktree",
    "WorktreeManager",
    "WorktreePatch",
    "WriteRecord",
    "check_relpath",
    "extract_files",
    "new_run_id",
    "write_files",
]
