"""A step's unified diff as ACP ``diff`` content: one (path, old text, new text) per file.

ACP carries a file edit as its old and new text. The step result carries a git-style unified
diff, so each file's texts are rebuilt from its hunks: the whole new file when the step added
it, otherwise the changed regions with their context (``⋮`` between hunks). A file whose diff
was not shown (binary, too large) becomes a one-line note instead of a diff.
"""

from __future__ import annotations

from dataclasses import dataclass

_GAP = "⋮\n"


@dataclass(frozen=True)
class FileDiff:
    path: str
    old_text: str | None  # None: the file is new
    new_text: str
    note: str = ""  # set when no text diff is available


def _strip(side: str) -> str:
    if side == "/dev/null":
        return side
    return side[2:] if side[:2] in ("a/", "b/") else side


def split(diff: str) -> list[FileDiff]:
    """Every file of ``diff`` (as written by :mod:`orchestrator_nb.workspace.diff`)."""
    out: list[FileDiff] = []
    for chunk in _files(diff):
        out.append(_file(chunk))
    return out


def _files(diff: str) -> list[list[str]]:
    files: list[list[str]] = []
    for line in diff.splitlines(keepends=True):
        if line.startswith("diff --git ") or not files:
            files.append([])
        files[-1].append(line)
    return [f for f in files if f]


def _file(lines: list[str]) -> FileDiff:
    head = lines[0].rstrip("\n")
    path = head.split(" b/", 1)[1] if head.startswith("diff --git ") and " b/" in head else head
    old_side = new_side = ""
    old: list[str] = []
    new: list[str] = []
    hunks = 0
    note = ""
    in_hunk = False
    prev = " "
    for line in lines[1:]:
        if not in_hunk and line.startswith("--- "):
            old_side = _strip(line[4:].rstrip("\n"))
        elif not in_hunk and line.startswith("+++ "):
            new_side = _strip(line[4:].rstrip("\n"))
        elif line.startswith("@@"):
            in_hunk = True
            if hunks:
                old.append(_GAP)
                new.append(_GAP)
            hunks += 1
        elif in_hunk and line.startswith("\\"):
            # "\ No newline at end of file" is about the line just before it.
            if prev != "+":
                _drop_newline(old)
            if prev != "-":
                _drop_newline(new)
        elif in_hunk and line[:1] in (" ", "-", "+", "\n"):
            prev = line[:1]
            text = line[1:] if prev != "\n" else "\n"
            if prev != "+":
                old.append(text)
            if prev != "-":
                new.append(text)
        elif line.startswith(("Binary files", "# ")):
            note = line.strip().lstrip("# ")
    if new_side and new_side != "/dev/null":
        path = new_side
    if not hunks:
        kind = "deleted" if new_side == "/dev/null" else "changed"
        return FileDiff(path, None, "", note or f"{kind} (no text diff)")
    new_file = old_side == "/dev/null"
    return FileDiff(path, None if new_file else "".join(old), "".join(new))


def _drop_newline(side: list[str]) -> None:
    if side and side[-1].endswith("\n"):
        side[-1] = side[-1][:-1]
