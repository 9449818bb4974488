"""Undo a step, or a whole run: the journal of what changed, and restoring the old versions.

Every step's changes (from snapshots and from the safe writer) are appended to
``.orchestrator/runs/<run>/journal.jsonl`` as (path, version before, version after). Reverting
composes the entries that apply (per path: the first "before" and the last "after"), refuses when a
file's current version is neither of those (it changed again since) unless forced, and restores
each old version through the safe writer: from ``.orchestrator/objects``, the backups, or git.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..display import plural
from ..errors import RevertConflict, UnsafePathError, WorkspaceError
from .diff import ChangeSet
from .paths import check_relpath
from .safe_write import SafeWriter, WriteRecord
from .store import MODE_EXEC, MODE_LINK, FileState, ObjectStore, same_state

Source = Literal["snapshot", "write", "revert"]


@dataclass(frozen=True)
class RecordedChange:
    path: str
    before: FileState | None
    after: FileState | None
    backup: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "path": self.path,
            "before": self.before.to_json() if self.before else None,
            "after": self.after.to_json() if self.after else None,
        }
        if self.backup:
            data["backup"] = self.backup
        return data

    @staticmethod
    def from_json(data: dict[str, Any]) -> RecordedChange:
        return RecordedChange(
            str(data["path"]),
            FileState.from_json(data.get("before")),
            FileState.from_json(data.get("after")),
            data.get("backup"),
        )


@dataclass(frozen=True)
class JournalEntry:
    step_id: str
    source: Source
    changes: tuple[RecordedChange, ...]
    time: float


class Journal:
    """Append-only record of one run's changes, one JSON object per line."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def append(self, step_id: str, source: Source, changes: Iterable[RecordedChange]) -> None:
        items = [c.to_json() for c in changes]
        if not items:
            return
        line = json.dumps(
            {"v": 1, "step": step_id, "source": source, "time": time.time(), "changes": items},
            separators=(",", ":"),
        )
        self.file.parent.mkdir(parents=True, exist_ok=True)
        # One write() on an O_APPEND descriptor keeps lines whole when writers run in parallel.
        fd = os.open(self.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
        finally:
            os.close(fd)

    def record_changeset(self, changeset: ChangeSet, step_id: str) -> None:
        recorded: list[RecordedChange] = []
        for c in changeset:
            if c.old_path is not None:
                recorded.append(RecordedChange(c.old_path, c.before, None))
                recorded.append(RecordedChange(c.path, None, c.after))
            else:
                recorded.append(RecordedChange(c.path, c.before, c.after))
        self.append(step_id, "snapshot", recorded)

    def record_write(self, record: WriteRecord) -> None:
        self.append(
            record.step_id,
            "write",
            [RecordedChange(record.path, record.before, record.after, record.backup)],
        )

    def entries(self) -> list[JournalEntry]:
        try:
            text = self.file.read_text("utf-8")
        except FileNotFoundError:
            return []
        out: list[JournalEntry] = []
        for line in text.splitlines():
            try:
                data = json.loads(line)
                out.append(
                    JournalEntry(
                        str(data["step"]),
                        data["source"],
                        tuple(RecordedChange.from_json(c) for c in data["changes"]),
                        float(data["time"]),
                    )
                )
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line after a crash; the rest still counts
        return out

    def steps(self) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.entries():
            if e.source != "revert":
                seen.setdefault(e.step_id, None)
        return list(seen)


@dataclass(frozen=True)
class NetChange:
    path: str
    before: FileState | None
    after: FileState | None
    backups: tuple[str, ...] = ()


def compose(entries: Iterable[JournalEntry]) -> dict[str, NetChange]:
    """Per path: the version before the first entry and after the last one."""
    net: dict[str, NetChange] = {}
    for entry in entries:
        for c in entry.changes:
            prev = net.get(c.path)
            backups: tuple[str, ...]
            if prev is None:
                backups = (c.backup,) if c.backup else ()
                net[c.path] = NetChange(c.path, c.before, c.after, backups)
            else:
                backups = prev.backups + ((c.backup,) if c.backup else ())
                net[c.path] = NetChange(c.path, prev.before, c.after, backups)
    return {p: n for p, n in net.items() if not same_state(n.before, n.after)}


@dataclass
class RevertResult:
    """What a revert did, path by path."""

    target: str
    restored: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    forced: list[str] = field(default_factory=list)
    records: list[WriteRecord] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"reverted {self.target}: {len(self.restored)} restored, {len(self.deleted)} deleted"
        ]
        lines += [f"  restored {p}" for p in self.restored]
        lines += [f"  deleted  {p}" for p in self.deleted]
        lines += [f"  forced   {p} (its later changes were overwritten)" for p in self.forced]
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        import html

        items = "".join(
            f"<li>{html.escape(line.strip())}</li>" for line in str(self).split("\n")[1:]
        )
        head = html.escape(str(self).split("\n")[0])
        return {
            "text/plain": str(self),
            "text/html": f'<div><b>{head}</b><ul style="margin:4px 0">{items}</ul></div>',
        }


