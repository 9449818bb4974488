"""A git worktree per step, on a throwaway branch, and bringing its changes back.

``create(step)`` commits the main workspace's current state (tracked, untracked and not ignored,
through a temporary index, so the user's index and branch are untouched) and checks it out in
``.orchestrator/worktrees/<run>/<step>`` on branch ``orchestrator/<run>/<step>``. ``diff(step)``
is the step's changes against that base (committed or not), ``apply(step)`` applies them to the
main workspace with ``git apply`` or reports the files that conflict, and ``cleanup()`` removes
worktrees and branches. Each run leaves an owner file (pid, host, process start time); a later
``cleanup_stale()`` removes what runs whose process is gone left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import fsio
from ..display import plural
from ..errors import UnsafePathError, WorkspaceError
from ..events import ChangeKind, FileChange
from ._git import IDENTITY_ENV, RepoInfo, drop_worktrees, run_git, split_z
from .diff import diff_block_html
from .paths import check_relpath
from .state import StateDir, safe_id

BRANCH_PREFIX = "orchestrator/"
_KINDS: dict[str, ChangeKind] = {"A": "added", "M": "modified", "T": "modified", "D": "deleted"}
_APPLY_ERROR = re.compile(
    r"^error: (?:patch failed: (?P<a>.+):\d+|(?P<b>.+?): (?:patch does not apply|already exists "
    r"in working directory|does not exist in working directory|No such file or directory|"
    r"does not match index|wrong type))$"
)


@dataclass(frozen=True)
class Worktree:
    step_id: str
    root: Path  # the worktree's top folder
    path: Path  # the step's workspace inside it (the same sub-folder as the main workspace)
    branch: str
    base: str


@dataclass(frozen=True)
class WorktreePatch:
    """A step's changes in its worktree, as a binary-safe git patch."""

    step_id: str
    patch: bytes
    files: tuple[FileChange, ...] = ()

    @property
    def text(self) -> str:
        return self.patch.decode("utf-8", "replace")

    def __bool__(self) -> bool:
        return bool(self.patch)

    def __str__(self) -> str:
        return self.text or f"step {self.step_id}: no changes"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        title = f"worktree of step <code>{self.step_id}</code>: {plural(len(self.files), 'file')}"
        return {"text/plain": str(self), "text/html": diff_block_html(self.text, title)}


@dataclass(frozen=True)
class ApplyResult:
    """Whether a worktree's patch went into the main workspace, and what stopped it if not."""

    step_id: str
    applied: bool
    files: tuple[FileChange, ...] = ()
    conflicts: tuple[str, ...] = ()
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.applied

    def raise_for_conflict(self) -> ApplyResult:
        if not self.applied:
            raise WorkspaceError(
                f"the changes of step {self.step_id} do not apply to the workspace; conflicting "
                f"files: {', '.join(self.conflicts) or '(see message)'}\n{self.message}",
                hint="look at the worktree's diff() and merge those files by hand, or rerun it",
            )
        return self

    def __str__(self) -> str:
        if self.applied:
            return f"step {self.step_id}: applied {plural(len(self.files), 'file')}"
        return f"step {self.step_id}: conflict in {', '.join(self.conflicts)}\n{self.message}"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from ..display import BAD, OK, pre

        return {
            "text/plain": str(self),
            "text/html": pre(str(self), colour=OK if self.applied else BAD),
        }


@dataclass
class _Owner:
    run_id: str
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    start: str | None = None
    steps: dict[str, dict[str, str]] = field(default_factory=dict)


def _proc_start(pid: int) -> str | None:
    # Field 22 of /proc/<pid>/stat tells a reused pid from the process that wrote the file.
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _alive(owner: dict[str, Any]) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process: we cannot tell, so leave it alone
    try:
        pid = int(owner["pid"])
        if pid <= 0:
            return False  # kill(0 or -n, 0) would ask about process groups, not this pid
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except (KeyError, ValueError, TypeError, OverflowError):
        return False
    start = owner.get("start")
    now = _proc_start(pid)
    return not (start and now and start != now)


