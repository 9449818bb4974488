"""A session as a file: JSON (schema-versioned, importable), a Markdown transcript, ``.ipynb``.

An exported notebook re-runs what happened: each turn's cell carries the options it ran with —
``--workspace`` (the folder, as resolved when it ran) and ``--rehearse`` for a rehearsal —
so re-running the export of a rehearsal rehearses again, in the same folder, instead of calling
the real agents at real cost in whatever folder the notebook is opened from. Every format says
which turns were rehearsals and that their tokens and cost are scripted (JSON: each turn's
``rehearsal``).

The notebook is built as plain nbformat-4.5 JSON, without importing nbformat: its import and
per-cell validation made a two-turn export take seconds (a 1,000-turn one 3.2 s against 0.1 s
for JSON); the tests validate what this writes.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from ..display import usage_line
from ..errors import ConfigError
from ..sessions import Session, StepRecord, Turn, atomic_write_text

Format = Literal["json", "md", "ipynb"]
FORMATS: tuple[Format, ...] = ("json", "md", "ipynb")
_SUFFIXES: dict[str, Format] = {".json": "json", ".md": "md", ".markdown": "md", ".ipynb": "ipynb"}
SCRIPTED = "scripted by the rehearsal, nothing spent"
_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def format_for(path: str | os.PathLike[str], fmt: str | None = None) -> Format:
    """The explicit format, else the one the file name suggests, else JSON."""
    if fmt is None:
        return _SUFFIXES.get(Path(path).suffix.lower(), "json")
    if fmt not in FORMATS:
        raise ConfigError(
            f"unknown export format {fmt!r}", key="format", hint=f"accepted: {', '.join(FORMATS)}"
        )
    return fmt


def _usage(turn: Turn, line: str) -> str:
    return f"{line} ({SCRIPTED})" if turn.rehearsal else line


def rehearsal_note(turn: Turn) -> str:
    """One sentence for a rehearsed turn (empty for a real one)."""
    if not turn.rehearsal:
        return ""
    return (
        f"Rehearsal `{turn.rehearsal}`: the real CLIs ran against a scripted model on "
        f"127.0.0.1; tokens and cost are {SCRIPTED}."
    )


def _step_md(turn: Turn, step: StepRecord) -> list[str]:
    status = "ok" if step.ok else f"failed ({step.error_kind})"
    lines = [f"### {step.label}: {status}, {_usage(turn, usage_line(step.usage.to_usage()))}", ""]
    if step.native_session_id:
        lines += [f"native session: `{step.native_session_id}`", ""]
    if step.text:
        lines += [step.text.rstrip(), ""]
    if step.error:
        lines += [f"> error: {step.error}", ""]
    if step.changes:
        lines += [f"- {c.kind} `{c.path}`" for c in step.changes] + [""]
    if step.diff:
        lines += ["```diff", step.diff.rstrip("\n"), "```", ""]
    return lines


def _turn_md(turn: Turn) -> list[str]:
    mark = " (rehearsal)" if turn.rehearsal else ""
    head = f"## Turn {turn.number}: {turn.what} — {turn.outcome}{mark}"
    where = f" · workspace `{turn.workspace}`" if turn.workspace else ""
    lines = [head, "", f"*{turn.started_at}*" + (" · follow-up" if turn.followup else "") + where]
    lines.append("")
    if turn.rehearsal:
        lines += [f"*{rehearsal_note(turn)}*", ""]
    lines += ["> " + line if line else ">" for line in turn.task.splitlines()] + [""]
    if turn.error:
        lines += [f"**error:** {turn.error}", ""]
    for step in turn.steps:
        lines += _step_md(turn, step)
    return lines


def to_markdown(session: Session) -> str:
    """A readable transcript: every turn's task, each step's answer, changes and diff."""
    lines = [
        f"# Session {session.name}",
        "",
        f"id `{session.id}`, created {session.created_at}",
        "",
    ]
    for turn in session.turns:
        lines += _turn_md(turn)
    return "\n".join(lines).rstrip() + "\n"


def _option(value: str) -> str:
    # Quoted for the magic's parser (IPython splits the line without removing quotes; the
    # magic takes one pair off); `$` and braces doubled so that IPython's expansion of the magic
    # line gives the value back as it was.
    if not _SAFE.fullmatch(value):
        mark = "'" if '"' in value else '"'
        value = f"{mark}{value}{mark}"
    return value.replace("$", "$$").replace("{", "{{").replace("}", "}}")


def magic_line(turn: Turn) -> str:
    """The ``%%orchestrate`` line that runs ``turn`` again as it ran."""
    parts = ["%%orchestrate"]
    if turn.agent:
        parts += ["-a", _option(turn.agent)]
    else:
        parts += ["-w", _option(turn.workflow or "default")]
    if turn.workspace:
        parts += ["--workspace", _option(turn.workspace)]
    if turn.rehearsal:
        parts += ["--rehearse", _option(turn.rehearsal)]
    if turn.followup:
        parts.append("--followup")
    elif turn.number > 1:
        parts.append("--new")  # as decided then, not by the heuristic on a re-run
    return " ".join(parts)


def _cell_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)[:64]


def _header(session: Session) -> str:
    text = (
        f"# Session {session.name}\n\nExported from orchestrator-nb: run the cells to run "
        "each turn again, in the workspace it ran in."
    )
    rehearsed = [t.number for t in session.turns if t.rehearsal]
    if rehearsed:
        which = (
            "every turn"
            if len(rehearsed) == len(session.turns)
            else ("turn" + ("s " if len(rehearsed) > 1 else " ") + ", ".join(map(str, rehearsed)))
        )
        text += (
            f"\n\n**Rehearsal:** {which} ran under rehearsal (`--rehearse`): running the cell "
            f"again rehearses again; its tokens and cost are {SCRIPTED}."
        )
    real = [t.number for t in session.turns if not t.rehearsal]
    if real:
        text += (
            "\n\n**Real runs:** running "
            + ("a cell" if rehearsed else "the cells")
            + " without `--rehearse` calls the real agents, at real cost."
        )
    return text


def to_notebook(session: Session) -> dict[str, Any]:
    """An nbformat 4.5 notebook as a dict: a code cell per turn (re-runnable) with its result."""
    cells: list[dict[str, Any]] = [
        {"cell_type": "markdown", "id": "session", "metadata": {}, "source": _header(session)},
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "load-ext",
            "metadata": {},
            "outputs": [],
            "source": "%load_ext orchestrator_nb",
        },
    ]
    for turn in session.turns:
        text = turn.text
        plain = turn.summary() + ("\n\n" + text if text else "")
        output = {
            "output_type": "execute_result",
            "execution_count": turn.number,
            "data": {"text/plain": plain, "text/markdown": "\n".join(_turn_md(turn))},
            "metadata": {},
        }
        cells.append(
            {
                "cell_type": "code",
                "execution_count": turn.number,
                "id": _cell_id(f"turn-{turn.number}"),
                "metadata": {},
                "outputs": [output],
                "source": f"{magic_line(turn)}\n{turn.task}",
            }
        )
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
            "orchestrator_nb": {"session_id": session.id, "session_name": session.name},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def export_session(
    session: Session, path: str | os.PathLike[str], fmt: str | None = None
) -> tuple[Path, Format]:
    """Write ``session`` to ``path`` (atomically) as JSON, Markdown or a notebook."""
    target = Path(path).expanduser()
    chosen = format_for(target, fmt)
    if chosen == "json":
        session.save(target)
    elif chosen == "md":
        atomic_write_text(target, to_markdown(session))
    else:
        text = json.dumps(to_notebook(session), indent=1, ensure_ascii=False)
        atomic_write_text(target, text + "\n")
    return target, chosen


__all__ = [
    "FORMATS",
    "SCRIPTED",
    "export_session",
    "format_for",
    "magic_line",
    "rehearsal_note",
    "to_markdown",
    "to_notebook",
]
