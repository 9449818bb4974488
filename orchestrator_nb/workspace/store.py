"""File versions by content: git-compatible blob ids, a content-addressed store, a stat cache.

Ids are git blob ids (``sha1("blob <size>\\0" + content)``, or sha256 in sha256 repositories), so a
version read from the working tree, from HEAD or from the index compares by id alone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fsio import write_bytes
from ._git import cat_blobs

MODE_FILE = 0o100644
MODE_EXEC = 0o100755
MODE_LINK = 0o120000

# Files modified this close to the moment they were hashed may change again within the same
# timestamp tick (2 s on FAT, a few ms on ext4) without their stat changing: rehash those.
RACY_NS = 2_000_000_000
DEFAULT_MAX_BLOB = 64 * 1024 * 1024
SAVE_EVERY_S = 30.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileState:
    """One version of one file: content id, git-style mode, size in bytes."""

    oid: str
    mode: int = MODE_FILE
    size: int | None = None

    def same_as(self, other: FileState | None) -> bool:
        return other is not None and self.oid == other.oid and self.mode == other.mode

    def to_json(self) -> dict[str, Any]:
        return {"oid": self.oid, "mode": f"{self.mode:06o}", "size": self.size}

    @staticmethod
    def from_json(data: dict[str, Any] | None) -> FileState | None:
        if data is None:
            return None
        return FileState(str(data["oid"]), int(str(data["mode"]), 8), data.get("size"))


def same_state(a: FileState | None, b: FileState | None) -> bool:
    return a.same_as(b) if a is not None else b is None


def git_mode(st: os.stat_result) -> int | None:
    """git's mode for a stat result; None for what git does not track (folders, FIFOs, ...)."""
    if stat.S_ISLNK(st.st_mode):
        return MODE_LINK
    if stat.S_ISREG(st.st_mode):
        return MODE_EXEC if st.st_mode & stat.S_IXUSR else MODE_FILE
    return None


def blob_id(data: bytes, algo: str = "sha1") -> str:
    h = hashlib.new(algo)
    h.update(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


class ObjectStore:
    """``.orchestrator/objects/ab/cdef…``: raw file contents keyed by blob id."""

    def __init__(self, root: Path, algo: str = "sha1", max_blob: int = DEFAULT_MAX_BLOB) -> None:
        self.root = root
        self.algo = algo
        self.max_blob = max_blob
        self._prefix = str(root) + os.sep
        # Ids seen on disk by this process: a 10,000-file tree walk then costs no extra stat each.
        self._known: set[str] = set()

    def path_for(self, oid: str) -> Path:
        return self.root / oid[:2] / oid[2:]

    def has(self, oid: str) -> bool:
        if oid in self._known:
            return True
        if os.path.isfile(f"{self._prefix}{oid[:2]}{os.sep}{oid[2:]}"):
            self._known.add(oid)
            return True
        return False

    def put(self, data: bytes, oid: str | None = None) -> str:
        oid = oid or blob_id(data, self.algo)
        if self.has(oid):
            return oid
        # No fsync: an object lost in a crash is detected on read (its id no longer matches) and
        # then counts as missing; syncing every snapshot would double the cost of a step.
        # Anchored at the store (checked when the workspace opened it): one folder below it.
        write_bytes(self.path_for(oid), data, anchor=self.root, fsync=False)
        self._known.add(oid)
        return oid

    def get(self, oid: str) -> bytes | None:
        try:
            data = self.path_for(oid).read_bytes()
        except OSError:
            self._known.discard(oid)
            return None
        if blob_id(data, self.algo) != oid:
            self._known.discard(oid)
            return None
        return data

    def read_state(
        self, path: str | os.PathLike[str], st: os.stat_result, *, keep: bool = True
    ) -> FileState | None:
        """Hash the file (or symlink) at ``path`` and keep its content; None if it vanished."""
        mode = git_mode(st)
        if mode is None:
            return None
        try:
            if mode == MODE_LINK:
                data = os.fsencode(os.readlink(path))
            elif st.st_size > self.max_blob:
                return FileState(self._hash_large(path), mode, st.st_size)
            else:
                # No link followed: ``st`` said a regular file; if it was swapped for a link
                # since, reading through it could copy a file from outside the workspace.
                with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as fh:
                    data = fh.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            return None  # became a link while we looked: the next snapshot sees the link
        oid = blob_id(data, self.algo)
        if keep:
            self.put(data, oid)
        return FileState(oid, mode, len(data))

    def _hash_large(self, path: str | os.PathLike[str]) -> str:
        # Too large to keep a copy of: its id is still needed to tell whether it changed.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            h = hashlib.new(self.algo)
            h.update(b"blob %d\0" % size)
            read = 0
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
                read += len(chunk)
        if read != size:
            return self._hash_large(path)
        return h.hexdigest()


def _key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_mode]


