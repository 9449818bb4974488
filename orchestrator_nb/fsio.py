"""The one filesystem layer for the project's own files: state under ``.orchestrator/``, the
user-level config folder, exports.

Why one layer:

* **No symlink is followed on a state path.** A cloned repository can ship ``.orchestrator`` (or
  anything below it) as a symlink to make us write or delete elsewhere. Every folder from the
  *anchor* down is opened with ``O_NOFOLLOW`` relative to its parent, and the file itself too, so
  a link is refused with :class:`StatePathError` naming it, also when it is swapped in after a
  check. The anchor is the folder that holds ``.orchestrator`` (found in the path), or the one the
  caller names (the user's config folder, an export's folder).
* **Atomic and durable writes.** Content goes to a temporary file in the same folder, is fsynced
  and renamed over the old file, and the folder is fsynced: a crash leaves the old file or the new
  one, never half of either.
* **Artifacts are redacted here**, so no writer can forget: text and JSON pass through
  :mod:`orchestrator_nb.observe.redact` unless the caller says the bytes are a copy of the user's
  own file (backups and the object store must restore exactly what was there).
* **One lock primitive**: :class:`FileLock`, an OS ``flock`` that a crash releases.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import WorkspaceError

STATE_DIR_NAME = ".orchestrator"
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC


class StatePathError(WorkspaceError):
    """A state path is a symlink or not what the project created; nothing was read or written."""

    def __init__(self, path: str | os.PathLike[str], why: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"refused {os.fspath(path)!r}: {why}",
            hint=hint or "remove the link (it does not belong in the project's state folder)",
        )
        self.path = os.fspath(path)


def split_anchor(
    path: str | os.PathLike[str], anchor: str | os.PathLike[str] | None
) -> tuple[Path, list[str]]:
    """``(anchor, parts below it)`` for ``path``; the anchor itself may be reached through links."""
    p = Path(os.path.abspath(path))
    if anchor is not None:
        a = Path(os.path.abspath(anchor))
        try:
            rel = p.relative_to(a)
        except ValueError:
            raise StatePathError(p, f"not inside {a}") from None
        parts = list(rel.parts)
    else:
        names = p.parts
        if STATE_DIR_NAME in names:
            i = len(names) - 1 - names[::-1].index(STATE_DIR_NAME)
            a, parts = Path(*names[:i]), list(names[i:])
        else:
            a, parts = p.parent, [p.name]
    if not parts or any(part in ("", ".", "..") for part in parts):
        raise StatePathError(p, "not a file below its folder")
    return a, parts


@contextlib.contextmanager
def open_dirs(
    anchor: Path, parts: Sequence[str], *, create: bool, mode: int = 0o755
) -> Iterator[int | None]:
    """A descriptor of ``anchor/parts...``, each folder opened with ``O_NOFOLLOW`` from its parent.

    Yields None when a folder is missing and ``create`` is false.
    """
    try:
        fd = os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    except FileNotFoundError:
        if not create:
            yield None
            return
        os.makedirs(anchor, exist_ok=True)
        fd = os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    try:
        where = anchor
        for name in parts:
            where = where / name
            try:
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    yield None
                    return
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, mode, dir_fd=fd)
                nxt = _open_subdir(fd, name, where)
            except OSError as exc:
                raise _refusal(where, exc) from exc
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def _open_subdir(fd: int, name: str, where: Path) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        raise _refusal(where, exc) from exc


def _refusal(where: Path, exc: OSError) -> OSError | StatePathError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        kind = "a symlink" if os.path.islink(where) else "not a folder"
        return StatePathError(where, f"{kind} where the project keeps its state")
    return exc


def ensure_dir(
    path: str | os.PathLike[str], *, anchor: str | os.PathLike[str] | None = None
) -> Path:
    """Create ``path`` (and its parents below the anchor) refusing any symlink on the way."""
    a, parts = split_anchor(Path(path) / "_", anchor)
    with open_dirs(a, parts[:-1], create=True):
        pass
    return Path(path)


def _redacted_text(text: str) -> str:
    from .observe.redact import redact

    return redact(text)


def _redacted_obj(obj: Any) -> Any:
    from .observe.redact import redact_obj

    return redact_obj(obj)


def write_bytes(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    anchor: str | os.PathLike[str] | None = None,
    mode: int = 0o644,
    fsync: bool = True,
) -> Path:
    """Replace ``path`` with ``data`` atomically, exactly as given (no redaction).

    Only for copies of the user's own bytes (backups, object store); artifacts use
    :func:`write_text` or :func:`write_json`.
    """
    a, parts = split_anchor(path, anchor)
    with open_dirs(a, parts[:-1], create=True) as dfd:
        assert dfd is not None
        name = parts[-1]
        replace_in(
            dfd,
            name,
            data,
            mode=mode,
            fsync=fsync,
            check=lambda: _refuse_link(dfd, name, Path(path)),
        )
    return Path(path)


def replace_in(
    dfd: int,
    name: str,
    data: bytes,
    *,
    mode: int = 0o644,
    fsync: bool = True,
    chmod: Callable[[int], int] | None = None,
    check: Callable[[], None] | None = None,
) -> os.stat_result:
    """The one atomic replace: ``name`` in the open folder ``dfd`` becomes ``data``.

    A temporary file of our own (``O_EXCL | O_NOFOLLOW``, never a planted link) is written,
    fsynced, renamed over ``name``, and the folder fsynced, so a crash leaves the old file or
    the new one. ``chmod`` maps the new file's mode before the rename (keeping a user file's
    mode); ``check`` runs just before it (refusing a link that appeared). Returns the new
    file's stat. :func:`write_bytes` uses it for state files, the workspace's safe writer for
    the agents' writes into the user's files.
    """
    tmp = f".{name[:40]}.{secrets.token_hex(6)}.tmp"
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC, mode, dir_fd=dfd
    )
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if chmod is not None:
                os.fchmod(fd, chmod(stat.S_IMODE(os.fstat(fd).st_mode)))
            if fsync:
                os.fsync(fd)
            final = os.fstat(fd)
        finally:
            os.close(fd)
        if check is not None:
            check()
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise
    if fsync:
        os.fsync(dfd)
    return final


def _refuse_link(dfd: int, name: str, path: Path) -> None:
    # Renaming over a symlink replaces the link (it is not followed), but a link there means
    # someone else put it in our folder: say so rather than silently dropping it.
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return

    if stat.S_ISLNK(st.st_mode):
        raise StatePathError(path, "a symlink where the project keeps its state")
    if not stat.S_ISREG(st.st_mode):
        raise StatePathError(path, "not a regular file where the project keeps its state")


def write_text(
    path: str | os.PathLike[str],
    text: str,
    *,
    anchor: str | os.PathLike[str] | None = None,
    mode: int = 0o644,
    fsync: bool = True,
    redact: bool = True,
) -> Path:
    """Replace ``path`` with ``text`` (UTF-8) atomically, redacted unless ``redact=False``."""
    if redact:
        text = _redacted_text(text)
    return write_bytes(
        path, text.encode("utf-8", "surrogateescape"), anchor=anchor, mode=mode, fsync=fsync
    )


def write_json(
    path: str | os.PathLike[str],
    obj: Any,
    *,
    anchor: str | os.PathLike[str] | None = None,
    mode: int = 0o644,
    fsync: bool = True,
    indent: int | None = 2,
) -> Path:
    """``obj`` as JSON, redacted value by value before serializing (escapes cannot hide a key)."""
    text = json.dumps(_redacted_obj(obj), indent=indent, ensure_ascii=False, default=str)
    return write_text(path, text + "\n", anchor=anchor, mode=mode, fsync=fsync, redact=False)


@contextlib.contextmanager
def open_fd(
    path: str | os.PathLike[str],
    flags: int,
    *,
    anchor: str | os.PathLike[str] | None = None,
    mode: int = 0o644,
) -> Iterator[int]:
    """A raw descriptor of a state file opened with ``O_NOFOLLOW`` (folders created for writes)."""
    fd = open_nofollow(path, flags, anchor=anchor, mode=mode)
    try:
        yield fd
    finally:
        os.close(fd)


def open_nofollow(
    path: str | os.PathLike[str],
    flags: int,
    *,
    anchor: str | os.PathLike[str] | None = None,
    mode: int = 0o644,
) -> int:
    """:func:`open_fd` for a descriptor the caller keeps (a stream written while a process
    runs); the caller closes it."""
    a, parts = split_anchor(path, anchor)
    create = bool(flags & os.O_CREAT)
    with open_dirs(a, parts[:-1], create=create) as dfd:
        if dfd is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", os.fspath(path))
        try:
            fd = os.open(parts[-1], flags | os.O_NOFOLLOW | _CLOEXEC, mode, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StatePathError(path, "a symlink where the project keeps its state") from exc
            raise
    return fd


def append_text(
    path: str | os.PathLike[str],
    text: str,
    *,
    anchor: str | os.PathLike[str] | None = None,
    fsync: bool = False,
    redact: bool = True,
) -> None:
    """Append ``text`` in one ``write`` (``O_APPEND``: concurrent writers never interleave)."""
    if redact:
        text = _redacted_text(text)
    data = text.encode("utf-8", "surrogateescape")
    with open_fd(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, anchor=anchor) as fd:
        append_fd(fd, [data], fsync=fsync)


def sync_folder(
    path: str | os.PathLike[str], *, anchor: str | os.PathLike[str] | None = None
) -> None:
    """Make the entry of a file just created in its folder durable (fsync of the folder)."""
    a, parts = split_anchor(path, anchor)
    with open_dirs(a, parts[:-1], create=False) as dfd:
        if dfd is not None:
            os.fsync(dfd)


def append_fd(fd: int, chunks: list[bytes], *, fsync: bool) -> None:
    """Append several records to an ``O_APPEND`` descriptor in one ``write`` and one fsync.

    Grouping is how an append-only trail stays durable without an fsync per record: the caller
    collects what one step produced and hands it over at once; the records land whole and in
    order, and a crash loses at most the group not yet handed over.
    """
    view = memoryview(b"".join(chunks))
    while view:
        view = view[os.write(fd, view) :]
    if fsync:
        os.fsync(fd)


def append_json_line(
    path: str | os.PathLike[str],
    obj: Any,
    *,
    anchor: str | os.PathLike[str] | None = None,
    fsync: bool = False,
) -> None:
    """One JSON object as one line, redacted value by value."""
    line = json.dumps(_redacted_obj(obj), ensure_ascii=False, separators=(",", ":"), default=str)
    append_text(path, line + "\n", anchor=anchor, fsync=fsync, redact=False)


def read_bytes(
    path: str | os.PathLike[str], *, anchor: str | os.PathLike[str] | None = None
) -> bytes:
    """A state file's bytes, refusing a symlink anywhere below the anchor."""
    with open_fd(path, os.O_RDONLY, anchor=anchor) as fd:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    return b"".join(chunks)


