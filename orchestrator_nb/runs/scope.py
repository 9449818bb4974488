"""What a run holds while it runs, opened and closed by the run service around the engine.

A run's scope is its workspace, its journal (started, or read back when the run resumes), its
own event bus with the logs, metrics and audit trail subscribed, and its seat (the workspace
lock, or its own worktree). The service opens it for every run, whatever the entry point, and
closes it however the run ends; the engine only walks the steps inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..events import StepResult
from ..lifecycle import EventBus, WorkspaceWaiting
from ..workflow.journal import RunJournal
from ..workflow.policies import Breakers
from ..workspace import Workspace
from ..workspace.lock import Isolation, Seat, run_seat


@dataclass
class RunScope:
    run_id: str
    journal: RunJournal
    bus: EventBus  # this run's own: observed, and forwarded to the engine's bus
    seat: Seat  # the run works in ``seat.ws`` (its worktree when isolated)
    cancel: asyncio.Event
    started: float  # time.monotonic() when the run began, waiting for the workspace included
    done: dict[str, StepResult] = field(default_factory=dict)  # a resumed run's journaled steps
    context: str = ""  # a follow-up's summary, kept in the journal for a resume
    notes: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def open_run(
    workspace: Path,
    *,
    run_id: str | None,
    resume: bool,
    start: dict[str, Any],
    forward_to: EventBus,
    breakers: Breakers,
    cancel: asyncio.Event,
    isolation: Isolation = "shared",
) -> AsyncIterator[RunScope]:
    """Open a run in ``workspace``; ``start`` is what the journal records for a new run."""
    started = time.monotonic()
    ws = Workspace(workspace, run_id=run_id)
    journal = RunJournal(ws.state.root / "runs", ws.run_id)
    context = str(start.get("context") or "")
    done: dict[str, StepResult] = {}
    if resume:
        done = journal.finished()
        context = context or str(journal.meta().get("context") or "")
    else:
        journal.start(start)
    leftovers = ws.state.worktrees
    if ws.is_git and leftovers.is_dir() and any(leftovers.iterdir()):
        ws.worktrees.cleanup_stale()  # a crashed run's worktrees (each leaves a folder)
    from ..observe import install

    # Each run has its own bus: concurrent runs on one engine must not write each other's
    # events into their logs and audit trails. It forwards to the engine's bus, which is what
    # callers subscribe to.
    bus = EventBus()
    forward = bus.subscribe(forward_to.emit)
    uninstall = install(bus, ws.state.root, breakers=breakers)
    notes: list[str] = []

    def waiting(holder: str) -> None:
        bus.emit(WorkspaceWaiting(ws.run_id, holder, str(ws.root)))

    try:
        # One run writes in a workspace at a time (or works in its own worktree); leftovers of
        # a dead run are stopped first. See workspace/lock.py.
        async with run_seat(
            ws, on_wait=waiting, cancel=cancel, isolation=isolation, notes=notes
        ) as seat:
            yield RunScope(ws.run_id, journal, bus, seat, cancel, started, done, context, notes)
    finally:
        uninstall()
        forward()


__all__ = ["RunScope", "open_run"]