class WorktreeManager:
    """The worktrees of one run; also usable as a context manager that cleans up on exit."""

    def __init__(self, repo: RepoInfo, state: StateDir, run_id: str) -> None:
        self.repo = repo
        self.state = state
        self.run_id = run_id
        self.run_key = safe_id(run_id)
        self._worktrees: dict[str, Worktree] = {}
        self._patches: dict[str, WorktreePatch] = {}  # each step's last diff()
        # Parallel steps create their worktrees from worker threads.
        self._lock = threading.RLock()
        self._add_lock = threading.Lock()

    # -- owner file -----------------------------------------------------------------------

    @property
    def _run_dir(self) -> Path:
        return self.state.worktrees / self.run_key

    def _write_owner(self) -> None:
        owner = _Owner(self.run_id, start=_proc_start(os.getpid()))
        owner.steps = {
            key: {"step": wt.step_id, "root": str(wt.root), "branch": wt.branch, "base": wt.base}
            for key, wt in self._worktrees.items()
        }
        # The owner file is also the project's marker: clean-up deletes only folders holding one.
        fsio.write_json(self._run_dir / "owner.json", owner.__dict__, fsync=False)

    # -- create / diff / apply ------------------------------------------------------------

    def base(self, step_id: str = "") -> str:
        """A commit of the main workspace as it is now: what a new worktree starts from."""
        what = f"orchestrator base for {step_id}" if step_id else "orchestrator base"
        return self._commit_state(self.repo.toplevel, self._head(), what)

    def create(self, step_id: str, *, base: str | None = None) -> Path:
        """A fresh worktree for ``step_id``; returns the folder the step should work in.

        ``base`` (from :meth:`base`) lets sibling steps share one commit of the workspace.
        """
        key = safe_id(step_id)
        self.state.ensure()
        branch = f"{BRANCH_PREFIX}{self.run_key}/{key}"
        root = self._run_dir / key
        base = base or self.base(step_id)
        wt = Worktree(step_id, root, root / self.repo.prefix, branch, base)
        with self._lock:
            if key in self._worktrees:
                raise WorkspaceError(
                    f"step {step_id!r} already has a worktree in run {self.run_id}",
                    hint="cleanup(step_id) first, or use another step id",
                )
            self._worktrees[key] = wt
            self._write_owner()  # before the branch exists: a crash now leaves a findable owner
        try:
            # Registering worktrees one at a time: `git worktree add` reads the other
            # worktrees' metadata and fails on one that is being written. The checkout, the
            # slow part, then runs side by side with the siblings' (each has its own index).
            with self._add_lock:
                run_git(
                    ["worktree", "add", "--quiet", "--no-checkout", "-b", branch, str(root), base],
                    self.repo.toplevel,
                )
            run_git(["reset", "--hard", "--quiet"], root)
        except WorkspaceError:
            with self._lock:
                self._worktrees.pop(key)
                drop_worktrees(self.repo.toplevel, [root])  # the run's own folder: ours
                self._write_owner()
            raise
        wt.path.mkdir(parents=True, exist_ok=True)
        return wt.path

    def create_many(self, step_ids: list[str]) -> dict[str, Path]:
        """Worktrees for sibling steps from one commit of the workspace, checked out at once.

        A parallel step's children all start from the same state: one base commit instead of
        one each, and the checkouts side by side instead of one after another.
        """
        if not step_ids:
            return {}
        base = self.base(step_ids[0])
        if len(step_ids) == 1:
            return {step_ids[0]: self.create(step_ids[0], base=base)}
        with ThreadPoolExecutor(max_workers=min(8, len(step_ids))) as pool:
            futures = {sid: pool.submit(self.create, sid, base=base) for sid in step_ids}
            return {sid: f.result() for sid, f in futures.items()}

    def get(self, step_id: str) -> Worktree:
        try:
            return self._worktrees[safe_id(step_id)]
        except KeyError:
            raise WorkspaceError(
                f"no worktree for step {step_id!r} in run {self.run_id}",
                hint="create(step_id) first",
            ) from None

    def __iter__(self) -> Any:
        return iter(list(self._worktrees.values()))

    def diff(self, step_id: str) -> WorktreePatch:
        """Everything the step changed in its worktree, committed or not, against its base."""
        wt = self.get(step_id)
        # A tree is enough to diff against: no commit object for the step's state.
        current = self._commit_state(wt.root, None, "", commit=False)
        spec = ["--", self.repo.prefix] if self.repo.prefix else []
        common = ["--no-ext-diff", "--no-textconv", "--find-renames", "--full-index"]
        patch = run_git(
            [
                "diff",
                "--binary",
                "--src-prefix=a/",
                "--dst-prefix=b/",
                *common,
                wt.base,
                current,
                *spec,
            ],
            wt.root,
        ).stdout
        names = run_git(
            ["diff", "--name-status", "-z", *common, wt.base, current, *spec], wt.root
        ).stdout
        found = WorktreePatch(wt.step_id, patch, tuple(self._parse_name_status(names)))
        with self._lock:
            self._patches[safe_id(step_id)] = found
        return found

    def apply(
        self, step_id: str, *, check_only: bool = False, as_diffed: bool = False
    ) -> ApplyResult:
        """Apply the step's patch to the main workspace, or report the conflicting files.

        ``as_diffed``: apply the patch the last :meth:`diff` returned (what the step's result
        reported), instead of diffing the worktree again.
        """
        patch = self._patches.get(safe_id(step_id)) if as_diffed else None
        if patch is None:
            patch = self.diff(step_id)
        if not patch.patch:
            return ApplyResult(patch.step_id, True)
        prefix = self.repo.prefix
        for fc in patch.files:
            rel = fc.path[len(prefix) :] if fc.path.startswith(prefix) else fc.path
            try:
                check_relpath(rel)
            except UnsafePathError as exc:
                raise UnsafePathError(
                    fc.path, f"the worktree's patch touches it: {exc.rule}", hint=exc.hint
                ) from exc
        args = ["apply", "--binary", "--whitespace=nowarn"]
        check = run_git([*args, "--check"], self.repo.toplevel, input=patch.patch, check=False)
        if check.returncode != 0:
            message = check.stderr.decode("utf-8", "replace").strip()
            conflicts: dict[str, None] = {}
            for line in message.splitlines():
                m = _APPLY_ERROR.match(line)
                if m:
                    conflicts.setdefault(m.group("a") or m.group("b") or "", None)
            return ApplyResult(patch.step_id, False, patch.files, tuple(conflicts), message)
        if not check_only:
            run_git(args, self.repo.toplevel, input=patch.patch)
        return ApplyResult(patch.step_id, not check_only, patch.files)

    def _parse_name_status(self, raw: bytes) -> list[FileChange]:
        parts = split_z(raw)
        out: list[FileChange] = []
        i = 0
        while i < len(parts):
            status = parts[i]
            if status[:1] in ("R", "C"):
                out.append(FileChange(parts[i + 2], "renamed" if status[0] == "R" else "added"))
                i += 3
            else:
                out.append(FileChange(parts[i + 1], _KINDS.get(status[:1], "modified")))
                i += 2
        return out

    def _head(self) -> str | None:
        proc = run_git(
            ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], self.repo.toplevel, check=False
        )
        if proc.returncode != 0:
            return None  # a repository without commits: the base becomes a root commit
        return proc.stdout.decode().strip() or None

    def _index_path(self, worktree_root: Path) -> Path:
        """The index git uses in ``worktree_root``, read from its ``.git`` file when it has one."""
        if worktree_root == self.repo.toplevel:
            return self.repo.git_dir / "index"
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = (worktree_root / ".git").read_text("utf-8")
            if text.startswith("gitdir: ") and text.count("\n") <= 1:
                gitdir = Path(text[len("gitdir: ") :].rstrip("\n"))
                return (gitdir if gitdir.is_absolute() else worktree_root / gitdir) / "index"
        out = run_git(["rev-parse", "--path-format=absolute", "--git-path", "index"], worktree_root)
        return Path(out.stdout.decode("utf-8", "surrogateescape").rstrip("\n"))

    def _commit_state(
        self, worktree_root: Path, parent: str | None, message: str, *, commit: bool = True
    ) -> str:
        """A commit (or only a tree) of the worktree's files as they are; its index untouched."""
        index = self._index_path(worktree_root)
        self.state.ensure()
        tmp = self.state.sub("cache") / f"index-{secrets.token_hex(6)}"
        try:
            # Starting from a copy of the real index keeps git's stat data: only files that
            # changed get hashed again.
            if index.exists():
                shutil.copyfile(index, tmp)
            env = {"GIT_INDEX_FILE": str(tmp), **IDENTITY_ENV}
            run_git(["add", "--all", "--", "."], worktree_root, env=env)
            tree = run_git(["write-tree"], worktree_root, env=env).stdout.decode().strip()
            if not commit:
                return tree
            args = ["commit-tree", tree, "-m", message]
            if parent:
                args[2:2] = ["-p", parent]
            return run_git(args, worktree_root, env=env).stdout.decode().strip()
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    # -- cleanup --------------------------------------------------------------------------

    def cleanup(self, step_id: str | None = None) -> list[str]:
        """Remove this run's worktrees and branches (or one step's); returns the branches."""
        with self._lock:
            keys = [safe_id(step_id)] if step_id is not None else list(self._worktrees)
            gone = [wt for wt in (self._worktrees.pop(k, None) for k in keys) if wt is not None]
            for key in keys:
                self._patches.pop(key, None)
            self._remove_many(gone)
            removed = [wt.branch for wt in gone]
            if self._worktrees:
                self._write_owner()
            else:
                shutil.rmtree(self._run_dir, ignore_errors=True)
            return removed

    def _own_run_dirs(self) -> set[str]:
        """Run folders the project made: real folders holding an owner file it wrote.

        Anything else in ``worktrees/`` is not ours to delete; a symlink there (a cloned
        repository pointing our clean-up elsewhere) is removed itself, never followed.
        """
        base = self.state.worktrees
        ours: set[str] = set()
        for entry in os.scandir(base):
            if entry.is_symlink():
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                continue
            owner = os.path.join(entry.path, "owner.json")
            if (
                entry.is_dir(follow_symlinks=False)
                and os.path.isfile(owner)
                and not os.path.islink(owner)
            ):
                ours.add(entry.name)
        return ours

    def _inside_ours(self, root: Path) -> bool:
        base = os.path.realpath(self.state.worktrees)
        return os.path.realpath(root).startswith(base + os.sep)

    def _remove_many(self, gone: list[Worktree]) -> None:
        """Remove this run's worktrees (the folders that are ours) and their branches."""
        if gone:
            roots = [wt.root for wt in gone if self._inside_ours(wt.root)]
            drop_worktrees(self.repo.toplevel, roots, [wt.branch for wt in gone])

    def cleanup_stale(self) -> list[str]:
        """Remove worktrees and branches of runs whose process is gone; returns the branches."""
        top = self.repo.toplevel
        # No blanket `git worktree prune` here: it can delete the half-written metadata of a
        # worktree another run is adding right now. Stale ones are removed one by one below.
        listing = split_z(run_git(["worktree", "list", "--porcelain", "-z"], top).stdout)
        worktrees: dict[str, Path] = {}  # branch → worktree root
        current: Path | None = None
        for line in listing:
            if line.startswith("worktree "):
                current = Path(line[len("worktree ") :])
            elif line.startswith("branch refs/heads/" + BRANCH_PREFIX) and current is not None:
                worktrees[line[len("branch refs/heads/") :]] = current
        refs = run_git(
            ["for-each-ref", "--format=%(refname:short)", "refs/heads/" + BRANCH_PREFIX], top
        ).stdout.decode("utf-8", "surrogateescape")
        branches = set(refs.split()) | set(worktrees)
        runs: dict[str, list[str]] = {}
        for branch in branches:
            parts = branch.split("/")
            if len(parts) == 3:
                runs.setdefault(parts[1], []).append(branch)
        run_dirs = self._own_run_dirs()
        removed: list[str] = []
        roots: list[Path] = []
        for run_key in sorted(set(runs) | run_dirs):
            if run_key == self.run_key or self._run_alive(
                run_key, runs.get(run_key, []), worktrees
            ):
                continue
            for branch in sorted(runs.get(run_key, [])):
                root = worktrees.get(branch)
                # Only a worktree inside our own folder is removed; git's list is not proof.
                if root is not None and self._inside_ours(root):
                    roots.append(root)
                removed.append(branch)
            if run_key in run_dirs:
                roots.append(self.state.worktrees / run_key)
        if removed or roots:
            drop_worktrees(top, roots, removed)  # one prune and one branch -D for them all
        return removed

    def _run_alive(self, run_key: str, branches: list[str], worktrees: dict[str, Path]) -> bool:
        owners = {self.state.worktrees / run_key / "owner.json"}
        owners |= {worktrees[b].parent / "owner.json" for b in branches if b in worktrees}
        for file in owners:
            try:
                owner = json.loads(file.read_text("utf-8"))
            except (OSError, ValueError):
                continue
            if _alive(owner):
                return True
        return False

    def __enter__(self) -> WorktreeManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
