"""Live output: one display area per step, updated in place while the agents work.

:class:`LiveDisplay` is a lifecycle subscriber. Each agent step gets its own area (a display
handle in the cell, or a child widget of a background run's box) showing the agent, its status,
what it is waiting for, the elapsed time, the assistant's text as Markdown, tool calls folded in
``<details>``, tokens and cost (marked scripted under rehearsal). Updates are throttled to at
most one per ``min_interval`` (0.1 s) per step; a change that arrives inside the interval is
sent by a timer, and a step's final state is always sent.

While an agent is silent nothing arrives on the bus, yet its clock runs: one ticker per run
(every ``tick`` s, 1 s) re-sends running steps that nothing else updated lately, so the elapsed
time advances. It keeps the throttle's bound (never two sends within ``min_interval``), runs
only while a step runs, and is cancelled when the last step ends or the display closes (an
interrupt closes it too), so no timer outlives the run.

What a step waits for is read from the events already on the bus: nothing yet → starting the
CLI; any event → waiting for the model; a tool call without its result → running that tool;
a retry with a delay → retrying in N s (after a rate limit, when that was the reason); a gate
→ waiting for approval, in the run's notes.

Final states carry no times, so what a batch run leaves in the notebook is deterministic.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..display import (
    REHEARSAL_MARK,
    duration,
    fallback_line,
    one_line,
    plural,
    tool_detail,
    usage_line,
)
from ..events import (
    PermissionAsked,
    PermissionEvent,
    RetryEvent,
    TextEvent,
    ToolCallEvent,
    ToolResultEvent,
    Usage,
    UsageEvent,
    WarningEvent,
)
from ..lifecycle import (
    AgentEventEmitted,
    AgentFallback,
    BudgetWarning,
    GateDecided,
    GateRequested,
    LifecycleEvent,
    RunStarted,
    StepFinished,
    StepStarted,
    WorkspaceWaiting,
)
from ..observe.redact import redact, redact_live
from ..publish import redact_bundle
from .sinks import TIMER_THREAD, Bundle, Cancel, CellSink, DisplaySink, Schedule, timer_schedule

MAX_TEXT_CHARS = 20_000
STARTING = "starting the CLI"
THINKING = "waiting for the model"
APPROVAL = "waiting for approval"


@dataclass
class _Tool:
    id: str | None
    name: str
    detail: str
    ok: bool | None = None


@dataclass
class _Step:
    display_id: str
    step_id: str
    agent: str | None
    iteration: int | None
    started: float
    status: str = "running"
    messages: list[str] = field(default_factory=list)
    streaming: bool = False
    tools: list[_Tool] = field(default_factory=list)
    usage: Usage | None = None
    warnings: list[str] = field(default_factory=list)
    last_sent: float = float("-inf")
    dirty: bool = False
    final: bool = False
    shown: bool = False
    updates: int = 0
    timer: Cancel | None = None
    phase: str = STARTING
    retry: tuple[float, float, str] | None = None  # (since, delay, reason) of a pending retry
    rehearsal: bool = False

    @property
    def title(self) -> str:
        who = f" · {self.agent}" if self.agent and self.agent != self.step_id else ""
        again = f" #{self.iteration}" if self.iteration else ""
        return f"{self.step_id}{again}{who}"


def _usage_line(usage: Usage | None, scripted: bool) -> str:
    if usage is None or (usage.total_tokens == 0 and usage.cost_usd is None):
        return ""
    return usage_line(usage, scripted=scripted)


def waiting_for(step: _Step, now: float) -> str:
    """What a running step waits for, in words (see the module docstring)."""
    if step.retry is not None:
        since, delay, reason = step.retry
        left = since + delay - now
        if left > 0:
            # The engine names the kind ("rate_limit: ..."); a CLI its status ("... (429)").
            limited = any(m in reason.lower() for m in ("rate_limit", "rate limit", "429"))
            why = " after a rate limit" if limited else ""
            return f"retrying{why} in {max(1, round(left))}s"
        return STARTING  # the next attempt starts a new process
    return step.phase


def render_step(step: _Step, now: float) -> Bundle:
    """One step's area: Markdown (and text/plain) with no times once the step is final."""
    text = "\n\n".join(m for m in step.messages if m.strip())
    # The whole accumulated text is redacted (a key split across deltas is whole here); while
    # the step streams, a tail that may still grow into a secret waits for the next update.
    text = redact(text) if step.final else redact_live(text)
    if len(text) > MAX_TEXT_CHARS:
        text = "…" + text[-MAX_TEXT_CHARS:]
    head = [f"**{step.title}**"]
    if step.rehearsal:
        head.append(REHEARSAL_MARK)
    head.append(step.status)
    if not step.final:
        head += [waiting_for(step, now), duration(now - step.started)]
    usage = _usage_line(step.usage, step.rehearsal)
    if usage:
        head.append(usage)
    md = [" · ".join(head)]
    plain = [" · ".join(h.strip("*") for h in head)]
    if text:
        md += ["", text]
        plain += [text]
    if step.tools:
        marks = {True: "✓", False: "✗", None: "…"}
        items = [
            f"- {marks[t.ok]} `{t.name.replace('`', '')}` {one_line(t.detail, 100)}".rstrip()
            for t in step.tools
        ]
        calls = plural(len(step.tools), "tool call")
        md += ["", f"<details><summary>{calls}</summary>", "", *items]
        md += ["", "</details>"]
        plain.append(f"tool calls: {', '.join(t.name for t in step.tools)}")
    for warning in step.warnings:
        md += ["", f"> ⚠ {warning}"]
        plain.append(f"warning: {warning}")
    # Tool details, warnings and titles are redacted too: every sink gets a clean bundle.
    return redact_bundle({"text/markdown": "\n".join(md), "text/plain": "\n".join(plain)})


