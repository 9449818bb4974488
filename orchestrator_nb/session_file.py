"""A session's autosave file: a JSON-lines log that grows by one line per change.

Why a log: the autosave used to rewrite the whole session after every step, so a step of a
1,000-turn session paid for all 1,000 turns (O(n²) over a session). Now the first save of a
file in a process writes it whole (which also compacts it), and each later change appends only
its own records, in one ``write`` through :func:`orchestrator_nb.fsio.append_text` (``O_APPEND``,
no symlink followed, redacted value by value).

Crash safety: a change is whole lines written by one ``write``; a process killed in the middle
leaves at most a torn last line, which :func:`parse_log` ignores (the session reads as it was
before that change). A bad line anywhere else is damage, not a crash: a ConfigError naming the
file and line. Before appending, the file must still be the one this process wrote (same inode
and size); otherwise it is written whole again.

Records, one JSON object per line::

    {"record": "session", "kind", "schema_version", "id", "name", ..., "updated_at"}  first line
    {"record": "turn", "turn": {...}}                     a turn, with its steps so far
    {"record": "step", "turn": N, "step": {...}}          a finished step of turn N
    {"record": "state", "turn": N, "outcome", "error", "run_id", "finished_at", "updated_at"}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .observe.redact import redact_obj

if TYPE_CHECKING:
    from .sessions import Session, Turn

LOG_RECORD = "session"
_HEADER_KEYS = ("id", "name", "created_at", "conversation", "workspace")
_STATE_KEYS = ("outcome", "error", "run_id", "finished_at")


@dataclass
class FileState:
    """What this process last wrote to one autosave file."""

    identity: tuple[int, int] = (0, 0)  # (inode, size) after our last write
    header: tuple[Any, ...] = ()
    examined: int = 0  # turns of the session looked at so far (by index)
    # index of each turn written to this file -> (number, steps written, state fields)
    written: dict[int, tuple[int, int, tuple[Any, ...]]] = field(default_factory=dict)
    running: set[int] = field(default_factory=set)  # of those, the ones not finished

    def wrote(self, index: int, turn: Turn) -> None:
        self.written[index] = (turn.number, len(turn.steps), _state(turn))
        if turn.outcome == "running":
            self.running.add(index)
        else:
            self.running.discard(index)


def _line(record: dict[str, Any]) -> str:
    return json.dumps(redact_obj(record), ensure_ascii=False, separators=(",", ":")) + "\n"


def _header(session: Session, where: str) -> dict[str, Any]:
    from .sessions import KIND, SCHEMA_VERSION

    body = {k: getattr(session, k) for k in _HEADER_KEYS}
    body["workspace"] = where
    return {
        "record": LOG_RECORD,
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        **body,
        "updated_at": session.updated_at,
    }


def _header_sig(session: Session) -> tuple[Any, ...]:
    return (session.id, session.name, session.created_at, session.conversation)


def _state(turn: Turn) -> tuple[Any, ...]:
    return tuple(getattr(turn, k) for k in _STATE_KEYS)


def _identity(path: Path) -> tuple[int, int]:
    st = os.stat(path, follow_symlinks=False)
    return (st.st_ino, st.st_size)


def write_whole(session: Session, path: Path, where: str, same: Any) -> FileState:
    """Write the session's turns of ``where`` to ``path`` atomically; the log starts here."""
    from .fsio import write_text

    state = FileState(header=_header_sig(session))
    lines = [_line(_header(session, where))]
    for index, turn in enumerate(session.turns):
        if same(turn):
            lines.append(_line({"record": "turn", "turn": turn.model_dump(mode="json")}))
            state.wrote(index, turn)
    state.examined = len(session.turns)
    write_text(path, "".join(lines), redact=False)
    state.identity = _identity(path)
    return state


