"""Count the suggestions in a reviewer's answer, so a review loop knows when to stop.

The rule, first match wins:

1. **JSON.** A fenced ```` ```json ```` block whose object has a ``"suggestions"`` list, else
   a bare JSON object anywhere in the text with one: the list's items (the last such object
   counts: an answer that quotes the format first and then fills it in means the second).
   ``"suggestions": []`` or ``null`` is zero.
2. **A ```` ```suggestions ```` block.** Its list items (``-``, ``*``, ``+``, ``1.``, ``1)``),
   or its non-empty lines if it has no list markers; several blocks add up.
3. **A "Suggestions" heading.** ``Suggestions:``, ``**Suggestions**``, ``## Suggestions``
   (also "Suggested changes", "Recommendations"): the list items that follow it, up to the
   next heading or the first unindented paragraph after the list. Nested items belong to
   their parent. ``Suggestions: none`` is zero; a section without list items counts its
   paragraphs. Several such sections add up.
4. **"No suggestions" / "LGTM".** Without any of the above, an answer that says so is zero.
5. **Any list.** Otherwise every top-level markdown list item in the text.

Fenced code blocks are never read as lists (a ```` ```diff ```` has lines starting with
``-``), and an item that only says "none" or "N/A" is not a suggestion.
:func:`count_suggestions` is ``len(extract_suggestions(text))``; neither raises on any text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([^\s`]*)")
_ITEM = re.compile(r"^( *)(?:[-*+•]|\d{1,3}[.)])[ \t]+(\S.*)$")
_CHECKBOX = re.compile(r"^\[[ xX]\]\s*")
_ATX = re.compile(r"^ {0,3}#{1,6}(?:\s|$)")
_THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])(?:\s*\1){2,}\s*$")
_HEADING_WORD = re.compile(
    r"^(?:suggestions?|suggested changes|recommendations?)\b(.*)$", re.IGNORECASE
)
_KEY = re.compile(r'"suggestions"\s*:', re.IGNORECASE)
_SAYS_NONE = re.compile(
    r"\b(?:lgtm|looks good to me|no (?:further |more |additional |other )?suggestions?"
    r"|nothing (?:further |more |else )?to (?:suggest|add|change))\b",
    re.IGNORECASE,
)
_NONE_ITEM = re.compile(r"^(?:none|n/?a|nil|nothing)\b", re.IGNORECASE)
# Words that turn "LGTM" or "none" into the start of a real suggestion.
_BUT = frozenset({"but", "except", "though", "however", "of", "although"})
_BOLD_HEADING = re.compile(r"^ {0,3}(?:\*\*|__)[^*_]+(?:\*\*|__)\s*:?\s*$")
_TEXT_KEYS = ("title", "summary", "suggestion", "text", "description", "message")
# Bounds on the bare-JSON search, so a pathological answer costs milliseconds, not minutes.
_MAX_KEYS = 20
_MAX_OPENERS_PER_KEY = 20


@dataclass(frozen=True)
class _Block:
    tag: str
    body: str


def count_suggestions(text: str) -> int:
    """How many suggestions ``text`` makes (see the module docstring for the rule)."""
    return len(extract_suggestions(text))


def extract_suggestions(text: str) -> list[str]:
    """The suggestions ``text`` makes, each as one line of text."""
    prose, blocks = _split_fences(text.expandtabs(4))
    found = _from_json(text, blocks)
    if found is None:
        found = _from_suggestion_blocks(blocks)
    if found is None:
        found = _from_headings(prose)
    if found is None:
        found = [] if _SAYS_NONE.search(text) else _top_level_items(prose)
    return [item for item in found if item and not _says_none(item)]


def _split_fences(text: str) -> tuple[list[str], list[_Block]]:
    """Lines outside fenced code blocks, and the blocks (an unclosed fence runs to the end)."""
    prose: list[str] = []
    blocks: list[_Block] = []
    fence: str | None = None
    tag = ""
    body: list[str] = []
    for line in text.splitlines():
        if fence is None:
            opener = _FENCE.match(line)
            # A backtick in the info string means inline code (```x```), not a fence.
            if opener and not (opener.group(1)[0] == "`" and "`" in line[opener.end(1) :]):
                fence, tag, body = opener.group(1), opener.group(2).lower(), []
            else:
                prose.append(line)
        elif line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            blocks.append(_Block(tag, "\n".join(body)))
            fence = None
        else:
            body.append(line)
    if fence is not None:
        blocks.append(_Block(tag, "\n".join(body)))
    return prose, blocks


# --- rule 1: JSON -------------------------------------------------------------------------


def _from_json(text: str, blocks: list[_Block]) -> list[str] | None:
    fenced = None
    for block in blocks:
        found = _suggestions_of(_loads(block.body)) if block.tag == "json" else None
        fenced = found if found is not None else fenced
    if fenced is not None:
        return _json_items(fenced)
    bare = _last_bare_object(text)
    return None if bare is None else _json_items(bare)


def _loads(body: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _suggestions_of(value: Any) -> list[Any] | None:
    """The object's suggestions list ([] for null), or None if it has none."""
    if not isinstance(value, dict):
        return None
    for key, items in value.items():
        if isinstance(key, str) and key.lower() == "suggestions":
            if items is None:
                return []
            if isinstance(items, list):
                return items
    return None


