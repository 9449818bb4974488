"""The audit trail: an append-only, hash-chained JSONL file in the workspace's state folder.

Each line is one record ``{"seq", "ts", "kind", "data", "prev", "hash"}`` where ``hash`` is the
SHA-256 of the record's canonical JSON without ``hash``, and ``prev`` is the previous record's
``hash`` (64 zeros for the first). A sidecar ``<file>.head`` holds the last ``seq`` and ``hash``
so that records cut from the *end* are noticed too. :func:`verify` names the first line that was
edited, removed or reordered.

What it guards: accidental or casual edits. Someone who can rewrite the whole file *and*
recompute every hash can forge it; there is no secret key (see the README's security section).

Writes are durable (``fsync`` of the file, and of the folder when it is created) and serialized
by a thread lock plus ``fcntl.flock``, so parallel steps and other processes never interleave or
fork the chain. Data is redacted before it is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..events import PermissionEvent
from ..lifecycle import (
    AgentEventEmitted,
    FileWritten,
    GateDecided,
    LifecycleEvent,
    Reverted,
    RunFinished,
    RunStarted,
    StepFinished,
)
from .redact import Redactor, default_redactor

GENESIS = "0" * 64
AUDIT_FILE = "audit.jsonl"
_TAIL_CHUNK = 8192

# One lock per file for the whole process: flock alone does not exclude threads that share an fd.
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(path), threading.Lock())


def canonical(obj: Any) -> bytes:
    """The bytes that are hashed: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_line(fd: int, size: int) -> bytes:
    """The last complete-or-torn line of the file (without its newline)."""
    end = size
    buf = b""
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        buf = os.pread(fd, end - start, start) + buf
        end = start
        body = buf[:-1] if buf.endswith(b"\n") else buf
        cut = body.rfind(b"\n")
        if cut >= 0:
            return body[cut + 1 :]
    return buf[:-1] if buf.endswith(b"\n") else buf


