"""How results look, in one place: the usage line, numbers, cost, and diffs as HTML.

Every view (the cell, a result's own ``_repr_mimebundle_``, the dashboard, ``history``, the
console, batches, session exports) formats usage through :func:`usage_line` and friends, so
the same run shows the same numbers everywhere: thousands separated (``9,600``), cost to four
decimals, and "not reported" where a CLI gives no cost (codex, gemini and copilot report
tokens only). Diffs are rendered once (:func:`diff_html`): one block per file, long ones
folded with their +/- counts, the changed words of a modified line highlighted, in a
monospace ``<pre>`` so indentation survives. Inline styles only: untrusted notebooks strip
``<style>`` and ``<script>``. A :class:`WorkflowResult` renders through :func:`result_html`
itself, so it looks the same with or without ``%load_ext orchestrator_nb``.
"""

from __future__ import annotations

import difflib
import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .events import StepResult, Usage
    from .workflow.result import WorkflowResult

NOT_REPORTED = "not reported"
SCRIPTED = "scripted"
REHEARSAL_MARK = "rehearsal"
FOLD_LINES = 80
MAX_LINES_PER_FILE = 2000
OK, BAD, GREY = "#1a7f37", "#cf222e", "#57606a"
MONO = "font-family:monospace"
_PRE = f"margin:2px 0 6px 0;padding:4px;font-size:12px;line-height:1.35;{MONO};"
_PRE += "overflow-x:auto;border:1px solid #d0d7de;border-radius:4px"
_CODE_PRE = f"margin:4px 0;padding:4px;font-size:12px;{MONO};white-space:pre;overflow-x:auto;"
_CODE_PRE += "background:#f6f8fa;border-radius:4px"
_CODE_TAG = re.compile(r'<code(?: class="[^"]*")?(?=>)')
_TOKENS = re.compile(r"\w+|\s+|[^\w\s]+")
_HEADER = re.compile(r"^diff --git a/(.*?) b/(.*)$")
_ADD_BG, _DEL_BG = "#e6ffec", "#ffebe9"
_ADD_WORD, _DEL_WORD = "#abf2bc", "#ffc1c0"
_HEADER_STARTS = (
    *("diff --git", "index ", "--- ", "+++ ", "new file", "deleted file"),
    *("rename ", "old mode", "new mode", "Binary files", "# "),
)

# -- numbers and the usage line ----------------------------------------------------------------


def number(value: float) -> str:
    """A count as people read it: ``9,600``."""
    return f"{int(value):,}"


def plural(count: float, word: str, words: str | None = None) -> str:
    """``1 turn``, ``2 turns``, ``9,600 files``, ``2 processes``: the count and the word it
    takes (``words`` for an irregular plural)."""
    n = int(count)
    if words is None:
        words = word + ("es" if word.endswith(("s", "sh", "ch", "x")) else "s")
    return f"{number(n)} {word if n == 1 else words}"


def cost(value: float | None) -> str:
    """``$0.0123``, or "not reported" when the CLI gave no cost."""
    return NOT_REPORTED if value is None else f"${value:.4f}"


def tokens_pair(input_tokens: float, output_tokens: float) -> str:
    """``9,600 / 120``: a table cell under "tokens in / out"."""
    return f"{number(input_tokens)} / {number(output_tokens)}"


def usage_text(
    input_tokens: float, output_tokens: float, cost_usd: float | None, *, scripted: bool = False
) -> str:
    """``9,600 in / 120 out tokens, $0.0123`` (``..., cost not reported``).

    ``scripted``: the figures came from a rehearsal's script, not from a provider's bill, and
    say so (``$0.0123 scripted``), so nobody reads them as money spent.
    """
    spent = cost(cost_usd) if cost_usd is not None else f"cost {NOT_REPORTED}"
    if scripted and cost_usd is not None:
        spent += f" {SCRIPTED}"
    return f"{number(input_tokens)} in / {number(output_tokens)} out tokens, {spent}"


