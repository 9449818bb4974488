"""``.gitignore`` rules for workspaces that are not git repositories.

Git answers this itself in a repository; outside one the tree walker still honours the
``.gitignore`` files a project carries, with git's semantics: last match wins, ``!`` re-includes,
a trailing ``/`` matches only folders, a ``/`` elsewhere anchors the pattern to its file's folder,
``**`` crosses folders. A path inside an ignored folder is never re-included (the walker does not
descend), exactly as in git.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def _strip_trailing_spaces(line: str) -> str:
    end = len(line)
    while end > 0 and line[end - 1] == " ":
        if end >= 2 and line[end - 2] == "\\":
            break
        end -= 1
    return line[:end]


def _translate(body: str) -> str:
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == "*":
            if body.startswith("**", i):
                at_start = i == 0 or body[i - 1] == "/"
                at_end = i + 2 == n or body[i + 2] == "/"
                if at_start and at_end:
                    if i + 2 == n:
                        out.append(".*")
                        i += 2
                    else:
                        out.append("(?:.*/)?")
                        i += 3
                    continue
                out.append("[^/]*")
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            close = body.find("]", i + 2 if body[i + 1 : i + 2] in ("!", "^", "]") else i + 1)
            if close == -1:
                out.append(re.escape(c))
            else:
                inner = body[i + 1 : close]
                if inner[:1] in ("!", "^"):
                    inner = "^" + inner[1:]
                inner = inner.replace("\\", "\\\\")
                out.append(f"(?!/)[{inner}]")
                i = close
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(body[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def parse_rules(text: str) -> list[_Rule]:
    rules: list[_Rule] = []
    for raw in text.splitlines():
        line = _strip_trailing_spaces(raw)
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate or line.startswith("\\!") or line.startswith("\\#"):
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line
        line = line.lstrip("/")
        pattern = _translate(line)
        if not anchored:
            pattern = "(?:.*/)?" + pattern
        try:
            regex = re.compile(pattern + r"\Z", re.DOTALL)
        except re.error:
            # git ignores a pattern it cannot parse; so do we.
            continue
        rules.append(_Rule(regex, negate, dir_only))
    return rules


class IgnoreRules:
    """The ``.gitignore`` files seen so far on the way down, deepest last."""

    def __init__(self, layers: tuple[tuple[str, tuple[_Rule, ...]], ...] = ()) -> None:
        self._layers = layers

    def with_file(self, base: str, text: str) -> IgnoreRules:
        """Rules of a ``.gitignore`` in folder ``base`` ("" or "a/b/") added on top."""
        rules = tuple(parse_rules(text))
        if not rules:
            return self
        return IgnoreRules((*self._layers, (base, rules)))

    def ignored(self, rel: str, is_dir: bool) -> bool:
        verdict = False
        for base, rules in self._layers:
            if not rel.startswith(base):
                continue
            sub = rel[len(base) :]
            for rule in rules:
                if rule.dir_only and not is_dir:
                    continue
                if rule.regex.match(sub):
                    verdict = not rule.negate
        return verdict
