"""One run writes in a workspace at a time: the workspace lock, and where a run works.

:func:`run_seat` is the one function a run enters at its start and leaves at its end (the engine
calls it; every entry point reaches it through the engine):

* **shared** (the default): it takes the workspace lock, ``.orchestrator/workspace.lock``, an OS
  ``flock`` (:class:`orchestrator_nb.fsio.FileLock`) that a crash releases, so a killed kernel
  never leaves the workspace locked. A second run waits, and says so once through
  :class:`~orchestrator_nb.lifecycle.WorkspaceWaiting` ("waiting for run X in this workspace"),
  shown by the cell, the dashboard and the console. Since runs take turns, each run's snapshots
  see only its own changes, and reverting one run never touches what another wrote (a file both
  changed is refused as a conflict, see :mod:`.revert`).
* **worktree** (``isolation="worktree"``, ``--isolate``): the run works in its own git worktree
  of the workspace's current state and does not hold the lock while it works; at its end it takes
  the lock briefly and applies its changes, recorded as the run's own step ``isolated-apply`` so
  ``revert`` undoes exactly them. A run that did not complete, or whose changes conflict, leaves
  them as a patch in its run folder instead.

Either way, before the run starts, whatever a dead run of this workspace left running is stopped
(:func:`orchestrator_nb.orphans.stop_leftovers`), and while it runs its agents are recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..display import plural
from ..errors import WorkspaceError
from ..fsio import FileLock
from .diff import ChangeSet

Isolation = Literal["shared", "worktree"]
LOCK_FILE = "workspace.lock"
ISOLATED_STEP = "isolated-apply"
_POLL_S = 0.1


class WorkspaceLock:
    """The workspace's run lock; ``holder()`` says which run holds it."""

    def __init__(self, state_root: Path) -> None:
        self.state_root = state_root
        self._lock = FileLock(state_root / LOCK_FILE)

    @property
    def held(self) -> bool:
        return self._lock.held

    def try_acquire(self, run_id: str, what: str = "run") -> bool:
        info = {"run_id": run_id, "what": what, "pid": os.getpid(), "host": socket.gethostname()}
        return self._lock.acquire(blocking=False, info=json.dumps(info))

    def holder(self) -> str:
        """Who holds the lock, as shown to a user ("run 2024…", "revert of run …")."""
        try:
            info = json.loads(self._lock.holder_info() or "{}")
        except ValueError:
            info = {}
        run_id = info.get("run_id") if isinstance(info, dict) else None
        if not run_id:
            return "another run"
        what = info.get("what", "run")
        return f"run {run_id}" if what == "run" else f"{what} of run {run_id}"

    async def acquire(
        self,
        run_id: str,
        *,
        on_wait: Callable[[str], None] | None = None,
        cancel: asyncio.Event | None = None,
    ) -> bool:
        """Wait for the lock (False when ``cancel`` was set first); ``on_wait(holder)`` is
        called once per holder seen while waiting."""
        told: str | None = None
        while not self.try_acquire(run_id):
            holder = self.holder()
            if holder != told and on_wait is not None:
                on_wait(holder)
                told = holder
            if cancel is not None and cancel.is_set():
                return False
            await asyncio.sleep(_POLL_S)
        return True

    def release(self) -> None:
        self._lock.release()


@contextlib.contextmanager
def locked_for(state_root: Path, run_id: str, what: str) -> Any:
    """Hold the lock for a short synchronous action (a revert), or refuse at once."""
    lock = WorkspaceLock(state_root)
    if not lock.try_acquire(run_id, what):
        raise WorkspaceError(
            f"{lock.holder()} is writing in this workspace; cannot {what} run {run_id} now",
            hint="wait until it finishes (or stop it), then try again",
        )
    try:
        yield lock
    finally:
        lock.release()


