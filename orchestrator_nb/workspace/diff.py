"""What a step changed: one :class:`Change` per file, a :class:`ChangeSet` per step.

Each change knows its kind (added, modified, deleted, renamed), whether it is binary, how many
lines it adds and removes, and its git-style unified diff. Both render in a notebook through
``_repr_mimebundle_``: the diff as text, and HTML with inline styles only (untrusted notebooks
drop ``<style>``), long diffs folded in ``<details>``.
"""

from __future__ import annotations

import difflib
import html
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..display import FileDiff, counts_html, file_diff_html, plural
from ..events import ChangeKind, FileChange
from .snapshot import PathChange
from .store import MODE_LINK, FileState

MAX_DIFF_BYTES = 1024 * 1024
FOLD_LINES = 120
_BINARY_SNIFF = 8000

ContentLoader = Callable[[Iterable[str]], Mapping[str, bytes]]


@dataclass(frozen=True)
class Change:
    """One file a step added, modified, deleted or renamed."""

    path: str
    kind: ChangeKind
    before: FileState | None = None
    after: FileState | None = None
    old_path: str | None = None
    binary: bool = False
    added: int = 0
    removed: int = 0
    diff: str = ""

    def to_file_change(self) -> FileChange:
        return FileChange(self.path, self.kind)

    def label(self) -> str:
        name = f"{self.old_path} → {self.path}" if self.old_path else self.path
        counts = "binary" if self.binary else f"+{self.added} −{self.removed}"
        return f"{self.kind:<8} {name} ({counts})"

    def __str__(self) -> str:
        return self.diff or self.label()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": str(self), "text/html": _change_html(self)}


