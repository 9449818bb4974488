"""The final render of a run: per-file diffs with word-level highlights, in inline-styled HTML.

:func:`workflow_bundle` keeps the result's own ``text/plain`` and ``text/markdown`` (they are
deterministic) and replaces its HTML with one that shows every changed file on its own, folded
when long with its +/- counts in the summary, and the changed words of each modified line
highlighted. Inline styles only: untrusted notebooks strip ``<style>`` and ``<script>``.
The extension registers it with IPython's display formatter, so :class:`WorkflowResult` itself
stays as it is and renders the same everywhere else.
"""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass
from typing import Any

from ..workflow.result import WorkflowResult

FOLD_LINES = 80
MAX_LINES_PER_FILE = 2000
_TOKENS = re.compile(r"\w+|\s+|[^\w\s]+")
_HEADER = re.compile(r"^diff --git a/(.*?) b/(.*)$")
_ADD_BG, _DEL_BG = "#e6ffec", "#ffebe9"
_ADD_WORD, _DEL_WORD = "#abf2bc", "#ffc1c0"
_HEADER_STARTS = (
    *("diff --git", "index ", "--- ", "+++ ", "new file", "deleted file"),
    *("rename ", "old mode", "new mode", "Binary files", "# "),
)
_OK, _BAD, _GREY = "#1a7f37", "#cf222e", "#57606a"


@dataclass(frozen=True)
class FileDiff:
    path: str
    lines: list[str]

    @property
    def added(self) -> int:
        return sum(1 for ln in self.lines if ln.startswith("+") and not ln.startswith("+++"))

    @property
    def removed(self) -> int:
        return sum(1 for ln in self.lines if ln.startswith("-") and not ln.startswith("---"))


def split_files(diff: str) -> list[FileDiff]:
    """A git-style unified diff cut into one piece per file (a bare diff is one piece)."""
    files: list[FileDiff] = []
    path, lines = "", []  # type: str, list[str]
    for line in diff.splitlines():
        match = _HEADER.match(line)
        if match:
            if lines:
                files.append(FileDiff(path, lines))
            path, lines = match.group(2), []
        elif not path and line.startswith("+++ "):
            path = line[4:].removeprefix("b/")
        lines.append(line)
    if lines:
        files.append(FileDiff(path or "(diff)", lines))
    return files


def _words(old: str, new: str) -> tuple[str, str]:
    """Both lines as HTML with the tokens that differ between them highlighted."""
    a, b = _TOKENS.findall(old), _TOKENS.findall(new)
    out_a: list[str] = []
    out_b: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        left, right = html.escape("".join(a[i1:i2])), html.escape("".join(b[j1:j2]))
        if op == "equal":
            out_a.append(left)
            out_b.append(right)
            continue
        if left:
            out_a.append(f'<span style="background:{_DEL_WORD}">{left}</span>')
        if right:
            out_b.append(f'<span style="background:{_ADD_WORD}">{right}</span>')
    return "".join(out_a), "".join(out_b)


def _row(kind: str, body: str) -> str:
    styles = {
        "+": f"background:{_ADD_BG}",
        "-": f"background:{_DEL_BG}",
        "@": "color:#0969da",
        "h": f"color:{_GREY};font-weight:bold",
        " ": "",
    }
    return f'<span style="display:block;{styles[kind]}">{body or "&nbsp;"}</span>'


