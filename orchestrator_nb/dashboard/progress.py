"""Live progress of the panel's run: one row per step, one output tab per agent, status lines.

:class:`Progress` is a lifecycle subscriber that only records (under a lock) and pokes the
panel's throttle; the panel renders what it recorded with :meth:`Progress.table_html`. The
per-agent text comes from the notebook's :class:`~orchestrator_nb.notebook.live.LiveDisplay`
(the same Markdown areas a ``%%orchestrate`` cell shows), collected by :class:`AgentTabs`.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..display import REHEARSAL_MARK, cost, duration, tokens_pair
from ..events import Usage, UsageEvent
from ..lifecycle import (
    AgentEventEmitted,
    AgentFallback,
    GateDecided,
    GateRequested,
    LifecycleEvent,
    StepFinished,
    StepStarted,
)
from ..notebook.live import Bundle, LiveDisplay

_OK, _BAD, _GREY, _RUN = "#1a7f37", "#cf222e", "#57606a", "#9a6700"
_CELL = "text-align:left;padding:2px 8px;border-bottom:1px solid #d0d7de"


@dataclass
class StepRow:
    step_id: str
    agent: str | None
    kind: str
    iteration: int | None
    started: float
    status: str = "running"
    duration_s: float | None = None
    usage: Usage = field(default_factory=Usage)

    @property
    def key(self) -> tuple[str, int | None]:
        return (self.step_id, self.iteration)

    def elapsed(self, now: float) -> float:
        return self.duration_s if self.duration_s is not None else max(now - self.started, 0.0)

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "step": self.step_id,
            "agent": self.agent,
            "iteration": self.iteration,
            "status": self.status,
            "elapsed_s": round(self.elapsed(now), 1),
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "cost_usd": self.usage.cost_usd,
        }


class Progress:
    """Records steps as the engine reports them; thread-safe, renders nothing itself."""

    def __init__(
        self, on_change: Callable[[], None], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: list[StepRow] = []
        self._running: dict[tuple[str, int | None], StepRow] = {}

    def reset(self) -> None:
        with self._lock:
            self._rows, self._running = [], {}

    def __call__(self, event: LifecycleEvent) -> None:
        with self._lock:
            changed = self._record(event)
        if changed:
            self._on_change()

    def _record(self, event: LifecycleEvent) -> bool:
        if isinstance(event, StepStarted) and event.kind in ("agent", "gate"):
            row = StepRow(event.step_id, event.agent, event.kind, event.iteration, self._clock())
            self._rows.append(row)
            self._running[row.key] = row
            return True
        if isinstance(event, StepFinished):
            self._finish(event)
            return True
        if not isinstance(event, (AgentEventEmitted, AgentFallback, GateRequested, GateDecided)):
            return False
        found = self._find(event.step_id)
        if found is None:
            return False
        if isinstance(event, AgentFallback):  # the role's next agent took the step
            found.agent = event.to_agent
        elif isinstance(event, AgentEventEmitted):
            if not isinstance(event.event, UsageEvent):
                return False
            found.usage = event.event.usage
        elif isinstance(event, GateRequested):
            found.status = "waiting for a decision"
        else:
            found.status, found.duration_s = f"{event.decision} ({event.by})", 0.0
        return True

    def _find(self, step_id: str) -> StepRow | None:
        return next((r for r in reversed(self._running.values()) if r.step_id == step_id), None)

    def _finish(self, event: StepFinished) -> None:
        result = event.result
        row = self._running.pop((event.step_id, event.iteration), None)
        if row is None:
            row = self._running.pop((event.step_id, result.iteration), None)
        if row is None:  # cached, resumed or skipped: it never started here
            row = StepRow(event.step_id, event.agent, "agent", event.iteration, self._clock())
            self._rows.append(row)
        row.agent = event.agent or row.agent  # the agent that ran it, a fallback's too
        row.status = "ok" if result.ok else f"failed ({result.error_kind})"
        if result.error_kind == "cancelled":
            row.status = "cancelled"
        if event.cached or result.cached:
            row.status += ", cached"
        if result.skipped:
            row.status = "skipped"
        # The engine times the last attempt; the row shows the whole wait the user saw.
        row.duration_s = max(result.duration_s, self._clock() - row.started)
        row.usage = result.usage

    def stop_running(self, status: str = "stopped") -> None:
        """Mark what still runs (a cancelled or crashed run) so no row keeps ticking."""
        now = self._clock()
        with self._lock:
            for row in self._running.values():
                row.status, row.duration_s = status, row.elapsed(now)
            self._running.clear()

    @property
    def running(self) -> bool:
        with self._lock:
            return bool(self._running)

    def rows(self) -> list[dict[str, Any]]:
        now = self._clock()
        with self._lock:
            return [r.as_dict(now) for r in self._rows]

    def table_html(self) -> str:
        rows = self.rows()
        if not rows:
            return f'<div style="color:{_GREY}">no steps yet</div>'
        heads = ("step", "agent", "status", "elapsed", "tokens in / out", "cost")
        head = "".join(f'<th style="{_CELL}">{h}</th>' for h in heads)
        body = []
        for r in rows:
            status = str(r["status"])
            colour = _OK if status.startswith("ok") else _RUN if status == "running" else _BAD
            if status.startswith(("skipped", "approve", "waiting", "cancelled", "stopped")):
                colour = _GREY
            step = r["step"] + (f" #{r['iteration']}" if r["iteration"] else "")
            cells = (
                html.escape(step),
                html.escape(r["agent"] or "-"),
                f'<span style="color:{colour}">{html.escape(status)}</span>',
                duration(r["elapsed_s"]),
                tokens_pair(r["input_tokens"], r["output_tokens"]),
                cost(r["cost_usd"]),
            )
            body.append("<tr>" + "".join(f'<td style="{_CELL}">{c}</td>' for c in cells) + "</tr>")
        return (
            '<table style="border-collapse:collapse;font-size:90%">'
            f"<tr>{head}</tr>{''.join(body)}</table>"
        )


class AgentTabs:
    """A :class:`~orchestrator_nb.notebook.live.DisplaySink` that sorts step areas by agent.

    ``live`` must be set to the LiveDisplay feeding this sink: it knows which agent a display
    id belongs to. Areas are only recorded here; the panel copies them into its widgets.
    """

    live = True

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._lock = threading.Lock()
        self.display: LiveDisplay | None = None
        self._areas: dict[str, dict[str, Bundle]] = {}  # agent -> display id -> bundle

    def reset(self) -> None:
        with self._lock:
            self._areas = {}

    def _agent_of(self, display_id: str) -> str:
        steps = self.display.steps if self.display is not None else []
        step = next((s for s in steps if s.display_id == display_id), None)
        return (step.agent or step.step_id) if step is not None else "run"

    def show(self, display_id: str, bundle: Bundle) -> None:
        agent = self._agent_of(display_id)
        with self._lock:
            for other in [a for a, areas in self._areas.items() if a != agent]:
                # The step passed to another agent (a role's fallback): its area moves along.
                if self._areas[other].pop(display_id, None) is not None and not self._areas[other]:
                    del self._areas[other]
            self._areas.setdefault(agent, {})[display_id] = bundle
        self._on_change()

    def update(self, display_id: str, bundle: Bundle) -> None:
        if not bundle.get("text/plain") and len(bundle) == 1:
            return  # LiveDisplay.close(clear=True) blanks areas; the panel keeps them
        self.show(display_id, bundle)

    def agents(self) -> list[str]:
        with self._lock:
            return list(self._areas)

    def outputs(self, agent: str) -> tuple[dict[str, Any], ...]:
        """The agent's areas as Output-widget outputs, in the order its steps started."""
        with self._lock:
            bundles = list(self._areas.get(agent, {}).values())
        return tuple(
            {"output_type": "display_data", "data": dict(b), "metadata": {}} for b in bundles
        )

    def text(self, agent: str) -> str:
        with self._lock:
            return "\n\n".join(b.get("text/plain", "") for b in self._areas.get(agent, {}).values())


