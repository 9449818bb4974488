"""The line magic's subcommands: ``%orchestrate agents|workflows|show|session|history|...``.

Each returns something that displays itself (text/plain, Markdown, HTML with inline styles) or
prints one line; a mistake raises ``UsageError`` naming what is accepted.
"""

from __future__ import annotations

import argparse
import html
import importlib
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..display import cost, number, one_line, tokens_pair
from ..errors import OrchestratorError
from ..publish import say

# The line magic's module is imported when the extension loads: sessions and exports (pydantic)
# are imported by the subcommands that use them.
if TYPE_CHECKING:
    from ..config import Settings
    from ..sessions import SessionStore

_METRICS_SERVER: Any = None  # the kernel's /metrics endpoint, if one was started

SUBCOMMANDS = (
    "agents",
    "workflows",
    "show WORKFLOW",
    "session new [NAME] [--conversation] | list | switch NAME | show [NAME] | reset",
    "session export [--format json|md|ipynb] PATH | import PATH | conversation on|off",
    "history",
    "config",
    "metrics [--raw | --serve PORT]",
    "dashboard",
    "trust [PATH] | trust --show [PATH] | trust --forget [PATH]",
)
KNOWN = (
    "agents",
    "workflows",
    "show",
    "session",
    "history",
    "config",
    "metrics",
    "dashboard",
    "trust",
)
SESSION_ACTIONS = ("new", "list", "switch", "show", "reset", "export", "import", "conversation")


def usage() -> str:
    return "usage: %orchestrate SUBCOMMAND\n" + "\n".join(f"  {s}" for s in SUBCOMMANDS)


@dataclass
class Text:
    """Plain text that also reads well as Markdown."""

    plain: str
    markdown: str | None = None

    def __str__(self) -> str:
        return self.plain

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {
            "text/plain": self.plain,
            "text/markdown": self.markdown or f"```\n{self.plain}\n```",
        }


@dataclass
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    title: str = ""

    def __str__(self) -> str:
        cells = [list(self.headers), *[list(r) for r in self.rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.headers))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in cells
        ]
        return "\n".join(([self.title] if self.title else []) + lines)

    def _markdown(self) -> str:
        def row(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        lines = [row(self.headers), "|" + "---|" * len(self.headers)]
        lines += [row(r) for r in self.rows]
        return "\n".join(([f"**{self.title}**", ""] if self.title else []) + lines)

    def _html(self) -> str:
        pad = 'style="text-align:left;padding:2px 8px"'
        head = "".join(f"<th {pad}>{html.escape(h)}</th>" for h in self.headers)
        body = "".join(
            "<tr>" + "".join(f"<td {pad}>{html.escape(c)}</td>" for c in r) + "</tr>"
            for r in self.rows
        )
        title = f"<div><b>{html.escape(self.title)}</b></div>" if self.title else ""
        return f"{title}<table><tr>{head}</tr>{body}</table>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {
            "text/plain": str(self),
            "text/markdown": self._markdown(),
            "text/html": self._html(),
        }


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit the kernel
        raise UsageError(f"{self.prog}: {message}")


def _turns(n: int) -> str:
    return f"{n} turn" if n == 1 else f"{n} turns"


def _find_dashboard() -> Callable[..., Any] | None:
    """``orchestrator_nb.dashboard.dashboard`` where that module exists."""
    try:
        module = importlib.import_module("orchestrator_nb.dashboard")
    except ImportError:
        return None
    found: Callable[..., Any] | None = getattr(module, "dashboard", None)
    return found


def metrics_view(summary: Any) -> Table:
    """``%orchestrate metrics``: one line per agent; the raw series are behind ``--raw``."""
    rows = []
    for a in summary.agents:
        errors = ", ".join(f"{n} {kind}" for kind, n in sorted((a.errors or {}).items()))
        rows.append(
            (
                a.agent,
                ", ".join(a.models) or "—",
                number(a.calls),
                tokens_pair(a.input_tokens, a.output_tokens),
                number(a.cached_tokens),
                cost(a.cost_usd),
                errors or "0",
            )
        )
    runs, bad = summary.runs, summary.runs_not_completed
    title = (
        f"metrics of this kernel: {number(runs)} run{'' if runs == 1 else 's'} "
        f"({number(bad)} not completed), {number(summary.retries)} "
        f"retr{'y' if summary.retries == 1 else 'ies'}"
        + ("" if rows else "; no agent has run yet")
        + " — every series: %orchestrate metrics --raw"
    )
    headers = ("agent", "model", "calls", "tokens in / out", "cached", "cost", "errors")
    return Table(headers, rows, title)