def read_text(path: str | os.PathLike[str], *, anchor: str | os.PathLike[str] | None = None) -> str:
    return read_bytes(path, anchor=anchor).decode("utf-8", "surrogateescape")


class FileLock:
    """An exclusive ``flock`` on a lock file: one holder across threads and processes.

    The OS releases it when the holder dies (also by SIGKILL), so a crash never leaves a stale
    lock. ``info`` (e.g. the run id) is written into the file for whoever waits to show.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, anchor: str | os.PathLike[str] | None = None
    ) -> None:
        self.path = Path(path)
        self.anchor = anchor
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, blocking: bool = True, info: str = "") -> bool:
        """Take the lock; with ``blocking=False`` return False at once when someone holds it."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this object")
        with open_fd(self.path, os.O_RDWR | os.O_CREAT, anchor=self.anchor) as fd:
            owned = os.dup(fd)
        try:
            fcntl.flock(owned, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(owned)
            return False
        except BaseException:
            os.close(owned)
            raise
        self._fd = owned
        if info:
            os.ftruncate(owned, 0)
            os.pwrite(owned, info.encode("utf-8", "replace"), 0)
        return True

    def holder_info(self) -> str:
        """What the current holder wrote (empty when nobody said)."""
        try:
            return read_text(self.path, anchor=self.anchor).strip()
        except (OSError, StatePathError):
            return ""

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = [
    "STATE_DIR_NAME",
    "FileLock",
    "StatePathError",
    "append_json_line",
    "append_text",
    "ensure_dir",
    "open_dirs",
    "open_fd",
    "read_bytes",
    "read_text",
    "replace_in",
    "split_anchor",
    "sync_folder",
    "write_bytes",
    "write_json",
    "write_text",
]
