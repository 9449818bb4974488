"""A run's lifecycle events as ACP session updates, sent in the order they happened.

The engine calls subscribers synchronously (from any thread); sending is async. So the
subscriber only translates and queues, and one pump task sends: the client sees the plan,
each agent's text (labelled with its step), its tool calls, the files each step changed (as
``diff`` content) and the running usage in the order the run produced them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from acp import (
    plan_entry,
    start_tool_call,
    text_block,
    tool_content,
    tool_diff_content,
    update_agent_message,
    update_plan,
    update_tool_call,
)
from acp.schema import Cost, PlanEntry, ToolCallLocation, UsageUpdate

from ..display import plural
from ..events import TextEvent, ToolCallEvent, ToolResultEvent, Usage
from ..lifecycle import (
    AgentEventEmitted,
    BudgetWarning,
    GateDecided,
    GateRequested,
    LifecycleEvent,
    StepFinished,
    StepStarted,
    WorkspaceWaiting,
)
from ..observe.redact import redact, redact_obj
from ..observe.redact_stream import StreamRedactor
from ..workflow.result import PlannedStep
from .diffs import split

log = logging.getLogger("orchestrator_nb.acp")
Send = Callable[[Any], Awaitable[None]]
MAX_TOOL_OUTPUT = 2000  # characters of a tool's output shown in its tool call
_KINDS = {  # an agent tool's name → the ACP tool kind a client draws an icon for
    "read": "read", "view": "read", "write": "edit", "edit": "edit", "replace": "edit",
    "patch": "edit", "create": "edit", "bash": "execute", "shell": "execute", "exec": "execute",
    "command": "execute", "search": "search", "grep": "search", "glob": "search",
    "fetch": "fetch", "web": "fetch", "delete": "delete", "move": "move",
}  # fmt: skip


def tool_kind(name: str) -> Any:
    lowered = name.lower()
    return next((kind for word, kind in _KINDS.items() if word in lowered), "other")


class Progress:
    """The lifecycle subscriber of one prompt; ``await close()`` flushes what is queued."""

    def __init__(self, send: Send, plan: list[PlannedStep], *, token_budget: int | None) -> None:
        self._send = send
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._entries: dict[str, PlanEntry] = {}
        for step in plan:
            if step.kind in ("agent", "gate"):
                who = step.agent if step.kind == "agent" else "gate"
                self._entries[step.step_id] = plan_entry(f"{step.step_id} — {who}")
        # Who spoke last: agents run side by side in parallel steps, so a label goes before
        # every stretch of one step's text, not once per step.
        self._speaking: tuple[str, int | None] | None = None
        self._rounds: dict[str, int | None] = {}
        # Each step's text arrives in deltas: a secret split across two must still be masked.
        self._texts: dict[str, StreamRedactor] = {}
        self._tools = 0
        self._open: dict[str, str] = {}  # step (and round) → its last started tool call
        self._usage = Usage()
        self._token_budget = token_budget
        self._pump = asyncio.ensure_future(self._run())
        if self._entries:
            self._put(update_plan(list(self._entries.values())))

    @property
    def usage(self) -> Usage:
        return self._usage

    # -- the subscriber -------------------------------------------------------------------

    def __call__(self, event: LifecycleEvent) -> None:
        for update in self._translate(event):
            self._put(update)

    def say(self, text: str) -> None:
        """A message of the orchestrator's own (not an agent's), in order with the rest."""
        self._put(update_agent_message(text_block(redact(text))))

    def _put(self, update: Any) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._queue.put_nowait(update)
        else:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, update)

    def _translate(self, event: LifecycleEvent) -> list[Any]:
        if isinstance(event, StepStarted) and event.kind == "agent":
            self._rounds[event.step_id] = event.iteration
            return self._plan(event.step_id, "in_progress", iteration=event.iteration)
        if isinstance(event, GateRequested):
            return self._plan(event.step_id, "in_progress")
        if isinstance(event, GateDecided):
            return self._plan(event.step_id, "completed", note=f"{event.decision} by {event.by}")
        if isinstance(event, AgentEventEmitted):
            return self._agent_event(event)
        if isinstance(event, StepFinished):
            return self._finished(event)
        if isinstance(event, WorkspaceWaiting):  # the workspace lock: runs take turns
            return [update_agent_message(text_block(f"⏳ {event.message}\n"))]
        if isinstance(event, BudgetWarning):
            used = f"{event.used:.4g} of {event.limit:.4g}"
            return [update_agent_message(text_block(f"\n\n⚠ budget {event.budget}: {used}\n"))]
        return []

    def _plan(
        self, step_id: str, status: Any, *, iteration: int | None = None, note: str = ""
    ) -> list[Any]:
        entry = self._entries.get(step_id)
        if entry is None:
            return []
        base = entry.content.split(" (", 1)[0]
        extra = [f"round {iteration}"] if iteration else []
        extra += [note] if note else []
        content = f"{base} ({', '.join(extra)})" if extra else base
        self._entries[step_id] = entry.model_copy(update={"status": status, "content": content})
        return [update_plan(list(self._entries.values()))]

    def _label(self, step_id: str, agent: str) -> list[Any]:
        key = (step_id, self._rounds.get(step_id))
        if key == self._speaking:
            return []
        self._speaking = key
        round_ = f" #{key[1]}" if key[1] else ""
        return [update_agent_message(text_block(f"\n\n**[{step_id}{round_} · {agent}]** "))]

    def _agent_event(self, event: AgentEventEmitted) -> list[Any]:
        inner = event.event
        if isinstance(inner, (ToolCallEvent, ToolResultEvent)):
            # A CLI numbers its tool calls per process, so a step's next round (a new
            # process) reuses them: the id carries the step and its round. A call without an
            # id pairs with the last one started in its step.
            round_ = self._rounds.get(event.step_id)
            where = f"{event.step_id}{f' #{round_}' if round_ else ''}"
            if isinstance(inner, ToolCallEvent):
                self._tools += 1
                self._open[where] = inner.id or f"n{self._tools}"
            call_id = f"{where}/{inner.id or self._open.get(where, 'n0')}"
        if isinstance(inner, TextEvent) and inner.text:
            text = inner.text if inner.delta else inner.text + "\n"
            clean = self._texts.setdefault(event.step_id, StreamRedactor()).feed(text)
            if not clean:
                return []
            out = self._label(event.step_id, event.agent)
            return [*out, update_agent_message(text_block(clean))]
        if isinstance(inner, ToolCallEvent):
            title = f"{event.agent}: {inner.name}"
            raw = redact_obj(inner.input)
            return [
                start_tool_call(
                    call_id, title, kind=tool_kind(inner.name), status="in_progress", raw_input=raw
                )
            ]
        if isinstance(inner, ToolResultEvent):
            output = redact(inner.output)[-MAX_TOOL_OUTPUT:]
            content = [tool_content(text_block(output))] if output else None
            if inner.ok:
                return [update_tool_call(call_id, status="completed", content=content)]
            return [update_tool_call(call_id, status="failed", content=content)]
        return []

    def _finished(self, event: StepFinished) -> list[Any]:
        r = event.result
        note = "cached" if event.cached else ("" if r.ok else f"failed: {r.error_kind}")
        out: list[Any] = []
        stream = self._texts.pop(event.step_id, None)
        rest = stream.flush() if stream is not None else ""
        if rest:
            out += self._label(event.step_id, r.agent)
            out.append(update_agent_message(text_block(rest)))
        out += self._plan(event.step_id, "completed", iteration=event.iteration, note=note)
        if not r.ok and r.error is not None:
            out += self._label(event.step_id, r.agent)
            out.append(update_agent_message(text_block(f"\n✗ {redact(r.error.message)}\n")))
        if r.diff:
            round_ = f" #{event.iteration}" if event.iteration else ""
            where = f"{event.step_id}{round_}"
            out += _edit(f"{where}/changes", f"{r.agent} changed {{}} in {where}", r.diff)
        if not event.cached:
            self._usage = self._usage + r.usage
        out.append(self.usage_update())
        return out

    def run_changes(self, workflow: str, diff: str) -> None:
        """The run's net change, once at its end (best-of-n applies a pick only then)."""
        if diff:
            for update in _edit("run/changes", f"workflow {workflow} changed {{}}", diff):
                self._put(update)

    def usage_update(self) -> UsageUpdate:
        used = self._usage.input_tokens + self._usage.output_tokens
        cost = self._usage.cost_usd
        return UsageUpdate(
            session_update="usage_update",
            used=used,
            # ACP's size is a context window; a multi-agent run has none, so it is the run's
            # token budget when there is one, and what was used otherwise.
            size=max(self._token_budget or 0, used),
            cost=Cost(amount=cost, currency="USD") if cost is not None else None,
        )

    # -- sending --------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            update = await self._queue.get()
            if update is None:
                return
            if isinstance(update, asyncio.Future):
                if not update.done():
                    update.set_result(None)
                continue
            try:
                await self._send(update)
            except Exception as exc:  # a client that went away must not stop the run
                log.warning("could not send a session update: %s", exc)

    async def drain(self) -> None:
        """Wait until everything queued so far has been sent."""
        marker: asyncio.Future[None] = self._loop.create_future()
        self._put(marker)
        await marker

    async def close(self) -> None:
        self._put(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump


def _edit(call_id: str, title: str, diff: str) -> list[Any]:
    """A finished edit with one ``diff`` per file: started, then completed (clients draw the
    diffs of a completed edit). ``{}`` in the title becomes the number of files ("2 files")."""
    files = split(redact(diff))
    content: list[Any] = [
        tool_content(text_block(f"{f.path}: {f.note}"))
        if f.note
        else tool_diff_content(f.path, f.new_text, f.old_text)
        for f in files
    ]
    locations = [ToolCallLocation(path=f.path) for f in files]
    return [
        start_tool_call(
            call_id,
            title.replace("{}", plural(len(files), "file"), 1),
            kind="edit",
            status="in_progress",
            content=content,
            locations=locations,
        ),
        update_tool_call(call_id, status="completed", content=content),
    ]