def _last_bare_object(text: str) -> list[Any] | None:
    # Find each `"suggestions":` key from the end and try the `{` openers before it, nearest
    # first: the nearest one that decodes to an object holding that key is its object.
    decoder = json.JSONDecoder()
    keys = list(_KEY.finditer(text))[-_MAX_KEYS:]
    for key in reversed(keys):
        start = key.start()
        for _ in range(_MAX_OPENERS_PER_KEY):
            start = text.rfind("{", 0, start)
            if start < 0:
                break
            try:
                value, end = decoder.raw_decode(text, start)
            except (ValueError, RecursionError):
                continue
            if end > key.start():
                found = _suggestions_of(value)
                if found is not None:
                    return found
    return None


def _json_items(items: list[Any]) -> list[str]:
    out: list[str] = []
    for item in items:
        if isinstance(item, str):
            out.append(" ".join(item.split()))
            continue
        if isinstance(item, dict):
            texts = [item[k] for k in _TEXT_KEYS if isinstance(item.get(k), str)]
            if texts:
                out.append(" ".join(texts[0].split()))
                continue
        # Any other value is still one suggestion; keep it visible as JSON.
        try:
            out.append(json.dumps(item, sort_keys=True))
        except (ValueError, RecursionError):
            out.append(f"<{type(item).__name__}>")
    return out


# --- rule 2: ```suggestions blocks -------------------------------------------------------


def _from_suggestion_blocks(blocks: list[_Block]) -> list[str] | None:
    chosen = [block for block in blocks if block.tag == "suggestions"]
    if not chosen:
        return None
    out: list[str] = []
    for block in chosen:
        lines = block.body.splitlines()
        items = _top_level_items(lines)
        out.extend(items if items else [line.strip() for line in lines if line.strip()])
    return out


# --- rule 3: a "Suggestions" heading -----------------------------------------------------


def _heading_rest(line: str) -> str | None:
    """The text after a Suggestions heading on its line ("" for none), or None if no heading."""
    if _ITEM.match(line):
        return None  # "* Suggestion: x" is an item, not a heading
    stripped = line.strip()
    atx = stripped.startswith("#")
    match = _HEADING_WORD.match(stripped.lstrip("#").strip().strip("*_ "))
    if match is None:
        return None
    rest = re.sub(r"^\s*\(\d+\)", "", match.group(1)).lstrip("*_ ")
    if rest.startswith(":"):
        return rest[1:].strip(" *_")
    if not rest.strip():
        return ""
    # "## Suggestions for the API" is a heading; "Suggestions are welcome." is a sentence.
    return "" if atx else None


def _from_headings(prose: list[str]) -> list[str] | None:
    out: list[str] | None = None
    for index, line in enumerate(prose):
        rest = _heading_rest(line)
        if rest is None:
            continue
        out = out if out is not None else []
        if rest and _says_none(rest):
            continue  # "Suggestions: none" (what follows is something else)
        items, paragraphs = _section(prose[index + 1 :])
        if items:
            out.extend(items)
        elif rest:
            out.append(rest)
        else:
            out.extend(paragraphs)
    return out


def _section(lines: list[str]) -> tuple[list[str], list[str]]:
    """The list items at the section's top level, and its paragraphs (for an unlisted one)."""
    items: list[str] = []
    paragraphs: list[str] = []
    base: int | None = None
    in_paragraph = False
    for line in lines:
        if (
            _ATX.match(line)
            or _BOLD_HEADING.match(line)
            or _THEMATIC_BREAK.match(line)
            or _heading_rest(line) is not None
        ):
            break
        item = _ITEM.match(line)
        if item:
            indent = len(item.group(1))
            base = indent if base is None else base
            if indent < base + 2:
                items.append(_item_text(item.group(2)))
            in_paragraph = False
        elif not line.strip():
            in_paragraph = False
        elif base is not None and _indent(line) <= base:
            break  # an unindented paragraph after the list ends the section
        elif base is None:
            if not in_paragraph:
                if _says_none(line):
                    break  # "None." — a list further down belongs to something else
                paragraphs.append(line.strip())
            in_paragraph = True
    return items, paragraphs


# --- rule 5 and helpers --------------------------------------------------------------------


def _top_level_items(lines: list[str]) -> list[str]:
    matches = [m for m in map(_ITEM.match, lines) if m is not None]
    if not matches:
        return []
    base = min(len(m.group(1)) for m in matches)
    return [_item_text(m.group(2)) for m in matches if len(m.group(1)) < base + 2]


def _item_text(raw: str) -> str:
    text = _CHECKBOX.sub("", raw.strip())
    # A thematic break such as "* * *" looks like an item whose text is only markers.
    return "" if not text.strip("-*_ ") else text


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _says_none(item: str) -> bool:
    normalized = " ".join(re.sub(r"[*_`.!,;:()]+", " ", item).split()).lower()
    if not normalized:
        return True
    match = _SAYS_NONE.match(normalized) or _NONE_ITEM.match(normalized)
    if match is None:
        return False
    # "None." or "N/A at this point" is no suggestion; "None of the tests cover X" is one.
    rest = normalized[match.end() :].split()
    return len(rest) <= 3 and not _BUT.intersection(rest)


__all__ = ["count_suggestions", "extract_suggestions"]