def append_changes(
    session: Session,
    path: Path,
    where: str,
    state: FileState,
    same: Any,
    changed: Turn | None = None,
) -> bool:
    """Append what changed since ``state``: new turns, and the steps and state of turns still
    running when last written or named as ``changed``. False when the file must be written
    whole."""
    from .fsio import append_text

    turns = session.turns
    if len(turns) < state.examined:
        return False  # turns were removed (reset): the log cannot say that
    try:
        if _identity(path) != state.identity:
            return False  # someone else wrote it since: do not append to their file
    except OSError:
        return False
    lines: list[str] = []
    stamp = session.updated_at
    if _header_sig(session) != state.header:
        lines.append(_line(_header(session, where)))
        state.header = _header_sig(session)
    # Only turns that can still change: the ones not finished when last written, and the one
    # the caller changed; never a walk over the whole session.
    check = set(state.running)
    if changed is not None:
        at = changed.number - 1
        if not (0 <= at < len(turns) and turns[at] is changed):
            return False
        if at in state.written:
            check.add(at)
    for index in sorted(check):
        number, steps, fields = state.written[index]
        turn = turns[index]
        if turn.number != number or len(turn.steps) < steps:
            return False
        for record in turn.steps[steps:]:
            step = record.model_dump(mode="json")
            lines.append(
                _line({"record": "step", "turn": number, "step": step, "updated_at": stamp})
            )
        now = _state(turn)
        if now != fields:
            values = dict(zip(_STATE_KEYS, now, strict=True))
            lines.append(_line({"record": "state", "turn": number, **values, "updated_at": stamp}))
        state.wrote(index, turn)
    for index in range(state.examined, len(turns)):
        turn = turns[index]
        if same(turn):
            dumped = turn.model_dump(mode="json")
            lines.append(_line({"record": "turn", "turn": dumped, "updated_at": stamp}))
            state.wrote(index, turn)
    state.examined = len(turns)
    if lines:
        append_text(path, "".join(lines), fsync=True, redact=False)
        state.identity = _identity(path)
    return True


def is_log(text: str) -> bool:
    """Whether ``text`` is an autosave log (else it is one JSON object, e.g. an export)."""
    first = text.split("\n", 1)[0]
    try:
        head = json.loads(first)
    except ValueError:
        return False
    return isinstance(head, dict) and head.get("record") == LOG_RECORD


def parse_log(text: str, source: str) -> dict[str, Any]:
    """The session's JSON form replayed from its log; a torn last line is ignored."""
    lines = text.split("\n")
    body: dict[str, Any] = {}
    turns: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            if number == len(lines):  # no newline after it: a write cut short by a crash
                break
            raise ConfigError(f"damaged session log: {exc}", path=source, line=number) from None
        if not isinstance(record, dict):
            raise ConfigError("damaged session log: not a JSON object", path=source, line=number)
        _apply(record, body, turns, source, number)
    body["turns"] = [turns[n] for n in sorted(turns)]
    return body


def _apply(
    record: dict[str, Any],
    body: dict[str, Any],
    turns: dict[int, dict[str, Any]],
    source: str,
    line: int,
) -> None:
    kind = record.get("record")
    if kind == LOG_RECORD:
        body.update({k: v for k, v in record.items() if k != "record"})
        return
    if kind == "turn" and isinstance(record.get("turn"), dict):
        turn = record["turn"]
        turns[int(turn.get("number", 0))] = turn
        body["updated_at"] = record.get("updated_at", body.get("updated_at"))
        return
    number = record.get("turn")
    target = turns.get(number) if isinstance(number, int) else None
    if target is None or kind not in ("step", "state"):
        raise ConfigError(
            f"damaged session log: a {kind!r} record for unknown turn {number!r}",
            path=source,
            line=line,
        )
    if kind == "step":
        target.setdefault("steps", []).append(record.get("step"))
    else:
        target.update({k: record.get(k) for k in _STATE_KEYS})
    if "updated_at" in record:
        body["updated_at"] = record["updated_at"]


__all__ = ["FileState", "append_changes", "is_log", "parse_log", "write_whole"]