class Commands:
    """The subcommands, bound to a session store and a way to load the settings."""

    def __init__(
        self,
        store: SessionStore,
        settings: Callable[[], Settings],
        *,
        find_dashboard: Callable[[], Callable[..., Any] | None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.find_dashboard = find_dashboard or _find_dashboard

    def __call__(self, line: str) -> Any:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"cannot read the line: {exc}") from None
        if not words or words[0] in ("help", "-h", "--help"):
            return Text(usage())
        name, rest = words[0], words[1:]
        if name not in KNOWN:
            raise UsageError(f"unknown subcommand {name!r}; known: {', '.join(KNOWN)}\n{usage()}")
        try:
            return getattr(self, f"do_{name}")(rest)
        except OrchestratorError as exc:
            raise UsageError(str(exc)) from None

    def do_agents(self, rest: list[str]) -> Any:
        from ..agents.availability import status

        return status(self.settings())

    def do_workflows(self, rest: list[str]) -> Table:
        flows = self.settings().workflows
        rows = [(n, str(len(w.steps)), one_line(w.description or "", 80)) for n, w in flows.items()]
        return Table(("workflow", "steps", "description"), rows)

    def do_show(self, rest: list[str]) -> Text:
        if len(rest) != 1:
            raise UsageError("usage: %orchestrate show WORKFLOW")
        from ..workflow.engine import Engine
        from ..workflow.result import WorkflowResult

        settings = self.settings()
        if rest[0] not in settings.workflows:
            known = ", ".join(sorted(settings.workflows))
            raise UsageError(f"unknown workflow {rest[0]!r}; known: {known}")
        plan = Engine(settings).plan("<the cell body>", rest[0])
        shown = WorkflowResult("dry-run", rest[0], "", "completed", plan=plan)
        description = settings.workflows[rest[0]].description
        plain = f"{description}\n{shown}" if description else str(shown)
        return Text(plain)

    def do_history(self, rest: list[str]) -> Table:
        session = self.store.current
        rows = []
        for t in session.turns:
            u = t.usage
            tokens = tokens_pair(u.input_tokens, u.output_tokens)
            mark = "↪ " if t.followup else ""
            spent = cost(u.cost_usd) + (" (rehearsal, scripted)" if t.rehearsal else "")
            row = (t.what, t.outcome, tokens, spent, mark + one_line(t.task, 60))
            rows.append((str(t.number), *row))
        title = f"session {session.name!r}: {_turns(len(rows))}"
        return Table(("#", "ran", "outcome", "tokens in/out", "cost", "task"), rows, title)

    def do_config(self, rest: list[str]) -> Text:
        s = self.settings()
        lines = ["sources:", *[f"  {src}" for src in s.sources], "agents:"]
        for name, a in s.agents.items():
            lines.append(
                f"  {name}: driver={a.driver} model={a.model or '(CLI default)'} "
                f"timeout={a.timeout:g}s idle_timeout={a.idle_timeout}s retries={a.retries}"
            )
        lines.append(f"workflows: {', '.join(s.workflows)}")
        limits = ", ".join(f"{k}={v}" for k, v in s.limits.model_dump().items())
        lines.append(f"limits: {limits}")
        return Text("\n".join(lines))

    def do_metrics(self, rest: list[str]) -> Any:
        """Per agent: model, calls, tokens, cost, errors; ``--raw``: the Prometheus text."""
        from ..observe import metrics as observe

        if rest == ["--raw"]:
            return Text(observe.get_metrics().exposition().decode("utf-8"))
        if rest:
            if len(rest) != 2 or rest[0] != "--serve" or not rest[1].isdigit():
                raise UsageError(
                    "usage: %orchestrate metrics [--raw | --serve PORT]  (PORT 0: any free)"
                )
            global _METRICS_SERVER
            if _METRICS_SERVER is not None:  # one endpoint per kernel: the new port replaces it
                _METRICS_SERVER.stop()
            _METRICS_SERVER = observe.serve_metrics(int(rest[1]))
            say(f"serving metrics at {_METRICS_SERVER.url} (127.0.0.1 only)")
            return None
        return metrics_view(observe.usage_summary())

    def do_dashboard(self, rest: list[str]) -> Any:
        make = self.find_dashboard()
        if make is None:
            say("the dashboard is not available yet; use %orchestrate history and session show")
            return None
        where = self.store.current.workspace
        return make(store=self.store, workspace=where if where and Path(where).is_dir() else ".")

    def do_trust(self, rest: list[str]) -> Any:
        """Show what a workspace can change about what runs, then trust it (or show, forget)."""
        from .. import trust_store

        flags = [w for w in rest if w.startswith("--")]
        paths = [w for w in rest if not w.startswith("--")]
        if len(paths) > 1 or any(f not in ("--show", "--forget") for f in flags) or len(flags) > 1:
            raise UsageError("usage: %orchestrate trust [--show | --forget] [PATH]")
        where = self.store.current.workspace
        path = paths[0] if paths else (where if where and Path(where).is_dir() else ".")
        if not Path(path).is_dir():
            raise UsageError(f"{path!r} is not an existing folder")
        if flags == ["--show"]:
            return trust_store.report(path)
        if flags == ["--forget"]:
            return trust_store.untrust(path)
        before = trust_store.report(path)
        say("trusting:\n" + "\n".join(before.lines()[1:]))
        return trust_store.trust(path)

    # -- sessions -------------------------------------------------------------------------

    def do_session(self, rest: list[str]) -> Any:
        if not rest or rest[0] not in SESSION_ACTIONS:
            got = f" {rest[0]!r}" if rest else ""
            raise UsageError(
                f"unknown session action{got}; known: {', '.join(SESSION_ACTIONS)}\n{usage()}"
            )
        return getattr(self, f"_session_{rest[0]}")(rest[1:])

    def _session_new(self, rest: list[str]) -> None:
        parser = _Parser(prog="%orchestrate session new", add_help=False)
        parser.add_argument("name", nargs="?")
        parser.add_argument("--conversation", action="store_true")
        args = parser.parse_args(rest)
        session = self.store.new(args.name, conversation=args.conversation)
        mode = " in conversation mode" if session.conversation else ""
        say(f"new session {session.name!r}{mode}; it is now current")

    def _session_list(self, rest: list[str]) -> Table:
        current = self.store.current.id
        rows = [
            ("*" if s.id == current else "", s.name, s.id, str(len(s.turns)), s.updated_at)
            for s in self.store.sessions
        ]
        return Table(("", "session", "id", "turns", "updated"), rows)

    def _session_switch(self, rest: list[str]) -> None:
        if len(rest) != 1:
            raise UsageError("usage: %orchestrate session switch NAME")
        session = self.store.switch(rest[0])
        say(f"current session: {session.name!r} ({_turns(len(session.turns))})")

    def _session_show(self, rest: list[str]) -> Text:
        from .export import to_markdown

        session = self.store.get(rest[0]) if rest else self.store.current
        lines = [str(session)]
        for turn in session.turns:
            lines.append(f"  turn {turn.number} task: {one_line(turn.task, 100)}")
        return Text("\n".join(lines), to_markdown(session))

    def _session_reset(self, rest: list[str]) -> None:
        session = self.store.current
        n = len(session.turns)
        session.reset()
        say(f"session {session.name!r} reset: {_turns(n)} removed")

    def _session_conversation(self, rest: list[str]) -> None:
        if rest not in (["on"], ["off"]):
            raise UsageError("usage: %orchestrate session conversation on|off")
        session = self.store.current
        session.conversation = rest[0] == "on"
        session.autosave()
        say(f"conversation mode {rest[0]} for session {session.name!r}")

    def _session_export(self, rest: list[str]) -> None:
        from .export import FORMATS, export_session

        parser = _Parser(prog="%orchestrate session export", add_help=False)
        parser.add_argument("--format", choices=FORMATS)
        parser.add_argument("path")
        args = parser.parse_args(rest)
        session = self.store.current
        path, fmt = export_session(session, args.path, args.format)
        say(f"exported session {session.name!r} ({_turns(len(session.turns))}) as {fmt} to {path}")

    def _session_import(self, rest: list[str]) -> None:
        if len(rest) != 1:
            raise UsageError("usage: %orchestrate session import PATH")
        session = self.store.import_file(Path(rest[0]).expanduser())
        say(f"imported session {session.name!r} ({_turns(len(session.turns))}); it is now current")


__all__ = ["KNOWN", "SUBCOMMANDS", "Commands", "Table", "Text", "usage"]