def _rows(lines: list[str]) -> list[str]:
    """Each line styled; a run of removed lines followed by added ones is compared word by word."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("-") and not line.startswith("---"):
            j = i
            while j < len(lines) and lines[j].startswith("-") and not lines[j].startswith("---"):
                j += 1
            k = j
            while k < len(lines) and lines[k].startswith("+") and not lines[k].startswith("+++"):
                k += 1
            removed, added = lines[i:j], lines[j:k]
            pairs = min(len(removed), len(added))
            olds = [html.escape(x[1:]) for x in removed]
            news = [html.escape(x[1:]) for x in added]
            for n in range(pairs):
                olds[n], news[n] = _words(removed[n][1:], added[n][1:])
            out += [_row("-", "-" + x) for x in olds]
            out += [_row("+", "+" + x) for x in news]
            i = k
            continue
        if line.startswith("+") and not line.startswith("+++"):
            out.append(_row("+", html.escape(line)))
        elif line.startswith("@@"):
            out.append(_row("@", html.escape(line)))
        elif line.startswith(_HEADER_STARTS):
            out.append(_row("h", html.escape(line)))
        else:
            out.append(_row(" ", html.escape(line)))
        i += 1
    return out


def file_diff_html(file: FileDiff, *, fold_lines: int = FOLD_LINES) -> str:
    shown = file.lines[:MAX_LINES_PER_FILE]
    rows = "".join(_rows(shown))
    if len(file.lines) > len(shown):
        more = len(file.lines) - len(shown)
        rows += _row(" ", f"… {more} more lines in the text/plain output")
    counts = (
        f'<span style="color:{_OK}">+{file.added}</span> '
        f'<span style="color:{_BAD}">−{file.removed}</span>'
    )
    is_open = "" if len(file.lines) > fold_lines else " open"
    return (
        f'<details{is_open} style="margin:2px 0"><summary style="cursor:pointer">'
        f"<code>{html.escape(file.path)}</code> {counts}</summary>"
        '<pre style="margin:2px 0 6px 0;padding:4px;font-size:12px;line-height:1.35;'
        f'overflow-x:auto;border:1px solid #d0d7de;border-radius:4px">{rows}</pre></details>'
    )


def diff_html(diff: str, *, fold_lines: int = FOLD_LINES) -> str:
    """Every file of ``diff`` on its own, large ones folded with their +/- counts."""
    return "".join(file_diff_html(f, fold_lines=fold_lines) for f in split_files(diff))


def result_html(result: WorkflowResult) -> str:
    colour = _OK if result.ok else _BAD
    out = [
        f'<div style="border-left:4px solid {colour};padding:4px 8px;font-family:sans-serif">',
        f"<div><b>{html.escape(result.summary())}</b></div>",
    ]
    if result.error:
        out.append(f'<div style="color:{colour}">{html.escape(str(result.error))}</div>')
    if result.plan and not result.steps:
        out.append(f'<pre style="white-space:pre-wrap">{html.escape(str(result))}</pre>')
    for step in result.steps:
        body = html.escape(step.text) if step.text else f'<i style="color:{_GREY}">no text</i>'
        out.append(
            '<details style="margin:2px 0"><summary style="cursor:pointer">'
            f"{html.escape(step._summary_line())}</summary>"
            f'<div style="white-space:pre-wrap;margin:2px 0 4px 12px">{body}</div></details>'
        )
    if result.notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
        out.append(f'<ul style="margin:2px 0;color:{_GREY}">{items}</ul>')
    if result.diff:
        files = split_files(result.diff)
        added, removed = sum(f.added for f in files), sum(f.removed for f in files)
        out.append(
            f'<div style="margin-top:4px">{len(files)} file(s) changed, '
            f'<span style="color:{_OK}">+{added}</span> '
            f'<span style="color:{_BAD}">−{removed}</span></div>'
        )
        out.append(diff_html(result.diff))
    elif result.changes:
        items = "".join(
            f"<li><code>{html.escape(c.kind)}</code> {html.escape(c.path)}</li>"
            for c in result.changes
        )
        out.append(f'<ul style="margin:2px 0">{items}</ul>')
    out.append("</div>")
    return "".join(out)


def workflow_bundle(result: WorkflowResult, include: Any = None, exclude: Any = None) -> Any:
    """The result's own text/plain and text/markdown, with the richer HTML of this module."""
    bundle = dict(result._repr_mimebundle_(include, exclude))
    bundle["text/html"] = result_html(result)
    return bundle


__all__ = [
    "FileDiff",
    "diff_html",
    "file_diff_html",
    "result_html",
    "split_files",
    "workflow_bundle",
]