def usage_line(
    usage: Usage,
    agents: Iterable[tuple[str, Usage]] | Mapping[str, bool] | None = None,
    *,
    scripted: bool = False,
) -> str:
    """The usage line of a step, a run, a turn or a batch (``scripted`` under rehearsal).

    ``agents``: the (agent, usage) parts a total was summed from, or :func:`cost_reported`'s
    map of them. Where the total shows a dollar figure, the line says which agents it covers
    and which of them reported no cost, so the figure is never read as the whole bill:
    ``..., $0.0123 (claude, codex; gemini not reported)``. With no cost at all, "cost not
    reported" already says it for every agent.
    """
    line = usage_text(usage.input_tokens, usage.output_tokens, usage.cost_usd, scripted=scripted)
    priced = agents is not None and usage.cost_usd is not None
    covered = coverage(agents) if agents is not None and priced else ""
    return f"{line} ({covered})" if covered else line


def cost_reported(
    agents: Iterable[tuple[str, Usage]] | Mapping[str, bool], into: dict[str, bool] | None = None
) -> dict[str, bool]:
    """Agent -> whether it reported a cost at least once, in first-seen order (``into``: a
    map to add to, e.g. a batch's over its tasks)."""
    names = into if into is not None else {}
    pairs = agents.items() if isinstance(agents, Mapping) else agents
    for name, part in pairs:
        has_cost = part if isinstance(part, bool) else part.cost_usd is not None
        names[name] = names.get(name, False) or has_cost
    return names


def coverage(agents: Iterable[tuple[str, Usage]] | Mapping[str, bool]) -> str:
    """``claude, codex; gemini not reported``: the agents whose cost a total includes, then
    those that gave none (their tokens are in the total, their cost cannot be). First-seen
    order; empty when there is no agent."""
    names = cost_reported(agents)
    reported = [n for n, has_cost in names.items() if has_cost]
    unreported = [n for n, has_cost in names.items() if not has_cost]
    if reported and unreported:
        return f"{', '.join(reported)}; {', '.join(unreported)} {NOT_REPORTED}"
    return ", ".join(reported or unreported)  # all alike: the cost part already says which


def duration(seconds: float) -> str:
    """``0.4s``, ``12.3s``, ``2m 05s``, ``1h 02m``: a step's or a run's time, as a clock reads."""
    if seconds < 60:
        return f"{max(seconds, 0.0):.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


# -- text and code -------------------------------------------------------------------------------


def pre(text: str, *, colour: str | None = None) -> str:
    """``text`` (escaped here) in a monospace block that wraps."""
    tint = f";color:{colour}" if colour else ""
    return f'<pre style="white-space:pre-wrap;margin:4px 0;{MONO}{tint}">{html.escape(text)}</pre>'


_TOOL_KEYS = ("file_path", "path", "command", "cmd", "pattern", "url", "query")