def status_html(
    status: str,
    elapsed: float | None,
    summary: str | None,
    note: str,
    *,
    rehearsal: str | None = None,
) -> str:
    """The line beside Run and Stop: the status, then the elapsed time or the run's summary;
    ``rehearsal``: the scenario a running run answers from (nothing real is called)."""
    colour = {"completed": _OK, "running": _RUN, "stopping": _RUN, "idle": _GREY}.get(status, _BAD)
    parts = [f'<b style="color:{colour}">{html.escape(status)}</b>']
    if rehearsal:
        parts[0] += f" ({REHEARSAL_MARK}: {html.escape(rehearsal)}, nothing real is called)"
    if elapsed is not None:
        parts.append(duration(elapsed))
    elif summary is not None:
        parts.append(html.escape(summary))
    if note:
        parts.append(f'<span style="color:{_GREY}">{html.escape(note)}</span>')
    return " · ".join(parts)


def error_html(message: str) -> str:
    return (
        f'<div style="color:{_BAD};border-left:4px solid {_BAD};padding:2px 8px;'
        f'white-space:pre-wrap">⚠ {html.escape(message)}</div>'
    )


def section_html(title: str) -> str:
    return (
        '<div style="margin-top:6px;border-bottom:1px solid #d0d7de">'
        f"<b>{html.escape(title)}</b></div>"
    )


__all__ = ["AgentTabs", "Progress", "StepRow", "error_html", "section_html", "status_html"]
