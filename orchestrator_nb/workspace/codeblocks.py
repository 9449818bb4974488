"""Files named by fenced code blocks in an agent's text answer, written through the safe writer.

Agents that only answer in text (the generic ``command`` driver, or any answer with fenced code)
name the file a block belongs to in one of a few common ways; these are recognized, in this order:

1. an info-string attribute: ```` ```python path=src/app.py ````, ``file=``, ``filename=``,
   ``title="src/app.py"``, or ```` ```python:src/app.py ```` / ```` ```src/app.py ````;
2. a marker on the block's first line: ``# file: src/app.py``, ``// file: …``, ``<!-- file: … -->``
   (the marker line is not written);
3. a line just before the block: ``File: src/app.py``, ``**File:** `src/app.py` ``,
   ``### src/app.py``, ``**`src/app.py`**``.

Fences follow CommonMark (``` or ~~~, at least three, closed by the same character at least as
long), so a block may contain shorter fences. A block left open at the end of the text is taken as
a truncated answer and not written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from ..errors import UnsafePathError
from .paths import check_relpath
from .safe_write import SafeWriter, WriteRecord

NamedBy = Literal["info", "first_line", "preceding_line"]

_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_ATTR = re.compile(
    r"""(?P<key>path|file|filename|title|name)\s*=\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s"'{}]+))""",
    re.IGNORECASE,
)
_MARKER = re.compile(
    r"^\s*(?:#|//|--|;|%|/\*|<!--|\*)\s*(?:file(?:name)?|path)\s*:\s*(?P<path>\S.*?)\s*"
    r"(?:\*/|-->)?\s*$",
    re.IGNORECASE,
)
_LABELLED = re.compile(
    r"^\s*(?:[#>]+\s*|[-*]\s+)?(?:\*\*|__)?(?:file(?:name)?|path)"
    r"(?::(?:\*\*|__)?|(?:\*\*|__)?:)\s*"
    r"(?:\*\*|__)?`?(?P<path>[^`*]+?)`?(?:\*\*|__)?\s*:?\s*$",
    re.IGNORECASE,
)
_BARE = re.compile(
    r"^\s*(?:#{1,6}\s*)?(?:\*\*|__)?`?(?P<path>[\w.\-/]+)`?(?:\*\*|__)?\s*:?\s*$",
)
_PATH_SHAPE = re.compile(r"(?:^|/)[\w.\-]*[\w\-]\.[A-Za-z][A-Za-z0-9_]{0,11}$|/")


@dataclass(frozen=True)
class CodeFile:
    """One file a code block names: where, what, and how the name was found."""

    path: str
    content: str
    language: str | None
    named_by: NamedBy
    line: int


@dataclass
class CodeBlockWrites:
    """The outcome of writing an answer's code blocks: what was written, what was refused."""

    files: list[CodeFile] = field(default_factory=list)
    written: list[WriteRecord] = field(default_factory=list)
    refused: list[tuple[CodeFile, UnsafePathError]] = field(default_factory=list)


def _looks_like_path(value: str) -> bool:
    return bool(_PATH_SHAPE.search(value)) and " " not in value


def _from_info(info: str) -> tuple[str | None, str | None]:
    """(language, path) from a fence's info string."""
    info = info.strip()
    if not info:
        return None, None
    first = info.split()[0].strip("{}")
    lang: str | None = first.lstrip(".") or None
    for m in _ATTR.finditer(info):
        value = m.group("dq") if m.group("dq") is not None else m.group("sq") or m.group("bare")
        key = m.group("key").lower()
        if value and (key in ("path", "file", "filename") or _looks_like_path(value)):
            if "=" in first:
                lang = None
            return lang, value
    if ":" in first:
        head, _, tail = first.partition(":")
        if tail and _looks_like_path(tail):
            return head or None, tail
    if _looks_like_path(first) and ("/" in first or "." in first.strip(".")):
        return None, first
    return lang, None


def _from_preceding(lines: list[str], fence_index: int) -> str | None:
    i = fence_index - 1
    if i >= 0 and not lines[i].strip():
        i -= 1
    if i < 0:
        return None
    line = lines[i]
    m = _LABELLED.match(line)
    if m:
        return m.group("path").strip()
    m = _BARE.match(line)
    if m and _looks_like_path(m.group("path")):
        return m.group("path")
    return None


def extract_files(text: str) -> list[CodeFile]:
    """Every complete fenced block in ``text`` that names a file, last version of each path."""
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
    found: dict[str, CodeFile] = {}
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m or (m.group("fence")[0] == "`" and "`" in m.group("info")):
            i += 1
            continue
        fence, indent = m.group("fence"), len(m.group("indent"))
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        start = i
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            body.append(_dedent(lines[j], indent))
            j += 1
        if j >= len(lines):
            break  # unclosed: a truncated answer is not a file
        i = j + 1
        lang, path = _from_info(m.group("info"))
        how: NamedBy = "info"
        if path is None and body:
            marker = _MARKER.match(body[0])
            if marker:
                path, how = marker.group("path"), "first_line"
                body = body[1:]
        if path is None:
            path, how = _from_preceding(lines, start), "preceding_line"
        if path is None:
            continue
        content = "\n".join(body) + "\n" if body else ""
        found.pop(path, None)
        found[path] = CodeFile(path, content, lang, how, start + 1)
    return list(found.values())


def _dedent(line: str, indent: int) -> str:
    n = 0
    while n < indent and n < len(line) and line[n] == " ":
        n += 1
    return line[n:]


def write_files(
    source: str | Iterable[CodeFile],
    writer: SafeWriter,
    *,
    on_unsafe: Literal["raise", "skip"] = "raise",
) -> CodeBlockWrites:
    """Write the files named in ``source`` (an answer's text, or extracted files).

    Every path is checked before anything is written: with ``on_unsafe="raise"`` one refused
    path raises :class:`UnsafePathError` and no file is written; with ``"skip"`` the refused ones
    are listed in ``refused`` and the rest are written.
    """
    files = extract_files(source) if isinstance(source, str) else list(source)
    result = CodeBlockWrites(files=files)
    ok: list[CodeFile] = []
    for cf in files:
        try:
            check_relpath(cf.path)
            writer.check(cf.path)
        except UnsafePathError as exc:
            if on_unsafe == "raise":
                raise
            result.refused.append((cf, exc))
            continue
        ok.append(cf)
    for cf in ok:
        try:
            result.written.append(writer.write(cf.path, cf.content))
        except UnsafePathError as exc:
            # The tree changed between check and write (a symlink appeared): still refused.
            if on_unsafe == "raise":
                raise
            result.refused.append((cf, exc))
    return result