class StatCache:
    """path → (stat key, state), persisted as JSON so a later process skips unchanged files."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self._entries: dict[str, list[Any]] | None = None
        self._unsaved = 0
        self._saved_at = time.monotonic()

    def _load(self) -> dict[str, list[Any]]:
        if self._entries is None:
            self._entries = {}
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(self.file.read_text("utf-8", "surrogateescape"))
                if isinstance(data, dict) and data.get("v") == 1:
                    self._entries = dict(data["entries"])
        return self._entries

    def lookup(self, rel: str, st: os.stat_result) -> FileState | None:
        entry = self._load().get(rel)
        if (
            entry is None
            or entry[0] != st.st_size
            or entry[1] != st.st_mtime_ns
            or entry[2] != st.st_ino
            or entry[3] != st.st_ctime_ns
            or entry[4] != st.st_mode
            or len(entry) != 8
        ):
            return None
        seen_ns = int(entry[7])
        if st.st_mtime_ns >= seen_ns - RACY_NS or st.st_ctime_ns >= seen_ns - RACY_NS:
            return None
        return FileState(str(entry[6]), int(entry[5]), int(entry[0]))

    def record(self, rel: str, st: os.stat_result, state: FileState) -> None:
        self._load()[rel] = [*_key(st), state.mode, state.oid, time.time_ns()]
        self._unsaved += 1

    def retain(self, keep: set[str]) -> None:
        entries = self._load()
        gone = [k for k in entries if k not in keep]
        for k in gone:
            del entries[k]
        self._unsaved += len(gone)

    def save(self, *, force: bool = False) -> None:
        """Persist, unless the unsaved part is small and recent.

        Writing 10,000 entries costs about as much as walking them, so small updates wait: a
        later process only rehashes the few files touched since the last save.
        """
        if not self._unsaved or self._entries is None:
            return
        small = self._unsaved * 100 < len(self._entries)
        if not force and small and time.monotonic() - self._saved_at < SAVE_EVERY_S:
            return
        data = json.dumps({"v": 1, "entries": self._entries}, separators=(",", ":"))
        # A cache: no fsync (a torn or lost one is rebuilt by hashing), and no redaction (it
        # holds paths and hashes, and must read back as written).
        write_bytes(self.file, data.encode("utf-8", "surrogateescape"), fsync=False)
        self._unsaved = 0
        self._saved_at = time.monotonic()


def load_contents(
    oids: Iterable[str],
    store: ObjectStore,
    git_cwd: Path | None,
    hints: Mapping[str, Path] | None = None,
) -> dict[str, bytes]:
    """Contents by id, from the object store, then backup files, then git's object database."""
    found: dict[str, bytes] = {}
    missing: list[str] = []
    for oid in set(oids):
        data = store.get(oid)
        if data is None and hints and oid in hints:
            with contextlib.suppress(OSError):
                path = hints[oid]
                raw = os.fsencode(os.readlink(path)) if path.is_symlink() else path.read_bytes()
                data = raw if blob_id(raw, store.algo) == oid else None
        if data is None:
            missing.append(oid)
        else:
            found[oid] = data
    if missing and git_cwd is not None:
        found.update(cat_blobs(git_cwd, missing))
    return found