@dataclass
class Seat:
    """Where a run works (``ws``) and how its changes reach the workspace."""

    main: Any  # the Workspace the user named
    ws: Any  # where the steps work: ``main``, or the run's own worktree
    isolation: Isolation
    lock: WorkspaceLock
    notes: list[str] = field(default_factory=list)
    on_wait: Callable[[str], None] | None = None
    _settled: bool = False

    @property
    def root(self) -> Path:
        return Path(self.main.root)

    async def settle(self, outcome: str) -> None:
        """An isolated run that completed applies its changes (taking the lock meanwhile)."""
        if self.isolation != "worktree" or self._settled:
            return
        if outcome != "completed":
            self.changes(outcome)
            return
        self._settled = True
        patch = await asyncio.to_thread(self.main.worktrees.diff, "run")
        if not patch:
            return
        await self.lock.acquire(self.main.run_id, on_wait=self.on_wait)
        try:
            with self.main.step(ISOLATED_STEP) as tracker:
                # The run is over, its worktree cannot change: apply the patch just taken.
                applied = await asyncio.to_thread(self.main.worktrees.apply, "run", as_diffed=True)
        finally:
            self.lock.release()
        if applied.ok:
            files = plural(len(tracker.changes), "file")
            self.notes.append(f"applied the run's worktree: {files}")
        else:
            kept = self._keep(patch.patch)
            shown = ", ".join(applied.conflicts) or "see the patch"
            self.notes.append(f"changes NOT applied (conflicts in {shown}); patch kept in {kept}")

    def changes(self, outcome: str) -> ChangeSet:
        """The run's changes in the workspace; an isolated run that did not complete keeps its
        worktree's changes as a patch in its run folder instead of applying them."""
        if self.isolation == "worktree" and not self._settled:
            self._settled = True
            with contextlib.suppress(WorkspaceError):
                patch = self.main.worktrees.diff("run")
                if patch:
                    kept = self._keep(patch.patch)
                    self.notes.append(f"run {outcome}: changes not applied; patch kept in {kept}")
        changes: ChangeSet = self.main.run_changes()
        return changes

    def _keep(self, data: bytes) -> Path:
        from ..fsio import write_bytes

        return write_bytes(self.main.state.run_dir(self.main.run_id) / "isolated.patch", data)


@contextlib.asynccontextmanager
async def run_seat(
    main: Any,
    *,
    on_wait: Callable[[str], None] | None = None,
    cancel: asyncio.Event | None = None,
    isolation: Isolation = "shared",
    notes: list[str] | None = None,
) -> AsyncIterator[Seat]:
    """Enter a run in workspace ``main`` (a :class:`~.workspace.Workspace`); see the module doc.

    ``on_wait(holder)`` is told when the run has to wait for another; ``notes`` receives what
    the run should report (leftovers stopped, an isolated run's apply). When ``cancel`` is set
    while waiting, the seat is given without the lock: the run stops before its first step.
    """
    from ..orphans import stop_leftovers, track_run

    if isolation not in ("shared", "worktree"):
        raise WorkspaceError(
            f"unknown isolation {isolation!r}", hint="use 'shared' (default) or 'worktree'"
        )
    if isolation == "worktree" and not main.is_git:
        raise WorkspaceError(
            f"isolation='worktree' needs a git workspace; {main.root} is not one",
            hint="run `git init` and commit, or run without isolation (runs then take turns)",
        )
    lock = WorkspaceLock(main.state.root)
    run_id = main.run_id
    seat = Seat(main, main, isolation, lock, notes if notes is not None else [], on_wait)
    got = await lock.acquire(run_id, on_wait=on_wait, cancel=cancel)
    try:
        if got:
            for left in await asyncio.to_thread(stop_leftovers, main.root):
                seat.notes.append(_leftover_note(left))
        if isolation == "worktree" and got:  # (cancelled while waiting: no worktree needed)
            from .workspace import Workspace

            path = await asyncio.to_thread(main.worktrees.create, "run")
            lock.release()  # the run works aside; it takes the lock again to apply
            seat.ws = Workspace(path, run_id=run_id)
        with track_run(main.state.root, run_id):
            yield seat
    finally:
        lock.release()
        if isolation == "worktree":
            with contextlib.suppress(WorkspaceError):
                await asyncio.to_thread(main.worktrees.cleanup, "run")


def _leftover_note(left: Any) -> str:
    line = f"stopped {plural(len(left.stopped), 'leftover process')} of dead run {left.run_id}"
    if left.turns:
        line += "; its turn marked interrupted"
    if left.survivors:
        line += f"; could not stop {', '.join(map(str, left.survivors))}"
    return line


__all__ = [
    "ISOLATED_STEP",
    "LOCK_FILE",
    "Isolation",
    "Seat",
    "WorkspaceLock",
    "locked_for",
    "run_seat",
]