class LiveDisplay:
    """A lifecycle subscriber keeping one display area per step (see the module docstring)."""

    def __init__(
        self,
        sink: DisplaySink,
        *,
        clock: Callable[[], float] = time.monotonic,
        schedule: Schedule = timer_schedule,
        min_interval: float = 0.1,
        tick: float = 1.0,
        gate_note: str | None = None,
        steps: bool = True,
    ) -> None:
        self.sink = sink
        self._clock = clock
        self._schedule = schedule
        self._interval = min_interval
        self._tick = max(tick, min_interval)
        self._ticker: Cancel | None = None
        self._rehearsal = False
        self._show_steps = steps  # False: notes only (the final result shows every step)
        self._gate_note = gate_note
        self._lock = threading.RLock()
        self._steps: list[_Step] = []
        self._running: dict[str, _Step] = {}
        self._notes: list[str] = []
        self._notes_id: str | None = None
        self._prefix = f"orchestrator-{uuid.uuid4().hex[:10]}"
        self._workspace = ""  # shown paths are relative to it
        self.closed = False

    @property
    def steps(self) -> list[_Step]:
        return list(self._steps)

    @property
    def notes(self) -> list[str]:
        return list(self._notes)

    def __call__(self, event: LifecycleEvent) -> None:
        with self._lock:
            if self.closed:
                return
            if isinstance(event, RunStarted):
                self._workspace = event.workspace.rstrip("/") + "/"
                self._rehearsal = event.rehearsal
            elif not self._show_steps and isinstance(
                event, (StepStarted, AgentEventEmitted, StepFinished)
            ):
                return
            elif isinstance(event, StepStarted) and event.kind == "agent":
                self._start(event)
            elif isinstance(event, AgentEventEmitted):
                step = self._running.get(event.step_id)
                if step is not None and self._apply(step, event.event):
                    self._changed(step)
            elif isinstance(event, StepFinished):
                self._finish(event)
            elif isinstance(event, AgentFallback):
                step = self._running.get(event.step_id)
                if step is not None:  # the area names the agent that took the step, and why
                    step.agent = event.to_agent
                    step.warnings.append(
                        fallback_line(event.from_agent, event.to_agent, event.kind)
                    )
                    self._changed(step)
            elif isinstance(event, GateRequested):
                why = f" ({self._gate_note})" if self._gate_note else f" ({APPROVAL})"
                self.note(f"gate {event.step_id}: {one_line(event.message, 200)}{why}")
            elif isinstance(event, GateDecided):
                self.note(f"gate {event.step_id}: {event.decision} by {event.by}")
            elif isinstance(event, BudgetWarning):
                self.note(f"budget {event.budget}: {event.used:g} of {event.limit:g} used")
            elif isinstance(event, WorkspaceWaiting):
                self.note(event.message)

    # -- steps ----------------------------------------------------------------------------

    def _start(self, event: StepStarted) -> None:
        display_id = f"{self._prefix}-{len(self._steps)}"
        step = _Step(display_id, event.step_id, event.agent, event.iteration, self._clock())
        step.rehearsal = self._rehearsal
        self._steps.append(step)
        self._running[event.step_id] = step
        if self.sink.live:
            self._send(step)
            self._arm()

    def _apply(self, step: _Step, event: Any) -> bool:
        """Fold ``event`` into ``step``; True when what the area shows changed."""
        before = waiting_for(step, self._clock())
        changed = self._fold(step, event)
        pending = [t for t in step.tools if t.ok is None]
        if isinstance(event, RetryEvent):
            step.phase = STARTING  # after the wait, the next attempt starts the CLI again
        elif isinstance(event, PermissionAsked):
            step.phase = f"{APPROVAL} ({one_line(event.tool, 40)})"
        elif isinstance(event, PermissionEvent):
            step.phase = THINKING  # answered: the agent goes on
        else:
            step.retry = None  # the CLI speaks again: any retry is over
            if isinstance(event, (ToolCallEvent, ToolResultEvent)) and pending:
                step.phase = f"running a tool ({one_line(pending[-1].name, 40)})"
            elif isinstance(event, (TextEvent, ToolResultEvent)) or step.phase == STARTING:
                step.phase = THINKING
        return changed or waiting_for(step, self._clock()) != before

    def _fold(self, step: _Step, event: Any) -> bool:
        if isinstance(event, TextEvent):
            if event.delta:
                if not step.streaming:
                    step.messages.append("")
                    step.streaming = True
                step.messages[-1] += event.text
            elif not (step.streaming and step.messages and step.messages[-1] == event.text):
                step.messages.append(event.text)
                step.streaming = False
            else:
                step.streaming = False
        elif isinstance(event, ToolCallEvent):
            detail = tool_detail(event.input, limit=10_000)
            if self._workspace:
                detail = detail.replace(self._workspace, "")
            step.tools.append(_Tool(event.id, event.name, detail))
        elif isinstance(event, ToolResultEvent):
            for tool in reversed(step.tools):
                if tool.id == event.id:
                    tool.ok = event.ok
                    break
        elif isinstance(event, UsageEvent):
            step.usage = event.usage
        elif isinstance(event, RetryEvent):
            who = "orchestrator retry" if event.source == "engine" else "retry"
            wait = f" in {event.delay_s:.1f}s" if event.delay_s else ""
            step.warnings.append(f"{who} {event.attempt}{wait}: {one_line(event.reason, 120)}")
            if event.delay_s:
                step.retry = (self._clock(), event.delay_s, event.reason)
        elif isinstance(event, WarningEvent):
            step.warnings.append(one_line(event.message, 200))
        else:
            return False
        return True

    def _finish(self, event: StepFinished) -> None:
        step = self._running.pop(event.step_id, None)
        if step is None:  # a cached or resumed step that never started here
            step = _Step(f"{self._prefix}-{len(self._steps)}", event.step_id, event.agent, None, 0)
            step.iteration = event.iteration
            self._steps.append(step)
        result = event.result
        step.final = True
        step.status = "ok" if result.ok else f"failed ({result.error_kind})"
        if event.cached:
            step.status += ", cached"
        step.usage = result.usage
        if result.text and not "".join(step.messages).strip():
            step.messages = [result.text]
        if result.error is not None:
            step.warnings.append(one_line(result.error.message, 300))
        if step.timer is not None:
            step.timer()
            step.timer = None
        self._send(step)
        if not self._running:
            self._disarm()

    # -- the ticker: elapsed time advances while an agent is silent -------------------------

    def _arm(self) -> None:
        if self._ticker is None and self._running and self.sink.live and not self.closed:
            self._ticker = self._schedule(self._tick, self._on_tick)

    def _disarm(self) -> None:
        if self._ticker is not None:
            self._ticker()
            self._ticker = None

    def _on_tick(self) -> None:
        with self._lock:
            self._ticker = None
            if self.closed:
                return
            now = self._clock()
            for step in list(self._running.values()):
                # A pending throttle timer sends soon anyway; a recent send already shows the time.
                quiet = now - step.last_sent >= max(self._interval, self._tick / 2)
                if step.shown and not step.final and step.timer is None and quiet:
                    self._send(step)
            self._arm()

    def _changed(self, step: _Step) -> None:
        step.dirty = True
        if not self.sink.live or step.timer is not None:
            return  # a flush is already scheduled and will send the latest state
        wait = step.last_sent + self._interval - self._clock()
        if wait <= 0:
            self._send(step)
        elif step.timer is None:
            step.timer = self._schedule(wait, lambda: self._flush(step))

    def _flush(self, step: _Step) -> None:
        with self._lock:
            step.timer = None
            if step.dirty and not step.final and not self.closed:
                self._send(step)

    def _send(self, step: _Step) -> None:
        now = self._clock()
        bundle = render_step(step, now)
        step.last_sent, step.dirty = now, False
        step.updates += 1
        if step.shown:
            self.sink.update(step.display_id, bundle)
        else:
            step.shown = True
            self.sink.show(step.display_id, bundle)

    # -- notes and the end ----------------------------------------------------------------

    def note(self, line: str) -> None:
        """A line in the run's notes area (gates, budgets); notes carry no times."""
        with self._lock:
            line = redact(line)
            self._notes.append(line)
            bundle = {
                "text/plain": "\n".join(self._notes),
                "text/markdown": "\n".join(f"- {n}" for n in self._notes),
            }
            if not self.sink.live:  # a terminal: each note once, as it comes
                self.sink.show(f"{self._prefix}-note-{len(self._notes)}", {"text/plain": line})
            elif self._notes_id is None:
                self._notes_id = f"{self._prefix}-notes"
                self.sink.show(self._notes_id, bundle)
            else:
                self.sink.update(self._notes_id, bundle)

    def close(self, *, clear: bool = False) -> None:
        """Stop updating; ``clear`` empties the step areas (the final render replaces them)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._disarm()
            for step in self._steps:
                if step.timer is not None:
                    step.timer()
                    step.timer = None
                if not step.shown:
                    continue
                if clear and self.sink.live:
                    self.sink.update(step.display_id, {"text/plain": ""})
                elif not step.final and self.sink.live:
                    step.status = "stopped"
                    step.final = True
                    self.sink.update(step.display_id, render_step(step, self._clock()))


__all__ = [  # the sinks' names too: callers import them from here
    "TIMER_THREAD",
    "Bundle",
    "Cancel",
    "CellSink",
    "DisplaySink",
    "LiveDisplay",
    "Schedule",
    "render_step",
    "timer_schedule",
    "waiting_for",
]