@dataclass(frozen=True)
class ChangeSet:
    """Every change of one step (or of a whole run), in path order."""

    changes: tuple[Change, ...] = ()
    step_id: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Change]:
        return iter(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    def __bool__(self) -> bool:
        return bool(self.changes)

    def __getitem__(self, path: str) -> Change:
        for change in self.changes:
            if change.path == path:
                return change
        raise KeyError(path)

    @property
    def paths(self) -> list[str]:
        return [c.path for c in self.changes]

    @property
    def added(self) -> int:
        return sum(c.added for c in self.changes)

    @property
    def removed(self) -> int:
        return sum(c.removed for c in self.changes)

    @property
    def diff(self) -> str:
        """The whole step as one unified diff."""
        return "".join(c.diff for c in self.changes)

    def file_changes(self) -> list[FileChange]:
        """The changes as :class:`~orchestrator_nb.events.FileChange` for a ``StepResult``."""
        return [c.to_file_change() for c in self.changes]

    def summary(self) -> str:
        head = f"step {self.step_id}: " if self.step_id else ""
        if not self.changes:
            return f"{head}no changes"
        files = plural(len(self.changes), "file")
        return f"{head}{files} changed, +{self.added} −{self.removed}"

    def __str__(self) -> str:
        lines = [self.summary(), *(f"  {c.label()}" for c in self.changes)]
        return "\n".join(lines) + ("\n\n" + self.diff if self.diff else "")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        body = "".join(_change_html(c) for c in self.changes)
        html_text = (
            '<div style="font-family:sans-serif">'
            f"<div><b>{html.escape(self.summary())}</b></div>{body}</div>"
        )
        return {"text/plain": str(self), "text/html": html_text}


# -- building ---------------------------------------------------------------------------------


def build_changes(
    raw: Sequence[PathChange],
    load: ContentLoader,
    renames: Mapping[str, str] | None = None,
) -> list[Change]:
    """Turn per-path differences into :class:`Change` objects, pairing renames.

    A deleted and an added path form a rename when git reported that rename (``renames``: new →
    old) or when the content is identical.
    """
    by_path = {c.path: c for c in raw}
    deleted = {c.path: c for c in raw if c.after is None and c.before is not None}
    added = {c.path: c for c in raw if c.before is None and c.after is not None}
    pairs: dict[str, str] = {}
    for new, old in (renames or {}).items():
        if new in added and old in deleted and old not in pairs.values():
            pairs[new] = old
    by_oid: dict[tuple[str, int], list[str]] = {}
    for path, c in sorted(deleted.items()):
        if path not in pairs.values() and c.before is not None:
            by_oid.setdefault((c.before.oid, c.before.mode), []).append(path)
    for path, c in sorted(added.items()):
        if path in pairs or c.after is None:
            continue
        candidates = by_oid.get((c.after.oid, c.after.mode))
        if candidates:
            pairs[path] = candidates.pop(0)
    paired_old = set(pairs.values())
    oids: set[str] = set()
    for c in raw:
        for state in (c.before, c.after):
            if state is not None:
                oids.add(state.oid)
    contents = load(oids)
    changes: list[Change] = []
    for path in sorted(by_path):
        if path in paired_old:
            continue
        c = by_path[path]
        old_path = pairs.get(path)
        before = by_path[old_path].before if old_path else c.before
        changes.append(make_change(path, before, c.after, contents, old_path=old_path))
    return changes


def make_change(
    path: str,
    before: FileState | None,
    after: FileState | None,
    contents: Mapping[str, bytes],
    *,
    old_path: str | None = None,
) -> Change:
    kind: ChangeKind
    if old_path is not None:
        kind = "renamed"
    elif before is None:
        kind = "added"
    elif after is None:
        kind = "deleted"
    else:
        kind = "modified"
    a_path = old_path or path
    old = contents.get(before.oid) if before else b""
    new = contents.get(after.oid) if after else b""
    header = _git_header(a_path, path, before, after, kind)
    if old is None or new is None:
        return Change(
            path,
            kind,
            before,
            after,
            old_path,
            False,
            0,
            0,
            header + _note("content not available (too large to keep, or removed from the store)"),
        )
    if _is_binary(old) or _is_binary(new):
        if old == new:
            return Change(path, kind, before, after, old_path, True, 0, 0, header)
        body = f"Binary files {_side('a', a_path, before)} and {_side('b', path, after)} differ\n"
        return Change(path, kind, before, after, old_path, True, 0, 0, header + body)
    if len(old) > MAX_DIFF_BYTES or len(new) > MAX_DIFF_BYTES:
        note = _note(f"diff not shown: {max(len(old), len(new))} bytes is over the display limit")
        return Change(path, kind, before, after, old_path, False, 0, 0, header + note)
    body, n_add, n_del = _unified(old, new, _side("a", a_path, before), _side("b", path, after))
    return Change(path, kind, before, after, old_path, False, n_add, n_del, header + body)


def _note(text: str) -> str:
    return f"# {text}\n"


def _side(prefix: str, path: str, state: FileState | None) -> str:
    return f"{prefix}/{path}" if state is not None else "/dev/null"


def _short(state: FileState | None) -> str:
    return state.oid[:7] if state else "0000000"


def _git_header(
    a: str, b: str, before: FileState | None, after: FileState | None, kind: ChangeKind
) -> str:
    lines = [f"diff --git a/{a} b/{b}"]
    if kind == "added" and after:
        lines.append(f"new file mode {after.mode:06o}")
    elif kind == "deleted" and before:
        lines.append(f"deleted file mode {before.mode:06o}")
    elif before and after and before.mode != after.mode:
        lines += [f"old mode {before.mode:06o}", f"new mode {after.mode:06o}"]
    if kind == "renamed":
        lines += [f"rename from {a}", f"rename to {b}"]
    if not (before and after and before.oid == after.oid):
        same_mode = before and after and before.mode == after.mode
        lines.append(
            f"index {_short(before)}..{_short(after)}"
            + (f" {after.mode:06o}" if same_mode and after else "")
        )
    return "\n".join(lines) + "\n"


def _is_binary(data: bytes) -> bool:
    if b"\0" in data[:_BINARY_SNIFF]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _split(text: str) -> list[str]:
    if not text:
        return []
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def _unified(old: bytes, new: bytes, a_name: str, b_name: str) -> tuple[str, int, int]:
    if old == new:
        return "", 0, 0
    a, b = _split(old.decode("utf-8")), _split(new.decode("utf-8"))
    out = [f"--- {a_name}\n", f"+++ {b_name}\n"]
    n_add = n_del = 0
    for i, line in enumerate(difflib.unified_diff(a, b, n=3)):
        if i < 2:
            continue  # difflib's own ---/+++ lines; ours carry the a/ b/ names
        if line.startswith("@@"):
            out.append(line if line.endswith("\n") else line + "\n")
            continue
        if line[:1] == "+":
            n_add += 1
        elif line[:1] == "-":
            n_del += 1
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out), n_add, n_del


# -- HTML -------------------------------------------------------------------------------------


def _change_html(change: Change) -> str:
    name = html.escape(f"{change.old_path} → {change.path}" if change.old_path else change.path)
    if change.binary:
        counts = '<span style="color:#57606a">binary</span>'
    else:
        counts = counts_html(change.added, change.removed)
    state = change.after or change.before
    link = " (symlink)" if state is not None and state.mode == MODE_LINK else ""
    title = f"<code>{html.escape(change.kind)}</code> {name}{link} {counts}"
    return diff_block_html(change.diff, title)


def diff_block_html(diff: str, title: str) -> str:
    """A diff under ``title`` (HTML) in the one diff renderer, folded past FOLD_LINES lines."""
    return file_diff_html(FileDiff("", diff.splitlines()), title=title, fold_lines=FOLD_LINES)
