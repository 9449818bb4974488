"""What the workspace holds at one moment, cheap enough to take before and after every step.

Design (see also the package docstring):

* **git workspace**: one ``git status --porcelain=v2 -z`` (tracked, untracked, not ignored) plus
  the HEAD commit. Only paths that differ from HEAD are recorded; every other file is HEAD's
  version, which git keeps. Dirty and untracked files are hashed as git blobs (skipped when a stat
  cache says they did not change) and their content copied into ``.orchestrator/objects`` so a
  later diff or revert has it even after the agent overwrote the file.
* **any other folder**: a walk of the tree that honours ``.gitignore``, with a persistent stat
  cache (size, mtime, inode, ctime) so only new or touched files are hashed and copied.

Both skip ``.git`` and ``.orchestrator``.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ._git import ZERO_OIDS, RepoInfo, run_git, split_z
from .ignore import IgnoreRules
from .state import STATE_DIR_NAME
from .store import FileState, ObjectStore, StatCache, same_state

SnapshotKind = Literal["git", "tree"]
_SKIP_NAMES = frozenset({".git", STATE_DIR_NAME})
_LS_TREE_CHUNK = 200


@dataclass(frozen=True)
class Snapshot:
    """Workspace state at one moment; paths are relative to the workspace, with ``/``.

    ``files`` holds every file for a ``tree`` snapshot. For a ``git`` snapshot it holds only the
    paths whose working-tree version differs from HEAD (None: absent from the working tree); the
    rest are HEAD's versions. ``head_files`` is HEAD's version of those same paths where git
    reported it, and ``renames`` maps new path → old path for renames git detected.
    """

    id: str
    kind: SnapshotKind
    taken_at: float
    files: Mapping[str, FileState | None]
    head: str | None = None
    head_files: Mapping[str, FileState | None] = field(default_factory=dict)
    renames: Mapping[str, str] = field(default_factory=dict)
    unreadable: tuple[str, ...] = ()
    duration_s: float = 0.0

    def __repr__(self) -> str:
        head = f" head={self.head[:10]}" if self.head else ""
        return f"<Snapshot {self.id} {self.kind}{head} {len(self.files)} paths>"


@dataclass(frozen=True)
class PathChange:
    """One path whose version differs between two snapshots (before/after None: absent)."""

    path: str
    before: FileState | None
    after: FileState | None


class Snapshotter:
    def __init__(
        self, root: Path, store: ObjectStore, cache_dir: Path, repo: RepoInfo | None
    ) -> None:
        self.root = root
        self.store = store
        self.repo = repo
        self._cache = StatCache(cache_dir / ("stat-git.json" if repo else "stat-tree.json"))
        # The stat cache is shared state; steps may snapshot from worker threads.
        self._lock = threading.Lock()

    # -- taking ---------------------------------------------------------------------------

    def take(self) -> Snapshot:
        with self._lock:
            start = time.perf_counter()
            taken_at = time.time()
            snap = self._take_git(taken_at) if self.repo else self._take_tree(taken_at)
            self._cache.save()
        return Snapshot(
            id=snap.id,
            kind=snap.kind,
            taken_at=taken_at,
            files=snap.files,
            head=snap.head,
            head_files=snap.head_files,
            renames=snap.renames,
            unreadable=snap.unreadable,
            duration_s=time.perf_counter() - start,
        )

    def _state_of(
        self, rel: str, path: str | Path, st: os.stat_result | None = None
    ) -> FileState | None:
        if st is None:
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return None
        cached = self._cache.lookup(rel, st)
        if cached is not None and (st.st_size > self.store.max_blob or self.store.has(cached.oid)):
            return cached  # files over the store limit are never kept, only hashed
        state = self.store.read_state(path, st)
        if state is not None:
            self._cache.record(rel, st, state)
        return state

    def _take_git(self, taken_at: float) -> Snapshot:
        assert self.repo is not None
        proc = run_git(
            [
                "status",
                "--porcelain=v2",
                "-z",
                "--branch",
                "--no-ahead-behind",
                "--untracked-files=all",
                "--find-renames",
                "--",
                ".",
            ],
            self.root,
        )
        prefix = self.repo.prefix
        top = self.repo.toplevel
        head: str | None = None
        files: dict[str, FileState | None] = {}
        head_files: dict[str, FileState | None] = {}
        renames: dict[str, str] = {}
        unreadable: list[str] = []
        fields = split_z(proc.stdout)
        i = 0
        while i < len(fields):
            rec = fields[i]
            i += 1
            if rec.startswith("# branch.oid "):
                oid = rec[len("# branch.oid ") :]
                head = None if oid == "(initial)" else oid
                continue
            tag = rec[:1]
            if tag == "?":
                path = rec[2:]
                if path.endswith("/") or not path.startswith(prefix):
                    continue  # an untracked nested repository: not ours to look into
                rel = path[len(prefix) :]
                try:
                    files[rel] = self._state_of(rel, top / path)
                except OSError:
                    unreadable.append(rel)
                continue
            if tag not in ("1", "2", "u"):
                continue
            # Field layouts: see "Porcelain Format Version 2" in git-status(1).
            orig: str | None = None
            if tag == "1":
                _, xy, sub, m_head, m_index, _, h_head, h_index, path = rec.split(" ", 8)
            elif tag == "2":
                _, xy, sub, m_head, m_index, _, h_head, h_index, _, path = rec.split(" ", 9)
                orig = fields[i]
                i += 1
            else:
                _, xy, sub, *_, path = rec.split(" ", 10)
                m_head = m_index = h_head = h_index = ""
            if sub.startswith("S") or not path.startswith(prefix):
                continue  # submodules are their own repositories
            rel = path[len(prefix) :]
            x, y = xy[0], xy[1]
            head_state = _state(h_head, m_head)
            if tag == "2" and orig is not None:
                if orig.startswith(prefix):
                    old = orig[len(prefix) :]
                    head_files[old] = head_state
                    if x == "R":
                        renames[rel] = old
                        files.setdefault(old, None)
            elif tag == "1":
                head_files[rel] = head_state
            if tag != "u" and y == "." and x != "D":
                files[rel] = _state(h_index, m_index)
            elif y == "D" or (x == "D" and y == "."):
                files.setdefault(rel, None)
            else:
                try:
                    files[rel] = self._state_of(rel, top / path)
                except OSError:
                    unreadable.append(rel)
        self._cache.retain(set(files))
        return Snapshot(
            id=_new_id(),
            kind="git",
            taken_at=taken_at,
            files=files,
            head=head,
            head_files=head_files,
            renames=renames,
            unreadable=tuple(unreadable),
        )

    def _take_tree(self, taken_at: float) -> Snapshot:
        files: dict[str, FileState | None] = {}
        unreadable: list[str] = []
        stack: list[tuple[str, str, IgnoreRules]] = [(str(self.root), "", IgnoreRules())]
        while stack:
            folder, base, rules = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = [e for e in it if e.name not in _SKIP_NAMES]
            except OSError:
                unreadable.append(base or ".")
                continue
            for entry in entries:
                if entry.name == ".gitignore" and entry.is_file(follow_symlinks=False):
                    try:
                        text = Path(entry.path).read_text("utf-8", "replace")
                    except OSError:
                        continue
                    rules = rules.with_file(base, text)
            for entry in entries:
                rel = base + entry.name
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if rules.ignored(rel, is_dir):
                    continue
                if is_dir:
                    stack.append((entry.path, rel + "/", rules))
                    continue
                try:
                    state = self._state_of(rel, entry.path, entry.stat(follow_symlinks=False))
                except OSError:
                    unreadable.append(rel)
                    continue
                if state is not None:
                    files[rel] = state
        self._cache.retain(set(files))
        return Snapshot(
            id=_new_id(),
            kind="tree",
            taken_at=taken_at,
            files=files,
            unreadable=tuple(sorted(unreadable)),
        )

    # -- comparing ------------------------------------------------------------------------

    def compare(self, before: Snapshot, after: Snapshot) -> list[PathChange]:
        """Every path whose version differs, sorted by path."""
        if before.kind != after.kind:
            raise ValueError("cannot compare a git snapshot with a tree snapshot")
        if before.kind == "tree":
            old, new = before.files, after.files
            differ = [p for p, s in new.items() if not same_state(old.get(p), s)]
            differ += [p for p in old if p not in new]
            return [PathChange(p, old.get(p), new.get(p)) for p in sorted(differ)]
        candidates = set(before.files) | set(after.files)
        if before.kind == "git" and before.head != after.head:
            candidates |= self._head_diff(before.head, after.head)
        b_states = self._resolve(before, after, candidates)
        a_states = self._resolve(after, before, candidates)
        out = []
        for path in sorted(candidates):
            b, a = b_states[path], a_states[path]
            if not same_state(b, a):
                out.append(PathChange(path, b, a))
        return out

    def _resolve(
        self, snap: Snapshot, other: Snapshot, paths: Iterable[str]
    ) -> dict[str, FileState | None]:
        found: dict[str, FileState | None] = {}
        unknown: list[str] = []
        for p in paths:
            if p in snap.files:
                found[p] = snap.files[p]
            elif snap.kind == "tree" or snap.head is None:
                found[p] = None
            elif p in snap.head_files:
                found[p] = snap.head_files[p]
            elif other.head == snap.head and p in other.head_files:
                found[p] = other.head_files[p]
            else:
                unknown.append(p)
        if unknown and snap.head is not None:
            found.update(self.head_states(snap.head, unknown))
        return found

    def head_states(self, head: str, paths: list[str]) -> dict[str, FileState | None]:
        """The versions of ``paths`` (workspace-relative) in commit ``head``."""
        assert self.repo is not None
        prefix = self.repo.prefix
        result: dict[str, FileState | None] = dict.fromkeys(paths)
        for start in range(0, len(paths), _LS_TREE_CHUNK):
            chunk = [prefix + p for p in paths[start : start + _LS_TREE_CHUNK]]
            proc = run_git(
                ["ls-tree", "-r", "-z", "--full-tree", head, "--", *chunk], self.repo.toplevel
            )
            for line in split_z(proc.stdout):
                meta, _, path = line.partition("\t")
                mode, kind, oid = meta.split(" ")
                rel = path[len(prefix) :]
                if kind == "blob" and rel in result:
                    result[rel] = FileState(oid, int(mode, 8))
        return result

    def _head_diff(self, old: str | None, new: str | None) -> set[str]:
        assert self.repo is not None
        spec = [self.repo.prefix] if self.repo.prefix else []
        if old is None or new is None:
            only = new or old
            if only is None:
                return set()
            args = ["ls-tree", "-r", "-z", "--name-only", "--full-tree", only, "--", *spec]
        else:
            args = ["diff-tree", "-r", "-z", "--no-renames", "--name-only", old, new, "--", *spec]
        proc = run_git(args, self.repo.toplevel)
        prefix = self.repo.prefix
        return {p[len(prefix) :] for p in split_z(proc.stdout) if p.startswith(prefix)}


def _state(oid: str, mode: str) -> FileState | None:
    if not oid or oid in ZERO_OIDS or mode in ("", "000000") or mode == "160000":
        return None
    return FileState(oid, int(mode, 8))


def _new_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