def current_states(
    root: Path, paths: Iterable[str], store: ObjectStore
) -> dict[str, FileState | None]:
    """The version of each path in the working tree right now (None: absent)."""
    out: dict[str, FileState | None] = {}
    for p in paths:
        full = root / check_relpath(p)
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            out[p] = None
            continue
        out[p] = store.read_state(full, st, keep=False)
    return out


def revert_changes(
    target: str,
    net: Mapping[str, NetChange],
    *,
    root: Path,
    store: ObjectStore,
    load: Callable[[Iterable[str], Mapping[str, Path]], Mapping[str, bytes]],
    writer: SafeWriter,
    force: bool = False,
) -> RevertResult:
    """Put every path of ``net`` back to its ``before`` version.

    Raises :class:`RevertConflict` (nothing changed) when files changed again since, unless
    ``force``; raises :class:`WorkspaceError` (nothing changed) when an old version is lost.
    """
    result = RevertResult(target)
    now = current_states(root, net, store)
    todo: list[NetChange] = []
    conflicts: list[str] = []
    for path, change in sorted(net.items()):
        cur = now[path]
        if same_state(cur, change.before):
            result.already.append(path)
        elif same_state(cur, change.after):
            todo.append(change)
        else:
            conflicts.append(path)
            todo.append(change)
    if conflicts and not force:
        raise RevertConflict(
            conflicts,
            hint="inspect those files, or pass force=True to overwrite them "
            "(their current content is backed up first)",
        )
    result.forced = conflicts if force else []
    hints: dict[str, Path] = {}
    for change in todo:
        if change.before is not None:
            for b in change.backups:
                hints.setdefault(change.before.oid, Path(b))
    wanted = [c.before.oid for c in todo if c.before is not None]
    contents = load(wanted, hints)
    lost = [c.path for c in todo if c.before is not None and c.before.oid not in contents]
    if lost:
        raise WorkspaceError(
            f"cannot revert: the old version of {plural(len(lost), 'file')} "
            "is no longer available: " + ", ".join(lost[:5]),
            hint="files larger than the store limit are not kept; restore them from your backups",
        )
    try:
        # Deletions first: a file may have to make room for a folder of the same name, or back.
        for change in todo:
            if change.before is None:
                rec = writer.delete(change.path)
                if rec is not None:
                    result.records.append(rec)
                result.deleted.append(change.path)
        for change in todo:
            before = change.before
            if before is None:
                continue
            data = contents[before.oid]
            if before.mode == MODE_LINK:
                rec = writer.symlink(change.path, os.fsdecode(data))
            else:
                rec = writer.write(change.path, data, executable=before.mode == MODE_EXEC)
            result.records.append(rec)
            result.restored.append(change.path)
    except UnsafePathError as exc:
        raise WorkspaceError(
            f"revert stopped at {exc.path!r}: {exc.rule}; files before it were restored",
            hint="the journal may have been edited; check .orchestrator/runs/",
        ) from exc
    return result
