"""The session's turns with Export, and a small metrics summary.

History is the kernel's :class:`~orchestrator_nb.sessions.Session` (shared with the
``%%orchestrate`` magic), exported by :func:`~orchestrator_nb.notebook.export.export_session`.
The metrics are the process-wide ones of :mod:`orchestrator_nb.observe`, which every run feeds
for every run (the panel's and the magic's alike).
"""

from __future__ import annotations

import html
import importlib
from pathlib import Path
from typing import Any

from ..display import cost, number, one_line, plural, tokens_pair, usage_line
from ..events import Usage
from ..notebook.export import FORMATS, export_session
from ..publish import html_widget, set_value
from ..sessions import Session
from .dispatch import Dispatcher, set_if_changed
from .layout import column, flexible, row, scroll_x

_GREY = "#57606a"
_CELL = "text-align:left;padding:2px 8px;border-bottom:1px solid #d0d7de"


def history_html(session: Session) -> str:
    turns = list(session.turns)
    mode = ", conversation mode" if session.conversation else ""
    title = f"<b>session {html.escape(session.name)}</b>: {plural(len(turns), 'turn')}{mode}"
    if not turns:
        return f'<div>{title}</div><div style="color:{_GREY}">no runs yet</div>'
    head = "".join(
        f'<th style="{_CELL}">{h}</th>'
        for h in ("#", "ran", "outcome", "tokens in / out", "cost", "task")
    )
    rows = []
    for t in turns:
        u = t.usage
        mark = "↪ " if t.followup else ""
        cells = (
            str(t.number),
            html.escape(t.what),
            html.escape(t.outcome),
            tokens_pair(u.input_tokens, u.output_tokens),
            cost(u.cost_usd),
            html.escape(mark + one_line(t.task, 70)),
        )
        rows.append("<tr>" + "".join(f'<td style="{_CELL}">{c}</td>' for c in cells) + "</tr>")
    table = '<table style="border-collapse:collapse;font-size:90%">'
    return f"<div>{title}</div>" + scroll_x(f"{table}<tr>{head}</tr>{''.join(rows)}</table>")


def metrics_summary() -> dict[str, Any] | None:
    """Totals over the process-wide metrics (those of ``%orchestrate metrics``, added up over
    its agents), or None when observability is not installed. ``agents``: each agent and
    whether it reported a cost, so the line can say whom the cost covers."""
    try:
        metrics_mod: Any = importlib.import_module("orchestrator_nb.observe.metrics")
    except ImportError:
        return None
    summary = metrics_mod.usage_summary()
    costs = [a.cost_usd for a in summary.agents if a.cost_usd is not None]
    return {
        "runs": summary.runs,
        "runs_failed": summary.runs_not_completed,
        "agent_calls": sum(a.calls for a in summary.agents),
        "agent_errors": sum(a.error_count for a in summary.agents),
        "input_tokens": sum(a.input_tokens for a in summary.agents),
        "output_tokens": sum(a.output_tokens for a in summary.agents),
        "cost_usd": sum(costs) if costs else None,
        "retries": summary.retries,
        "agents": {a.agent: a.cost_usd is not None for a in summary.agents},
    }


def metrics_html(totals: dict[str, Any] | None) -> str:
    if totals is None:
        return (
            f'<span style="color:{_GREY}">metrics unavailable (no orchestrator_nb.observe)</span>'
        )
    total = Usage(
        int(totals["input_tokens"]), int(totals["output_tokens"]), cost_usd=totals["cost_usd"]
    )
    # A rehearsal's scripted cost is never counted here, so an agent only rehearsed is one
    # whose cost is "not reported": the line names whom a dollar figure covers.
    covers: dict[str, bool] = totals.get("agents", {})
    parts = [
        f"<b>{plural(totals['runs'], 'run')}</b>, {number(totals['runs_failed'])} not completed",
        f"<b>{plural(totals['agent_calls'], 'agent call')}</b>, "
        f"{number(totals['agent_errors'])} failed",
        plural(totals["retries"], "retry", "retries"),
        html.escape(usage_line(total, covers)),
    ]
    return (
        '<div style="font-size:90%">metrics (this kernel): '
        + " · ".join(parts)
        + f' <span style="color:{_GREY}">— <code>%orchestrate metrics</code> has every series'
        + "</span></div>"
    )


class HistoryPanel:
    """The session's turns, an Export row, and the metrics line."""

    def __init__(self, dispatcher: Dispatcher, session: Session, workspace: Path) -> None:
        import ipywidgets as widgets

        self.session = session
        self.workspace = workspace
        self.table = html_widget(history_html(session))
        self.path = flexible(
            widgets.Text(
                value=f"session-{session.name}.md",
                description="Export to",
                tooltip="a path; relative paths are inside the workspace",
            ),
            "260px",
            grow=3,
        )
        self.format = flexible(
            widgets.Dropdown(options=list(FORMATS), value="md", description="as"), "110px"
        )
        self.format.style.description_width = "24px"
        self.export_button = widgets.Button(
            description="Export", icon="download", tooltip="write the session's turns to the file"
        )
        self.export_button.layout.width = "auto"
        self.export_button.on_click(dispatcher.wrap("export", self.export))
        self.note = flexible(widgets.HTML(""), "200px")
        self.metrics = html_widget(metrics_html(metrics_summary()))
        self.box = column(
            [self.table, row([self.path, self.format, self.export_button, self.note]), self.metrics]
        )

    def refresh(self) -> None:
        set_if_changed(self.table, value=history_html(self.session))
        set_if_changed(self.metrics, value=metrics_html(metrics_summary()))

    def export(self) -> Path:
        """Write the session to the path in the box, as the chosen format."""
        raw = self.path.value.strip()
        if not raw:
            raise ValueError("the export path is empty: type a file name, e.g. session.md")
        target = Path(raw).expanduser()
        if not target.is_absolute():
            target = self.workspace / target
        path, fmt = export_session(self.session, target, self.format.value)
        turns = plural(len(self.session.turns), "turn")
        set_value(
            self.note,
            f'<span style="color:{_GREY}">exported {turns} as {fmt} '
            f"to <code>{html.escape(str(path))}</code></span>",
        )
        return path


__all__ = ["HistoryPanel", "history_html", "metrics_html", "metrics_summary"]
