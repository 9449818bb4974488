"""The audit subscriber: a run's lifecycle events as records of the trail, and its receipt.

Runs, finished steps, file writes, reverts, gate decisions and configuration changes become
records (:mod:`.audit`); when a run finishes, its signed receipt is written beside its journal
(:mod:`.receipts`). Every entry point reaches this through the engine's bus.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from ..events import PermissionEvent
from ..lifecycle import (
    AgentEventEmitted,
    AgentFallback,
    FileWritten,
    GateDecided,
    LifecycleEvent,
    Reverted,
    RunFinished,
    RunStarted,
    StepFinished,
)
from .audit import AUDIT_FILE, AuditTrail


def record_config_change(
    state_dir: str | os.PathLike[str], source: str, keys: list[str], **details: Any
) -> dict[str, Any]:
    """Append a ``config_changed`` record to the workspace's trail (for the notebook layer)."""
    data = {"source": source, "keys": list(keys), **details}
    return AuditTrail(Path(state_dir) / AUDIT_FILE).append("config_changed", data)


class AuditSubscriber:
    """Appends runs, finished steps, agent fallbacks, file writes, reverts and gate decisions."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        trail: AuditTrail | None = None,
        config_dir: Path | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.config_dir = config_dir
        self.trail = trail or AuditTrail(self.state_dir / AUDIT_FILE, config_dir=config_dir)
        self._runs: dict[str, dict[str, Any]] = {}  # what each run's receipt will say
        self._pending: list[tuple[str, dict[str, Any]]] = []  # records awaiting their step's end
        self._lock = threading.Lock()

    def config_changed(self, source: str, keys: list[str], **details: Any) -> None:
        """Record a configuration change (the notebook layer and ``%orchestrate`` call this)."""
        with self._lock:
            self._write_pending(("config_changed", {"source": source, "keys": keys, **details}))

    def __call__(self, event: LifecycleEvent) -> None:
        self._collect(event)
        entry = self._entry(event)
        if entry is None:
            return
        with self._lock:
            self._pending.append(entry)
            if _waits_for_step_end(event, self._runs):
                return
            # Durable per step, not per record: what a step produced (its file writes and
            # permission decisions, and the run's start before the first step) goes to the
            # trail with the step's end, in one write and one fsync.
            records = self._write_pending()
        if isinstance(event, RunFinished):
            self._receipt(event, records[-1])

    def flush(self) -> None:
        """Write the records still waiting for their step's end (a run that stopped mid-step)."""
        with self._lock:
            self._write_pending()

    def _write_pending(self, *more: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """The held records and ``more`` in one write and one fsync (call with the lock held)."""
        pending, self._pending = [*self._pending, *more], []
        return self.trail.append_many(pending)

    def _collect(self, event: LifecycleEvent) -> None:
        if isinstance(event, RunStarted):
            self._runs[event.run_id] = {
                "task_sha256": hashlib.sha256(event.task.encode()).hexdigest(),
                "workspace": event.workspace,
                "steps": [],
            }
        elif isinstance(event, StepFinished) and event.run_id in self._runs:
            r = event.result
            self._runs[event.run_id]["steps"].append(
                {
                    "step_id": event.step_id,
                    "agent": event.agent,
                    "iteration": event.iteration,
                    "ok": r.ok,
                    "cached": event.cached,
                    "changes": [{"path": c.path, "kind": c.kind} for c in r.changes],
                    "tokens": r.usage.total_tokens,
                    "cost_usd": r.usage.cost_usd,
                }
            )

    def _receipt(self, event: RunFinished, record: dict[str, Any]) -> None:
        from . import receipts

        run = self._runs.pop(event.run_id, None) or {"steps": []}
        changes: dict[str, str] = {}
        for step in run["steps"]:
            for change in step["changes"]:
                changes[change["path"]] = change["kind"]
        payload = {
            "v": 1,
            "run_id": event.run_id,
            "workflow": event.workflow,
            "outcome": event.outcome,
            "ok": event.ok,
            "task_sha256": run.get("task_sha256"),
            "workspace": run.get("workspace"),
            "steps": run["steps"],
            "changes": [{"path": p, "kind": k} for p, k in sorted(changes.items())],
            "tokens": event.usage.total_tokens,
            "cost_usd": event.usage.cost_usd,
            "duration_s": round(event.duration_s, 3),
            "audit": {"seq": record["seq"], "hash": record["hash"]},
            "finished_at": record["ts"],
        }
        signed = receipts.sign(payload, config=self.config_dir)
        receipts.write(self.state_dir, event.run_id, signed)

    def _entry(self, event: LifecycleEvent) -> tuple[str, dict[str, Any]] | None:
        recorded_whole = _WHOLE.get(type(event))
        if recorded_whole is not None:
            return recorded_whole, dataclasses.asdict(event)
        if isinstance(event, RunStarted):
            return "run_started", {
                "run_id": event.run_id,
                "workflow": event.workflow,
                "task": event.task,
                "workspace": event.workspace,
                "session": event.session,
                "rehearsal": event.rehearsal,
                "pid": os.getpid(),
                "t": time.time(),
            }
        if isinstance(event, RunFinished):
            return "run_finished", {
                "run_id": event.run_id,
                "workflow": event.workflow,
                "outcome": event.outcome,
                "ok": event.ok,
                "duration_s": round(event.duration_s, 3),
                "tokens": event.usage.total_tokens,
                "cost_usd": event.usage.cost_usd,
                "error": event.error,
            }
        if isinstance(event, StepFinished):
            r = event.result
            return "step_finished", {
                "run_id": event.run_id,
                "step_id": event.step_id,
                "agent": event.agent,
                "iteration": event.iteration,
                "ok": r.ok,
                "cached": event.cached,
                "error_kind": r.error_kind,
                "error": r.error.message if r.error else None,
                "exit_code": r.exit_code,
                "attempts": len(r.attempts),
                "duration_s": round(r.duration_s, 3),
                "changes": [{"path": c.path, "kind": c.kind} for c in r.changes],
                # The program only: the rest of argv holds the prompt, which can be 100k chars.
                "program": r.argv[0] if r.argv else None,
            }
        if isinstance(event, AgentEventEmitted) and isinstance(event.event, PermissionEvent):
            e = event.event
            return "permission_decided", {
                "run_id": event.run_id,
                "step_id": event.step_id,
                "agent": event.agent,
                "tool": e.tool,
                "kind": e.kind,
                "target": e.target,
                "decision": e.decision,
                "by": e.by,
                "reason": e.reason,
            }
        return None


# Events recorded with every field as it is, under this name (the record's hash sorts keys).
_WHOLE: dict[type, str] = {
    FileWritten: "file_written",
    Reverted: "reverted",
    AgentFallback: "agent_fallback",
    GateDecided: "gate_decided",
}


def _waits_for_step_end(event: LifecycleEvent, runs: dict[str, dict[str, Any]]) -> bool:
    """Whether the record can wait for the end of its step (or run) to be written.

    Only inside a run this subscriber saw start, which always ends with ``RunFinished``; the
    end of a step, of a run, a gate decision (a person's) and anything outside a run are
    written at once.
    """
    if isinstance(event, RunStarted):
        return True
    if isinstance(event, FileWritten | AgentEventEmitted):
        return event.run_id in runs
    return False


__all__ = ["AuditSubscriber", "record_config_change"]
