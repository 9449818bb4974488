"""The project's state folder, ``.orchestrator/``, and keeping it out of git.

Layout::

    .orchestrator/
      sessions/  runs/<run>/journal.jsonl  backups/<run>/<step>/  logs/  cache/  audit/
      objects/   (content-addressed copies of file versions a revert may need)
      worktrees/ (per-step git worktrees and their owner files)
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .. import fsio
from ..errors import WorkspaceError
from ._git import RepoInfo, run_git

STATE_DIR_NAME = ".orchestrator"
SUBDIRS = ("sessions", "runs", "backups", "logs", "cache", "audit", "objects", "worktrees")
EXCLUDE_LINE = f"{STATE_DIR_NAME}/"

_ID_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def safe_id(value: str) -> str:
    """A folder- and branch-safe form of a run or step id; distinct ids stay distinct."""
    if _ID_OK.fullmatch(value):
        return value
    cleaned = _ID_BAD_CHARS.sub("-", value).strip("-")[:48] or "id"
    digest = hashlib.sha1(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned}-{digest}"


# State folders found untracked, by the identity of the index they were checked against.
_UNTRACKED_SEEN: dict[str, tuple[int, int, int, int, int]] = {}


def _index_identity(repo: RepoInfo) -> tuple[int, int, int, int, int] | None:
    try:
        st = os.stat(repo.git_dir / "index")
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class StateDir:
    """``<workspace>/.orchestrator``: created on first use, never committed."""

    def __init__(self, workspace: Path, repo: RepoInfo | None = None) -> None:
        self.workspace = workspace
        self.path = workspace / STATE_DIR_NAME
        self.repo = repo
        self._ready = False

    @property
    def root(self) -> Path:
        """The state folder itself (``<workspace>/.orchestrator``)."""
        return self.path

    def ensure(self) -> Path:
        """Create the state folder, refusing a symlink or a copy that git tracks.

        A cloned repository could ship ``.orchestrator`` (or a folder in it) as a link, to make
        state writes land, and clean-ups delete, outside the workspace; or commit it, to plant
        a journal, a session or an audit trail of its own making.
        """
        if self._ready:
            return self.path
        existed = os.path.lexists(self.path)
        try:
            for name in SUBDIRS:
                fsio.ensure_dir(self.path / name, anchor=self.workspace)
            ignore = self.path / ".gitignore"
            if not os.path.lexists(ignore):
                fsio.write_text(
                    ignore, "# orchestrator-nb state: never commit\n*\n", anchor=self.workspace
                )
        except fsio.StatePathError:
            raise
        except OSError as exc:
            raise WorkspaceError(
                f"cannot create the state folder {self.path}: {exc.strerror}",
                hint="make the workspace writable",
            ) from exc
        if self.repo is not None:
            if existed:
                self._refuse_tracked()
            exclude_from_git(self.repo)
        self._ready = True
        return self.path

    def _refuse_tracked(self) -> None:
        assert self.repo is not None
        # What git tracks is the index: while the index file is the same one (same inode, size,
        # change and modification times: git replaces it by rename on every change), the answer
        # found for it stands, and a run saves its `git ls-files`.
        index = _index_identity(self.repo)
        if index is not None and _UNTRACKED_SEEN.get(str(self.path)) == index:
            return
        tracked = run_git(
            ["ls-files", "-z", "--", STATE_DIR_NAME], self.workspace, check=False
        ).stdout
        if not tracked and index is not None:
            _UNTRACKED_SEEN[str(self.path)] = index
        if tracked:
            raise WorkspaceError(
                f"{self.path} is tracked by git: this repository ships its own state folder",
                hint=f"remove it from git (`git rm -r --cached {STATE_DIR_NAME}`) and delete "
                "it, or use another workspace",
            )

    def sub(self, *parts: str) -> Path:
        self.ensure()
        return self.path.joinpath(*parts)

    def run_dir(self, run_id: str) -> Path:
        path = self.sub("runs", safe_id(run_id))
        path.mkdir(parents=True, exist_ok=True)
        return path

    def journal_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "journal.jsonl"

    def backup_dir(self, run_id: str, step_id: str) -> Path:
        return self.sub("backups", safe_id(run_id), safe_id(step_id))

    @property
    def objects(self) -> Path:
        return self.sub("objects")

    @property
    def cache(self) -> Path:
        return self.sub("cache")

    @property
    def worktrees(self) -> Path:
        return self.sub("worktrees")


def exclude_from_git(repo: RepoInfo) -> Path:
    """List the state folder in the repository's ``info/exclude`` (once); return that file."""
    exclude = repo.common_dir / "info" / "exclude"
    try:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        existing = exclude.read_text("utf-8", "surrogateescape") if exclude.exists() else ""
        wanted = {EXCLUDE_LINE, "/" + EXCLUDE_LINE, STATE_DIR_NAME, "/" + STATE_DIR_NAME}
        if any(line.strip() in wanted for line in existing.splitlines()):
            return exclude
        text = "" if not existing or existing.endswith("\n") else "\n"
        text += f"# orchestrator-nb state folder\n{EXCLUDE_LINE}\n"
        # O_APPEND keeps a concurrent writer's lines intact.
        fd = os.open(exclude, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)
    except OSError as exc:
        raise WorkspaceError(
            f"cannot add {EXCLUDE_LINE} to {exclude}: {exc.strerror}",
            hint=f"add the line {EXCLUDE_LINE!r} to that file yourself",
        ) from exc
    return exclude
