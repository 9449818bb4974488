"""The rules a workspace-relative path must pass before anything is written to it.

These are purely textual; :class:`~orchestrator_nb.workspace.safe_write.SafeWriter` adds the
checks that need the file system (symlinks, special files) and does the writing.
"""

from __future__ import annotations

import re
import unicodedata

from ..errors import UnsafePathError
from .state import STATE_DIR_NAME

NAME_MAX = 255
PATH_MAX = 4096

ALLOWED = "a relative path inside the workspace, such as 'src/app.py'"

# Characters that render like a path separator but are not one: a name holding them can pass
# for a path into another folder ('..∕..∕etc') while being one innocent-looking file.
LOOKALIKES: dict[str, str] = {
    "\u2215": "DIVISION SLASH",
    "\u2044": "FRACTION SLASH",
    "\uff0f": "FULLWIDTH SOLIDUS",
    "\u29f8": "BIG SOLIDUS",
    "\u2571": "BOX DRAWINGS LIGHT DIAGONAL UPPER RIGHT TO LOWER LEFT",
    "\u1735": "PHILIPPINE SINGLE PUNCTUATION",
    "\u27cb": "MATHEMATICAL RISING DIAGONAL",
    "\u2afd": "DOUBLE SOLIDUS OPERATOR",
    "\u2afb": "TRIPLE SOLIDUS BINARY RELATION",
    "\u0337": "COMBINING SHORT SOLIDUS OVERLAY",
    "\u0338": "COMBINING LONG SOLIDUS OVERLAY",
    "\u29f5": "REVERSE SOLIDUS OPERATOR",
    "\u29f9": "BIG REVERSE SOLIDUS",
    "\u2216": "SET MINUS",
    "\ufe68": "SMALL REVERSE SOLIDUS",
    "\uff3c": "FULLWIDTH REVERSE SOLIDUS",
    "\u27cd": "MATHEMATICAL FALLING DIAGONAL",
}
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x85\u2028\u2029")
_DRIVE = re.compile(r"[A-Za-z]:")
# On case-insensitive or NTFS-like file systems '.GIT' and '.git. ' reach the same folder.
_TRAILING_IGNORED = ". "


def _refuse(path: str, rule: str, hint: str = f"use {ALLOWED}") -> UnsafePathError:
    return UnsafePathError(path, rule, hint=hint)


def _canonical(part: str) -> str:
    return unicodedata.normalize("NFKC", part).casefold().rstrip(_TRAILING_IGNORED)


def check_relpath(path: str) -> str:
    """Validate ``path`` textually and return it normalized ('a//b/./c' → 'a/b/c').

    Raises :class:`UnsafePathError` naming the path and the rule it breaks.
    """
    if not isinstance(path, str):
        raise TypeError(f"path must be str, not {type(path).__name__}")
    if path == "":
        raise _refuse(path, "the path is empty")
    if "\0" in path:
        raise _refuse(path, "the path contains a NUL byte")
    if any(ch in _LINE_BREAKS for ch in path):
        raise _refuse(path, "the path contains a line break")
    for ch in path:
        category = unicodedata.category(ch)
        if category == "Cc":
            raise _refuse(path, f"the path contains the control character U+{ord(ch):04X}")
        if category in ("Cf", "Cs", "Co", "Cn") and ch not in LOOKALIKES:
            what = {
                "Cf": "an invisible formatting character",
                "Cs": "an undecodable byte",
                "Co": "a private-use character",
                "Cn": "an unassigned character",
            }[category]
            raise _refuse(path, f"the path contains {what} (U+{ord(ch):04X})")
        if ch in LOOKALIKES:
            raise _refuse(
                path,
                f"the path contains U+{ord(ch):04X} {LOOKALIKES[ch]}, which looks like a "
                "path separator but is not one",
                hint=f"separate folders with '/' only; use {ALLOWED}",
            )
    if "\\" in path:
        raise _refuse(path, "the path contains a backslash", hint="separate folders with '/'")
    if path.startswith("/") or _DRIVE.match(path):
        raise _refuse(path, "the path is absolute")
    if path.startswith("~"):
        raise _refuse(path, "the path starts with '~' (a home folder)")
    if path.endswith("/"):
        raise _refuse(path, "the path names a folder, not a file")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise _refuse(path, "the path names the workspace folder itself")
    for part in parts:
        if part == "..":
            raise _refuse(path, "the path has a '..' component", hint=f"use {ALLOWED}, no '..'")
        if unicodedata.normalize("NFKC", part) in (".", ".."):
            raise _refuse(path, f"the component {part!r} is a look-alike of '.' or '..'")
        if "/" in unicodedata.normalize("NFKC", part):
            raise _refuse(path, f"the component {part!r} contains a look-alike of '/'")
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise _refuse(
                path,
                f"a file or folder name is longer than {NAME_MAX} bytes",
                hint="use shorter names",
            )
    normalized = "/".join(parts)
    if len(normalized.encode("utf-8", "surrogateescape")) >= PATH_MAX:
        raise _refuse(path, f"the path is longer than {PATH_MAX} bytes", hint="use shorter names")
    check_reserved(parts, path)
    return normalized


def check_reserved(parts: list[str], shown: str) -> None:
    """Refuse anything under ``.git/`` (at any depth) or under the state folder."""
    for part in parts:
        if _canonical(part) == ".git":
            raise _refuse(
                shown,
                "the path is inside .git/, which only git may write",
                hint=f"use {ALLOWED} outside .git/",
            )
    if _canonical(parts[0]) == STATE_DIR_NAME:
        raise _refuse(
            shown,
            f"the path is inside {STATE_DIR_NAME}/, the orchestrator's own state folder",
            hint=f"use {ALLOWED} outside {STATE_DIR_NAME}/",
        )