def one_line(text: str, limit: int) -> str:
    """``text`` on one line (runs of whitespace as one space), at most ``limit`` characters, an
    ellipsis where it was cut. Redact before calling it: a cut can split a secret."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def tool_detail(value: Any, *, limit: int = 100, within: str | None = None) -> str:
    """A tool call's main argument on one line: its path, command or query, else its JSON;
    paths inside the folder ``within`` (the run's workspace) are shown relative to it, before
    the cut, so the line reads the same wherever the workspace lies."""
    text = ""
    if isinstance(value, dict):
        text = next((str(value[k]) for k in _TOOL_KEYS if isinstance(value.get(k), str)), "")
        changes = value.get("changes")  # codex's file_change: {"changes": [{"path": ...}]}
        if not text and isinstance(changes, list):
            paths = [c["path"] for c in changes if isinstance(c, dict) and "path" in c]
            text = ", ".join(str(p) for p in paths)
    if not text:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = str(value)
        text = "" if text in ("null", "{}") else text
    from .observe.redact import redact

    # Redacted before the cut: a cut through a secret leaves a piece no pattern matches.
    if within:
        text = text.replace(within.rstrip("/") + "/", "")
    return one_line(redact(" ".join(text.split())), limit)


def markdown_html(text: str) -> str:
    """An agent's answer (Markdown) as HTML: code and JSON in monospace, raw HTML escaped.

    Styles are inline (untrusted notebooks drop ``<style>``), so a code block keeps its
    indentation in JupyterLab, in nbconvert's HTML and in the dashboard alike.
    """
    from markdown_it import MarkdownIt

    rendered = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    rendered = rendered.replace("<pre>", f'<pre style="{_CODE_PRE}">')
    return _CODE_TAG.sub(f'<code style="{MONO}"', rendered)


# -- diffs -------------------------------------------------------------------------------------


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
        "h": f"color:{GREY};font-weight:bold",
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
            olds = [html.escape(x[1:]) for x in removed]
            news = [html.escape(x[1:]) for x in added]
            for n in range(min(len(removed), len(added))):
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


def counts_html(added: int, removed: int) -> str:
    return f'<span style="color:{OK}">+{added}</span> <span style="color:{BAD}">−{removed}</span>'


def file_diff_html(
    file: FileDiff, *, fold_lines: int = FOLD_LINES, title: str | None = None
) -> str:
    """One file's diff, folded in ``<details>`` when long; ``title`` (HTML) names it."""
    shown = file.lines[:MAX_LINES_PER_FILE]
    rows = "".join(_rows(shown))
    if len(file.lines) > len(shown):
        more = len(file.lines) - len(shown)
        rows += _row(" ", f"… {more} more lines in the text/plain output")
    if title is None:
        path = f'<code style="{MONO}">{html.escape(file.path)}</code>'
        title = f"{path} {counts_html(file.added, file.removed)}"
    is_open = "" if len(file.lines) > fold_lines else " open"
    return (
        f'<details{is_open} style="margin:2px 0"><summary style="cursor:pointer">'
        f'{title}</summary><pre style="{_PRE}">{rows}</pre></details>'
    )


def diff_html(diff: str, *, fold_lines: int = FOLD_LINES) -> str:
    """Every file of ``diff`` on its own, large ones folded with their +/- counts."""
    return "".join(file_diff_html(f, fold_lines=fold_lines) for f in split_files(diff))


# -- agents that passed a step on -----------------------------------------------------------------

_WHY = {"not_installed": "is not installed", "auth": "is not logged in"}


def fallback_line(from_agent: str, to_agent: str, kind: str) -> str:
    """``codex is not installed: claude took the step`` (the live cell and the summary)."""
    return f"{from_agent} {_WHY.get(kind, f'failed ({kind})')}: {to_agent} took the step"


def passed_over_text(agent: str, kind: str, reason: str) -> str:
    """One agent of an exhausted role list: ``codex is not installed (reason)``."""
    return f"{agent} {_WHY.get(kind, f'failed ({kind})')} ({reason})"


# -- results -------------------------------------------------------------------------------------


def step_html(step: StepResult) -> str:
    """A step's result: its summary line, changed files, text and error."""
    from .observe.redact import redact

    colour = OK if step.ok else BAD
    parts = [
        f'<div style="border-left:4px solid {colour};padding:4px 8px;font-family:sans-serif">',
        f"<b>{html.escape(step._summary_line())}</b>",
    ]
    if step.changes:
        items = "".join(
            f'<li><code style="{MONO}">{html.escape(c.kind)}</code> {html.escape(c.path)}</li>'
            for c in step.changes
        )
        parts.append(f'<ul style="margin:4px 0">{items}</ul>')
    if step.text:
        parts.append(markdown_html(redact(step.text)))
    if step.error is not None:
        parts.append(pre(redact(str(step.error)), colour=colour))
    parts.append(_tools_html(step))
    parts.append("</div>")
    return "".join(parts)


def _tools_html(step: StepResult, workspace: str | None = None) -> str:
    """The step's tool calls, folded: ✓/✗ and the tool's main argument (a path, a command)."""
    from .events import ToolCallEvent, ToolResultEvent

    outcome = {e.id: e.ok for e in step.events if isinstance(e, ToolResultEvent) and e.id}
    calls = [e for e in step.events if isinstance(e, ToolCallEvent)]
    if not calls:
        return ""
    marks = {True: "✓", False: "✗", None: "·"}
    items = "".join(
        f'<li>{marks[outcome.get(c.id) if c.id else None]} <code style="{MONO}">'
        f"{html.escape(c.name)}</code> "
        f"{html.escape(tool_detail(c.input, limit=100, within=workspace))}</li>"
        for c in calls
    )
    return (
        f'<details style="margin:2px 0"><summary style="cursor:pointer;color:{GREY}">'
        f"{plural(len(calls), 'tool call')}</summary>"
        f'<ul style="margin:2px 0">{items}</ul></details>'
    )


def result_html(result: WorkflowResult) -> str:
    """A run's result: summary, each step's answer (Markdown) with its tool calls folded, notes
    and every changed file's diff. The final answer is open; earlier steps are folded."""
    from .observe.redact import redact

    colour = OK if result.ok else BAD
    out = [
        f'<div style="border-left:4px solid {colour};padding:4px 8px;font-family:sans-serif">',
        f"<div><b>{html.escape(result.summary())}</b></div>",
    ]
    if result.error:
        # pre-wrap: the error's hint stays on its own line, as in the text form.
        error = html.escape(redact(str(result.error)))
        out.append(f'<div style="color:{colour};white-space:pre-wrap">{error}</div>')
    if result.plan and not result.steps:
        out.append(pre(str(result)))
    last = len(result.steps) - 1
    for i, step in enumerate(result.steps):
        body = [markdown_html(redact(step.text)) if step.text else ""]
        if step.error is not None:
            body.append(pre(redact(str(step.error)), colour=BAD))
        body.append(_tools_html(step, result.workspace))
        if not any(body):
            body = [f'<i style="color:{GREY}">no text</i>']
        final = i == last and step.ok and bool(step.text)
        out.append(
            f'<details{" open" if final else ""} style="margin:2px 0">'
            f'<summary style="cursor:pointer">{html.escape(redact(result.step_line(step)))}'
            f'</summary><div style="margin:2px 0 4px 12px">{"".join(body)}</div></details>'
        )
    if result.notes:
        items = "".join(f"<li>{html.escape(redact(n))}</li>" for n in result.notes)
        out.append(f'<ul style="margin:2px 0;color:{GREY}">{items}</ul>')
    if result.diff:
        diff = redact(result.diff)
        files = split_files(diff)
        added, removed = sum(f.added for f in files), sum(f.removed for f in files)
        out.append(
            f'<div style="margin-top:4px">{plural(len(files), "file")} changed, '
            f"{counts_html(added, removed)}</div>"
        )
        out.append(diff_html(diff))
    elif result.changes:
        items = "".join(
            f'<li><code style="{MONO}">{html.escape(c.kind)}</code> {html.escape(c.path)}</li>'
            for c in result.changes
        )
        out.append(f'<ul style="margin:2px 0">{items}</ul>')
    out.append("</div>")
    return "".join(out)


def result_bundle(result: WorkflowResult, include: Any = None, exclude: Any = None) -> Any:
    """What a notebook shows for ``result``: the same as its own ``_repr_mimebundle_``."""
    return result._repr_mimebundle_(include, exclude)


__all__ = [
    "FOLD_LINES",
    "MONO",
    "NOT_REPORTED",
    "REHEARSAL_MARK",
    "SCRIPTED",
    "FileDiff",
    "cost",
    "counts_html",
    "diff_html",
    "duration",
    "file_diff_html",
    "markdown_html",
    "number",
    "plural",
    "pre",
    "result_bundle",
    "result_html",
    "split_files",
    "step_html",
    "tokens_pair",
    "tool_detail",
    "usage_line",
    "usage_text",
]
