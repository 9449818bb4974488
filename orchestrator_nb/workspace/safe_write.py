"""The one way this package writes a user's file on an agent's behalf.

A write is refused (with :class:`~orchestrator_nb.errors.UnsafePathError`, nothing written) unless
the path is relative, normalized, free of look-alike separators and control characters, outside
``.git/`` and ``.orchestrator/``, and still inside the workspace once symlinks are resolved. An
existing file is copied to ``.orchestrator/backups/<run>/<step>/`` first; the new content goes to a
temporary file in the same folder, is fsynced and renamed over the old one, so a crash leaves
either the old file or the new one, never half of either. Folders are opened one by one with
``O_NOFOLLOW`` relative to the previous one, so a symlink swapped in after the check is refused
instead of followed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnsafePathError, WorkspaceError
from ..events import ChangeKind, FileChange
from ..fsio import replace_in
from .diff import Change, ChangeSet, make_change
from .paths import ALLOWED, check_relpath, check_reserved
from .store import MODE_LINK, FileState, ObjectStore, blob_id, git_mode

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_REGULAR = "only regular files (and symlinks to them inside the workspace) can be written"
_SPECIAL = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


@dataclass(frozen=True)
class WriteRecord:
    """One write (or delete) the writer made, as it appears in the step's registry."""

    path: str
    requested: str
    kind: ChangeKind
    before: FileState | None
    after: FileState | None
    backup: str | None
    step_id: str
    time: float
    changed: bool = True

    def to_file_change(self) -> FileChange:
        return FileChange(self.path, self.kind)