def _read_head(path: Path) -> tuple[int, str] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return int(data["seq"]), str(data["hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class AuditTrail:
    """Appends records to ``path``; safe from threads and processes at once."""

    def __init__(self, path: str | os.PathLike[str], *, redactor: Redactor | None = None) -> None:
        self.path = Path(path).absolute()
        self.head_path = self.path.with_name(self.path.name + ".head")
        self._redactor = redactor or default_redactor()
        self._lock = _thread_lock(self.path)
        # (file size, seq, hash) after our own last append: saves re-reading the tail when no
        # other process wrote in between.
        self._cache: tuple[int, int, str] | None = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        created = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if created:
                    _fsync_dir(self.path.parent)  # the new file's name survives a crash too
                yield fd
            finally:
                os.close(fd)  # also releases the flock

    def _tail(self, fd: int) -> tuple[int, str, bool]:
        """(next seq, previous hash, whether the last line is torn) under the lock."""
        size = os.fstat(fd).st_size
        if self._cache is not None and self._cache[0] == size:
            return self._cache[1] + 1, self._cache[2], False
        if size == 0:
            return 0, GENESIS, False
        torn = os.pread(fd, 1, size - 1) != b"\n"
        line = _last_line(fd, size)
        try:
            last = json.loads(line)
            return int(last["seq"]) + 1, str(last["hash"]), torn
        except (ValueError, KeyError, TypeError):
            # A torn or damaged last line: chain on from the head file, and let verify() report
            # the damage rather than hiding it.
            head = _read_head(self.head_path)
            if head is not None:
                return head[0] + 1, head[1], torn
            return 0, GENESIS, torn

    def _write_head(self, seq: int, digest: str) -> None:
        tmp = self.head_path.with_name(f"{self.head_path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({"seq": seq, "hash": digest}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.head_path)

    def append(self, kind: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Append one record (redacted) and return it as written."""
        clean = self._redactor.redact_obj(data or {})
        with self._locked() as fd:
            seq, prev, torn = self._tail(fd)
            record: dict[str, Any] = {
                "seq": seq,
                "ts": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                "kind": self._redactor.redact(kind),
                "data": clean,
                "prev": prev,
            }
            record["hash"] = record_hash(record)
            line = canonical(record) + b"\n"
            if torn:
                line = b"\n" + line
            # One write on an O_APPEND descriptor under the flock: the line lands whole.
            os.write(fd, line)
            os.fsync(fd)
            self._write_head(seq, record["hash"])
            self._cache = (os.fstat(fd).st_size, seq, record["hash"])
        return record

    def records(self) -> list[dict[str, Any]]:
        """Every readable record, in file order (no verification)."""
        out: list[dict[str, Any]] = []
        if not self.path.is_file():
            return out
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    out.append(value)
        return out


@dataclass(frozen=True)
class VerifyResult:
    """``ok``, or the 1-based ``first_bad_line`` and the ``reason``; ``records`` counted."""

    ok: bool
    first_bad_line: int | None = None
    reason: str | None = None
    records: int = 0

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            return f"audit trail intact ({self.records} records)"
        return f"audit trail damaged at line {self.first_bad_line}: {self.reason}"


def _parse(lines: list[str]) -> list[dict[str, Any] | None]:
    parsed: list[dict[str, Any] | None] = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            parsed.append(None)
            continue
        ok = (
            isinstance(value, dict)
            and isinstance(value.get("seq"), int)
            and isinstance(value.get("hash"), str)
            and isinstance(value.get("prev"), str)
        )
        parsed.append(value if ok else None)
    return parsed


def verify(path: str | os.PathLike[str]) -> VerifyResult:
    """Check the chain of the audit file at ``path`` (a missing file is an empty, intact trail)."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        return VerifyResult(True)
    text = raw.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    parsed = _parse(lines)
    seqs = {r["seq"] for r in parsed if r is not None}
    prev_hash, prev_seq = GENESIS, -1
    for i, record in enumerate(parsed):
        lineno = i + 1
        if record is None:
            torn = i == len(lines) - 1 and not raw.endswith(b"\n")
            what = "torn record (a write was interrupted)" if torn else "not a valid record"
            return VerifyResult(False, lineno, what, i)
        if record_hash(record) != record["hash"]:
            return VerifyResult(False, lineno, "edited: its hash does not match its content", i)
        expected = prev_seq + 1
        if record["seq"] != expected:
            if record["seq"] < expected:
                reason = f"out of order: seq {record['seq']} after seq {prev_seq}"
            elif expected in seqs:
                reason = f"reordered: seq {expected} should come here, found seq {record['seq']}"
            else:
                gone = record["seq"] - expected
                reason = f"{gone} record(s) removed before this one (seq {expected} missing)"
            return VerifyResult(False, lineno, reason, i)
        if record["prev"] != prev_hash:
            # The sequence is whole, so the previous record was rewritten with a fresh hash.
            where = max(lineno - 1, 1)
            return VerifyResult(
                False, where, "edited: its hash was recomputed but the next record disagrees", i
            )
        prev_hash, prev_seq = record["hash"], record["seq"]
    count = len(parsed)
    known = _read_head(file.with_name(file.name + ".head"))
    if known is not None:
        head_seq, head_hash = known
        if head_seq > prev_seq:
            missing = head_seq - prev_seq
            return VerifyResult(
                False, count + 1, f"{missing} record(s) removed from the end", count
            )
        if head_seq == prev_seq and head_hash != prev_hash:
            return VerifyResult(
                False, count, "edited: the last record differs from the head", count
            )
    return VerifyResult(True, records=count)


def record_config_change(
    state_dir: str | os.PathLike[str], source: str, keys: list[str], **details: Any
) -> dict[str, Any]:
    """Append a ``config_changed`` record to the workspace's trail (for the notebook layer)."""
    data = {"source": source, "keys": list(keys), **details}
    return AuditTrail(Path(state_dir) / AUDIT_FILE).append("config_changed", data)


class AuditSubscriber:
    """Appends runs, finished steps, file writes, reverts and gate decisions to the trail."""

    def __init__(
        self, state_dir: str | os.PathLike[str], *, trail: AuditTrail | None = None
    ) -> None:
        self.trail = trail or AuditTrail(Path(state_dir) / AUDIT_FILE)

    def config_changed(self, source: str, keys: list[str], **details: Any) -> None:
        """Record a configuration change (the notebook layer and ``%orchestrate`` call this)."""
        self.trail.append("config_changed", {"source": source, "keys": keys, **details})

    def __call__(self, event: LifecycleEvent) -> None:
        entry = self._entry(event)
        if entry is not None:
            self.trail.append(*entry)

    def _entry(self, event: LifecycleEvent) -> tuple[str, dict[str, Any]] | None:
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
        if isinstance(event, FileWritten):
            return "file_written", {
                "run_id": event.run_id,
                "step_id": event.step_id,
                "path": event.path,
                "backup": event.backup,
            }
        if isinstance(event, Reverted):
            return "reverted", {
                "run_id": event.run_id,
                "step_id": event.step_id,
                "paths": event.paths,
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
        if isinstance(event, GateDecided):
            return "gate_decided", {
                "run_id": event.run_id,
                "step_id": event.step_id,
                "decision": event.decision,
                "by": event.by,
            }
        return None


__all__ = [
    "AUDIT_FILE",
    "GENESIS",
    "AuditSubscriber",
    "AuditTrail",
    "VerifyResult",
    "canonical",
    "record_config_change",
    "record_hash",
    "verify",
]
