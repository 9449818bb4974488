"""A session as a file: JSON (schema-versioned, importable), a Markdown transcript, ``.ipynb``."""

from __future__ import annotations

import os
from importlib import import_module
from pathlib import Path
from typing import Any, Literal

from ..display import usage_line
from ..errors import ConfigError
from ..sessions import Session, StepRecord, Turn, atomic_write_text

Format = Literal["json", "md", "ipynb"]
FORMATS: tuple[Format, ...] = ("json", "md", "ipynb")
_SUFFIXES: dict[str, Format] = {".json": "json", ".md": "md", ".markdown": "md", ".ipynb": "ipynb"}


def format_for(path: str | os.PathLike[str], fmt: str | None = None) -> Format:
    """The explicit format, else the one the file name suggests, else JSON."""
    if fmt is None:
        return _SUFFIXES.get(Path(path).suffix.lower(), "json")
    if fmt not in FORMATS:
        raise ConfigError(
            f"unknown export format {fmt!r}", key="format", hint=f"accepted: {', '.join(FORMATS)}"
        )
    return fmt


def _step_md(step: StepRecord) -> list[str]:
    status = "ok" if step.ok else f"failed ({step.error_kind})"
    lines = [f"### {step.label}: {status}, {usage_line(step.usage.to_usage())}", ""]
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
    head = f"## Turn {turn.number}: {turn.what} — {turn.outcome}"
    lines = [head, "", f"*{turn.started_at}*" + (" · follow-up" if turn.followup else ""), ""]
    lines += ["> " + line if line else ">" for line in turn.task.splitlines()] + [""]
    if turn.error:
        lines += [f"**error:** {turn.error}", ""]
    for step in turn.steps:
        lines += _step_md(step)
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


def _magic_line(turn: Turn) -> str:
    parts = ["%%orchestrate"]
    parts += ["-a", turn.agent] if turn.agent else ["-w", turn.workflow or "default"]
    if turn.followup:
        parts.append("--followup")
    return " ".join(parts)


def to_notebook(session: Session) -> Any:
    """An nbformat v4 notebook: a code cell per turn (re-runnable) with its result as output."""
    nbformat: Any = import_module("nbformat")
    v4: Any = import_module("nbformat.v4")
    cells = [
        v4.new_markdown_cell(
            f"# Session {session.name}\n\nExported from orchestrator-nb; "
            "run `%load_ext orchestrator_nb` first to run the cells again."
        )
    ]
    for turn in session.turns:
        summary = turn.summary()
        text = turn.text
        plain = summary + ("\n\n" + text if text else "")
        md = "\n".join(_turn_md(turn))
        output = v4.new_output(
            "execute_result",
            data={"text/plain": plain, "text/markdown": md},
            execution_count=turn.number,
        )
        cell = v4.new_code_cell(
            f"{_magic_line(turn)}\n{turn.task}", execution_count=turn.number, outputs=[output]
        )
        cells.append(cell)
    nb = v4.new_notebook(cells=cells)
    nb.metadata["orchestrator_nb"] = {"session_id": session.id, "session_name": session.name}
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.validate(nb)
    return nb


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
        nbformat: Any = import_module("nbformat")
        atomic_write_text(target, nbformat.writes(to_notebook(session)))
    return target, chosen


__all__ = ["FORMATS", "export_session", "format_for", "to_markdown", "to_notebook"]