class SafeWriter:
    """Writes files into ``root`` for one step and keeps a registry of what it wrote."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        step_id: str = "step",
        backup_dir: str | os.PathLike[str] | None = None,
        store: ObjectStore | None = None,
        on_write: Callable[[WriteRecord], None] | None = None,
    ) -> None:
        self.root = Path(os.path.realpath(root))
        if not self.root.is_dir():
            raise WorkspaceError(f"workspace {self.root} is not a folder")
        self.step_id = step_id
        self.backup_dir = Path(backup_dir) if backup_dir is not None else None
        self.store = store
        self.algo = store.algo if store else "sha1"
        self.on_write = on_write
        self.writes: list[WriteRecord] = []
        self._contents: dict[str, bytes] = {}

    # -- checks ---------------------------------------------------------------------------

    def check(self, path: str, *, follow_final: bool = True) -> str:
        """The workspace-relative path a write to ``path`` would land on, or UnsafePathError."""
        rel = check_relpath(path)
        root = str(self.root)
        head, _, name = rel.rpartition("/")
        try:
            if follow_final:
                real = os.path.realpath(os.path.join(root, rel))
            else:
                real = os.path.join(os.path.realpath(os.path.join(root, head)), name)
        except OSError as exc:
            raise self._os_refusal(path, exc) from exc
        if real != root and not real.startswith(root + os.sep):
            raise UnsafePathError(
                path,
                "the path leads outside the workspace through a symlink",
                hint=f"use {ALLOWED} that does not pass through symlinks to elsewhere",
            )
        resolved = os.path.relpath(real, root).replace(os.sep, "/")
        if resolved == ".":
            raise UnsafePathError(
                path, "the path resolves to the workspace folder itself", hint=f"use {ALLOWED}"
            )
        if resolved != rel:
            check_reserved(resolved.split("/"), path)
        return resolved

    def _os_refusal(self, path: str, exc: OSError) -> UnsafePathError:
        rules = {
            errno.ENAMETOOLONG: "the path is too long for the file system",
            errno.ELOOP: "a folder on the way is a symlink (it changed after the check, or loops)",
            errno.ENOTDIR: "a folder on the way is not a folder",
            errno.EISDIR: "the path is an existing folder",
        }
        rule = rules.get(exc.errno or 0)
        if rule is None:
            raise WorkspaceError(f"cannot write {path!r}: {exc.strerror}") from exc
        return UnsafePathError(path, rule, hint=f"use {ALLOWED}")

    # -- writing --------------------------------------------------------------------------

    def write(
        self, path: str, content: str | bytes, *, executable: bool | None = None
    ) -> WriteRecord:
        """Write ``content`` (str is UTF-8 encoded) to ``path`` atomically; return the record."""
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        rel = self.check(path)
        return self._replace(path, rel, data, executable=executable, link=False)

    def symlink(self, path: str, target: str) -> WriteRecord:
        """Create or replace the symlink ``path`` (used to restore symlinks on revert)."""
        rel = self.check(path, follow_final=False)
        return self._replace(path, rel, os.fsencode(target), executable=None, link=True)

    def delete(self, path: str) -> WriteRecord | None:
        """Remove the file or symlink ``path`` (after a backup); None when it does not exist."""
        rel = self.check(path, follow_final=False)
        parts = rel.split("/")
        try:
            with self._open_dir(parts[:-1], create=False) as dfd:
                if dfd is None:
                    return None
                name = parts[-1]
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    return None
                before = self._read_existing(path, dfd, name, st, rel)
                os.unlink(name, dir_fd=dfd)
                os.fsync(dfd)
            self._prune_empty(parts[:-1])
        except OSError as exc:
            raise self._os_refusal(path, exc) from exc
        return self._register(path, rel, "deleted", before, None)

    def _replace(
        self, path: str, rel: str, data: bytes, *, executable: bool | None, link: bool
    ) -> WriteRecord:
        parts = rel.split("/")
        name = parts[-1]
        try:
            with self._open_dir(parts[:-1], create=True) as dfd:
                assert dfd is not None
                try:
                    st: os.stat_result | None = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    st = None
                before = self._read_existing(path, dfd, name, st, rel) if st else None
                if link:
                    after = self._swap_in_link(dfd, name, data)
                else:
                    old_mode = stat.S_IMODE(st.st_mode) if st and stat.S_ISREG(st.st_mode) else None
                    after = self._swap_in_file(dfd, name, data, old_mode, executable)
        except OSError as exc:
            raise self._os_refusal(path, exc) from exc
        if self.store is not None:
            self.store.put(data, after.oid)
        self._keep(after.oid, data)
        kind: ChangeKind = "added" if before is None else "modified"
        return self._register(path, rel, kind, before, after)

    def _swap_in_file(
        self, dfd: int, name: str, data: bytes, old_mode: int | None, executable: bool | None
    ) -> FileState:
        def chmod(new: int) -> int:
            mode = old_mode if old_mode is not None else new  # a user file keeps its mode
            if executable is True:
                mode |= (mode & 0o444) >> 2
            elif executable is False:
                mode &= ~0o111
            return mode

        final = replace_in(dfd, name, data, mode=0o666, chmod=chmod)
        return FileState(blob_id(data, self.algo), git_mode(final) or 0o100644, len(data))

    def _swap_in_link(self, dfd: int, name: str, target: bytes) -> FileState:
        tmp = f".orch-{secrets.token_hex(8)}.tmp"
        os.symlink(target, tmp, dir_fd=dfd)
        try:
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        os.fsync(dfd)
        return FileState(blob_id(target, self.algo), MODE_LINK, len(target))

    def _read_existing(
        self, path: str, dfd: int, name: str, st: os.stat_result, rel: str
    ) -> FileState:
        kind = stat.S_IFMT(st.st_mode)
        if kind in _SPECIAL:
            raise UnsafePathError(
                path, f"the path is {_SPECIAL[kind]}, not a regular file", hint=_REGULAR
            )
        if stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(
                path, "the path is an existing folder", hint="name a file inside it instead"
            )
        if stat.S_ISLNK(st.st_mode):
            data = os.fsencode(os.readlink(name, dir_fd=dfd))
        else:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
            with os.fdopen(fd, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    raise UnsafePathError(
                        path, "the path changed into a special file", hint=_REGULAR
                    )
                data = fh.read()
        state = FileState(blob_id(data, self.algo), git_mode(st) or 0o100644, len(data))
        self._backup(rel, data, link=stat.S_ISLNK(st.st_mode))
        if self.store is not None:
            self.store.put(data, state.oid)
        self._keep(state.oid, data)
        return state

    def _backup(self, rel: str, data: bytes, *, link: bool) -> None:
        if self.backup_dir is None:
            return
        parts = rel.split("/")
        try:
            self.backup_dir.mkdir(parents=True, exist_ok=True)
            # Walked like the workspace itself: a symlink planted in the backup folder must not
            # carry the copy elsewhere.
            with self._open_dir(parts[:-1], create=True, base=self.backup_dir) as dfd:
                assert dfd is not None
                # The first backup of a step is the version before the step: later writes keep it.
                if link:
                    with contextlib.suppress(FileExistsError):
                        os.symlink(data, parts[-1], dir_fd=dfd)
                    return
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                try:
                    fd = os.open(parts[-1], flags, 0o666, dir_fd=dfd)
                except FileExistsError:
                    return
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
        except OSError as exc:
            raise WorkspaceError(
                f"cannot back up {rel!r} into {self.backup_dir}: {exc.strerror}; "
                "nothing was written",
                hint="free disk space or make .orchestrator/backups writable",
            ) from exc

    @contextlib.contextmanager
    def _open_dir(
        self, parts: list[str], *, create: bool, base: Path | None = None
    ) -> Iterator[int | None]:
        fd = os.open(base or self.root, _DIR_FLAGS)
        try:
            for part in parts:
                try:
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        fd = -1
                        yield None
                        return
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o777, dir_fd=fd)
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nxt
            yield fd
        finally:
            if fd >= 0:
                os.close(fd)

    def _prune_empty(self, parts: list[str]) -> None:
        for depth in range(len(parts), 0, -1):
            try:
                with self._open_dir(parts[: depth - 1], create=False) as dfd:
                    if dfd is None:
                        return
                    os.rmdir(parts[depth - 1], dir_fd=dfd)
            except OSError:
                return

    # -- registry -------------------------------------------------------------------------

    def _keep(self, oid: str, data: bytes) -> None:
        if len(data) <= 1024 * 1024:
            self._contents[oid] = data

    def _register(
        self,
        requested: str,
        rel: str,
        kind: ChangeKind,
        before: FileState | None,
        after: FileState | None,
    ) -> WriteRecord:
        changed = not (before is not None and after is not None and before.same_as(after))
        backup = str(self.backup_dir / rel) if self.backup_dir and before is not None else None
        record = WriteRecord(
            rel, requested, kind, before, after, backup, self.step_id, time.time(), changed
        )
        self.writes.append(record)
        if self.on_write is not None and changed:
            self.on_write(record)
        return record

    def file_changes(self) -> list[FileChange]:
        return [c.to_file_change() for c in self.changeset()]

    def changeset(self) -> ChangeSet:
        """Net effect of every write so far, with diffs (first version → last version)."""
        first: dict[str, FileState | None] = {}
        last: dict[str, FileState | None] = {}
        for rec in self.writes:
            first.setdefault(rec.path, rec.before)
            last[rec.path] = rec.after
        changes: list[Change] = []
        for path in sorted(last):
            b, a = first[path], last[path]
            if (b is None and a is None) or (b is not None and b.same_as(a)):
                continue
            changes.append(make_change(path, b, a, self._contents))
        return ChangeSet(tuple(changes), self.step_id)
