"""Kernel-scoped sessions: the turns of a conversation with the agents, saved as they happen.

A :class:`SessionStore` lives as long as the kernel and holds several :class:`Session` objects,
one of them current. A session keeps every turn (the task, the workflow or agent, each step's
text, changes, usage, cost and native agent session id, timestamps, the rehearsal it ran under)
and saves itself after every step to ``<workspace>/.orchestrator/sessions/<id>.json``: written
whole once, then one appended line per change (:mod:`orchestrator_nb.session_file`), so a step
costs the same at turn 1,000 as at turn 1 and a kernel killed mid-run loses at most the step
that was running.

Follow-ups: :func:`~orchestrator_nb.followup.decide_followup` applies the original tool's
heuristic (action or request words on a short message) unless the user forced the choice; a
follow-up gives the agents the previous task, a summary of what they answered and the changed files
(:meth:`Session.followup_task`), and the engine sees the turns as ``history``. Only a turn that
got somewhere (:data:`CONTINUABLE`) can be continued: a failed or refused run never is.

The records of a turn live in :mod:`.session_records`. Sessions export to JSON
(schema-versioned; :meth:`SessionStore.import_file` reads it back with validation), a Markdown
transcript, and ``.ipynb`` (see :mod:`orchestrator_nb.notebook.export`).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import weakref
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from .config import validation_error
from .errors import ConfigError
from .events import StepResult
from .followup import (
    ACTION_WORDS,
    REQUEST_WORDS,
    FollowupDecision,
    decide_followup,
    with_context,
)
from .observe.redact import redact_obj
from .session_file import FileState, append_changes, is_log, parse_log, write_whole
from .session_records import (
    CONTINUABLE,
    ChangeRecord,
    ResumePoint,
    StepRecord,
    Turn,
    UsageRecord,
)

SCHEMA_VERSION = 1
KIND = "orchestrator-nb.session"
SESSIONS_DIR = Path(".orchestrator") / "sessions"
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _stamp(clock: Clock) -> str:
    return clock().isoformat(timespec="seconds")


class Session(BaseModel):
    """The turns of one conversation. Mutate it through its methods: they lock and autosave."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    name: str = Field(min_length=1)
    created_at: str
    updated_at: str
    conversation: bool = Field(default=False, description="Every new cell is a follow-up.")
    workspace: str | None = Field(default=None, description="Where it autosaves.")
    turns: list[Turn] = Field(default_factory=list)
    _lock: threading.RLock = PrivateAttr(default_factory=threading.RLock)
    _clock: Clock = PrivateAttr(default_factory=lambda: _utc_now)
    _save_error: str | None = PrivateAttr(default=None)
    _files: dict[str, FileState] = PrivateAttr(default_factory=dict)
    _listeners: list[Callable[[], Callable[[], object] | None]] = PrivateAttr(default_factory=list)

    @classmethod
    def create(cls, name: str, *, clock: Clock = _utc_now) -> Session:
        now = _stamp(clock)
        session = cls(id=secrets.token_hex(6), name=name, created_at=now, updated_at=now)
        session._clock = clock
        return session

    # -- what the engine and the agents see ----------------------------------------------

    @property
    def history(self) -> list[dict[str, Any]]:
        """Earlier finished turns for the engine's templates (``history``): task, text, …"""
        return [
            {
                "task": t.task,
                "text": t.text,
                "workflow": t.workflow,
                "agent": t.agent,
                "outcome": t.outcome,
                "changes": t.changed_paths,
            }
            for t in self.turns
            if t.outcome != "running"
        ]

    def close_agents(self) -> None:
        """Stop the ACP agents this session keeps warm between cells (see agents/acp/warm.py),
        and the scripted server its rehearsed cells share (runs/rehearsals.py)."""
        from .agents.acp.warm import close_session_agents
        from .runs.rehearsals import close_session_rehearsal

        close_session_agents(self.id)
        close_session_rehearsal(self.id)

    def history_in(self, workspace: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """:attr:`history`, of the turns run in ``workspace`` only."""
        mine = {t.number for t in self.turns_in(workspace)}
        finished = [t for t in self.turns if t.outcome != "running"]
        return [h for t, h in zip(finished, self.history, strict=True) if t.number in mine]

    def parent_turn(self, workspace: str | os.PathLike[str] | None = None) -> Turn | None:
        """The turn a follow-up in ``workspace`` continues: the last continuable one there."""
        return next((t for t in reversed(self.turns_in(workspace)) if t.continuable), None)

    def turns_in(self, workspace: str | os.PathLike[str] | None) -> list[Turn]:
        """The turns run in ``workspace`` (all turns when it is None)."""
        if workspace is None:
            return list(self.turns)
        where = _where(workspace)
        return [t for t in self.turns if t.workspace is not None and _where(t.workspace) == where]

    def resume_points(self, workspace: str | os.PathLike[str]) -> dict[str, ResumePoint]:
        """Per agent, the latest native session of a successful step in ``workspace``.

        Native sessions are kept per (agent, workspace): the CLIs keep them per working
        folder, and another folder's conversation is no context for this one.
        """
        points: dict[str, ResumePoint] = {}
        for turn in self.turns_in(workspace):
            if not turn.continuable:  # a failed turn's conversations are not continued
                continue
            for step in turn.steps:
                if step.native_session_id and step.ok:
                    used = step.session_usage.to_usage() if step.session_usage else None
                    points[step.agent] = ResumePoint(step.native_session_id, used)
        return points

    def resume_ids_for(self, workspace: str | os.PathLike[str] | None) -> dict[str, str]:
        """The latest native session id per agent of the turns in ``workspace`` (None: all)."""
        if workspace is None:
            ids: dict[str, str] = {}
            for turn in self.turns:
                for step in turn.steps:
                    if step.native_session_id and step.ok:
                        ids[step.agent] = step.native_session_id
            return ids
        return {a: p.session_id for a, p in self.resume_points(workspace).items()}

    @property
    def resume_ids(self) -> dict[str, str]:
        """The latest native session id per agent in the session's current workspace."""
        if self.workspace is None:
            return {}
        return {a: p.session_id for a, p in self.resume_points(self.workspace).items()}

    def followup_task(
        self,
        message: str,
        *,
        max_chars: int = 600,
        workspace: str | os.PathLike[str] | None = None,
    ) -> str:
        """``message`` with the previous turn's task, answers and changed files before it.

        With ``workspace``, the previous turn is the last one in that workspace.
        """
        context = self.followup_context(max_chars=max_chars, workspace=workspace)
        return with_context(context, message)

    def followup_context(
        self, *, max_chars: int = 600, workspace: str | os.PathLike[str] | None = None
    ) -> str:
        """The summary of the previous turn a follow-up replays (empty when there is none).

        Only an agent that does not continue its own native conversation needs it: one that
        resumes already has the earlier turn, and would read (and be billed for) it twice.
        """
        last = self.parent_turn(workspace)
        if last is None:
            return ""
        lines = [
            "Context: this continues the previous request in this workspace.",
            f"Previous request: {last.task.strip()}",
        ]
        answers = [s for s in last.steps if s.text]
        if answers:
            lines.append("What the agents answered:")
            for step in answers:
                text = " ".join(step.text.split())
                clipped = text if len(text) <= max_chars else text[: max_chars - 1] + "…"
                lines.append(f"- {step.label}: {clipped}")
        paths = last.changed_paths
        lines.append(f"Files changed: {', '.join(paths)}" if paths else "Files changed: none")
        return "\n".join(lines)

    # -- recording --------------------------------------------------------------------------

    def begin_turn(
        self,
        task: str,
        *,
        workflow: str | None = None,
        agent: str | None = None,
        workspace: str | os.PathLike[str] | None = None,
        decision: FollowupDecision | None = None,
        rehearsal: Any = None,
    ) -> Turn:
        with self._lock:
            turn = Turn(
                rehearsal=rehearsal_label(rehearsal),
                number=len(self.turns) + 1,
                task=task,
                workflow=workflow,
                agent=agent,
                workspace=str(workspace) if workspace is not None else None,
                followup=bool(decision and decision.followup),
                decision=str(decision) if decision else "",
                started_at=_stamp(self._clock),
            )
            self.turns.append(turn)
            if workspace is not None:
                self.workspace = str(workspace)
            self._touch()
        self._changed()
        return turn

    def record_step(self, turn: Turn, result: StepResult) -> StepRecord:
        with self._lock:
            record = StepRecord.from_result(result, _stamp(self._clock))
            turn.steps.append(record)
            self._touch(turn.workspace, turn)
        self._changed()
        return record

    def finish_turn(
        self, turn: Turn, outcome: str, *, error: str | None = None, run_id: str | None = None
    ) -> None:
        with self._lock:
            turn.outcome = outcome
            turn.error = error
            turn.run_id = run_id or turn.run_id
            turn.finished_at = _stamp(self._clock)
            self._touch(turn.workspace, turn)
        self._changed()

    def reset(self) -> None:
        with self._lock:
            self.turns.clear()
            self._touch()
        self._changed()

    def subscribe(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call ``callback()`` after each change of the turns (from whichever thread made it,
        outside the session's lock); returns what stops it. A bound method is held weakly, so
        a panel that is gone does not stay alive, or get called, for the session's sake."""
        ref: Callable[[], Callable[[], object] | None]
        if hasattr(callback, "__self__") and hasattr(callback, "__func__"):
            ref = weakref.WeakMethod(callback)
        else:
            ref = lambda: callback  # noqa: E731
        with self._lock:
            self._listeners.append(ref)

        def unsubscribe() -> None:
            with self._lock:
                if ref in self._listeners:
                    self._listeners.remove(ref)

        return unsubscribe

    def _changed(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
            self._listeners[:] = [ref for ref in listeners if ref() is not None]
        for ref in listeners:
            callback = ref()
            if callback is not None:
                try:
                    callback()
                except Exception:  # a view's bug must not break the run that recorded a step
                    import logging

                    logging.getLogger("orchestrator_nb").warning(
                        "a session listener failed", exc_info=True
                    )

    def _touch(self, workspace: str | None = None, turn: Turn | None = None) -> None:
        self.updated_at = _stamp(self._clock)
        self.autosave(workspace, changed=turn)

    # -- files ----------------------------------------------------------------------------

    @property
    def autosave_path(self) -> Path | None:
        if self.workspace is None:
            return None
        return Path(self.workspace) / SESSIONS_DIR / f"{self.id}.json"

    def autosave(self, workspace: str | None = None, *, changed: Turn | None = None) -> Path | None:
        """Save this workspace's turns to it (default: the current workspace).

        A workspace's file holds only the turns run in it: another folder's tasks and diffs
        never end up there. A failure is kept in ``save_error``, never raised mid-run.
        """
        where = workspace or self.workspace
        if where is None:
            return None
        path = Path(where) / SESSIONS_DIR / f"{self.id}.json"
        real = _where(where)

        def here(turn: Turn) -> bool:
            if turn.workspace is None:
                return False
            return turn.workspace == where or _where(turn.workspace) == real

        with self._lock:
            key = str(path)
            state = self._files.pop(key, None)
            try:
                if state is None or not append_changes(
                    self, path, str(where), state, here, changed
                ):
                    state = write_whole(self, path, str(where), here)
            except OSError as exc:
                # The next save writes the file whole again: nothing is appended after a
                # write that may have been cut short.
                self._save_error = f"autosave to {path} failed: {exc.strerror or exc}"
                return None
            self._files[key] = state
        self._save_error = None
        return path

    @property
    def save_error(self) -> str | None:
        """Why the last autosave failed (None when it worked)."""
        return self._save_error

    def to_json_dict(self, *, workspace: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """The JSON form; with ``workspace``, only the turns run there."""
        with self._lock:
            body = self.model_dump(mode="json")
            if workspace is not None:
                mine = {t.number for t in self.turns_in(workspace)}
                body["turns"] = [t for t in body["turns"] if t["number"] in mine]
                body["workspace"] = str(workspace)
        return {"kind": KIND, "schema_version": SCHEMA_VERSION, **body}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON form to ``path`` atomically."""
        # Redacted value by value before serializing: an escaped secret cannot hide from it.
        text = json.dumps(redact_obj(self.to_json_dict()), indent=1, ensure_ascii=False) + "\n"
        return atomic_write_text(Path(path), text)

    @classmethod
    def from_json_dict(cls, data: Any, *, source: str = "<data>") -> Session:
        if not isinstance(data, dict):
            raise ConfigError("a session file holds one JSON object", path=source)
        if data.get("kind") != KIND:
            raise ConfigError(
                f"not an orchestrator-nb session (kind is {data.get('kind')!r})",
                path=source,
                key="kind",
                hint="export one with `%orchestrate session export PATH`",
            )
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            newer = isinstance(version, int) and version > SCHEMA_VERSION
            raise ConfigError(
                f"schema_version {version!r} is not supported (this version reads "
                f"{SCHEMA_VERSION})",
                path=source,
                key="schema_version",
                hint="upgrade orchestrator-nb" if newer else "re-export the session",
            )
        body = {k: v for k, v in data.items() if k not in ("kind", "schema_version")}
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc, source, None, ConfigError) from None

    @classmethod
    def from_text(cls, text: str, *, source: str = "<data>") -> Session:
        """A session from an export (one JSON object) or an autosave log (JSON lines)."""
        if is_log(text):
            return cls.from_json_dict(parse_log(text, source), source=source)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not valid JSON: {exc.msg}", path=source, line=exc.lineno) from None
        return cls.from_json_dict(data, source=source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Session:
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror or exc}", path=str(file)) from None
        return cls.from_text(text, source=str(file))

    def __str__(self) -> str:
        mode = ", conversation mode" if self.conversation else ""
        n = len(self.turns)
        lines = [f"session {self.name!r} ({self.id}): {n} turn{'' if n == 1 else 's'}{mode}"]
        lines += [f"  {t.summary()}" for t in self.turns]
        return "\n".join(lines)


def _where(workspace: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(workspace))


def rehearsal_label(rehearsal: Any) -> str | None:
    """How a run's rehearsal is written down (and given back to ``--rehearse``): the scenario's
    name or path; None for a real run."""
    if rehearsal is None:
        return None
    if isinstance(rehearsal, (str, os.PathLike)):
        return os.fspath(rehearsal)
    scenario = getattr(rehearsal, "scenario", None)
    if isinstance(scenario, str):
        return scenario
    found = scenario if scenario is not None else rehearsal
    name, source = getattr(found, "name", None), getattr(found, "source", None)
    if isinstance(name, str) and isinstance(source, str) and os.path.isfile(source):
        from .rehearsal.scenario import shipped_scenarios

        shipped = shipped_scenarios().get(name)
        return name if shipped is not None and str(shipped) == source else source
    return str(name) if name else "rehearsal"  # built in code: its name, as a reminder


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` so that readers see the old file or the new one, never half of it.

    Through :mod:`orchestrator_nb.fsio`, so the file is redacted and no symlink is followed.
    """
    from .fsio import write_text

    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    return write_text(path, text)


class SessionStore:
    """The sessions of one kernel; one is current. Tests make their own, the kernel shares one."""

    def __init__(self, *, clock: Clock = _utc_now) -> None:
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._current: str | None = None
        self._lock = threading.RLock()

    @property
    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    @property
    def current(self) -> Session:
        """The current session; a first one named ``default`` is made on demand."""
        with self._lock:
            if self._current is None:
                return self.new("default")
            return self._sessions[self._current]

    def find(self, key: str) -> Session | None:
        if key in self._sessions:
            return self._sessions[key]
        return next((s for s in self._sessions.values() if s.name == key), None)

    def get(self, key: str) -> Session:
        found = self.find(key)
        if found is None:
            known = ", ".join(s.name for s in self._sessions.values()) or "none"
            raise ConfigError(
                f"no session {key!r} (known: {known})",
                key="session",
                hint="create it with `%orchestrate session new NAME`",
            )
        return found

    def new(self, name: str | None = None, *, conversation: bool = False) -> Session:
        with self._lock:
            if name is not None and self.find(name) is not None:
                raise ConfigError(
                    f"a session named {name!r} exists already",
                    key="session",
                    hint=f"switch to it with `%orchestrate session switch {name}`",
                )
            if name is None:
                n = len(self._sessions) + 1
                while self.find(f"session-{n}") is not None:
                    n += 1
                name = f"session-{n}"
            session = Session.create(name, clock=self._clock)
            session.conversation = conversation
            self._add(session)
            return session

    def switch(self, key: str) -> Session:
        with self._lock:
            session = self.get(key)
            self._current = session.id
            return session

    def get_or_create(self, name: str) -> Session:
        """``-s NAME``: that session (made if new), which becomes current."""
        with self._lock:
            found = self.find(name)
            return self.switch(found.id) if found is not None else self.new(name)

    def import_file(self, path: str | os.PathLike[str]) -> Session:
        """Read an exported JSON session; it becomes current (replacing one with its id)."""
        session = Session.load(path)
        session._clock = self._clock
        with self._lock:
            clash = self.find(session.name)
            if clash is not None and clash.id != session.id:
                session.name = f"{session.name}-{session.id[:4]}"
            self._add(session)
        return session

    def _add(self, session: Session) -> None:
        self._sessions[session.id] = session
        self._current = session.id


_DEFAULT_STORE: SessionStore | None = None


def default_store() -> SessionStore:
    """The kernel's sessions (one store per process)."""
    global _DEFAULT_STORE
    if _DEFAULT_STORE is None:
        _DEFAULT_STORE = SessionStore()
    return _DEFAULT_STORE


__all__ = [
    "ACTION_WORDS",
    "CONTINUABLE",
    "REQUEST_WORDS",
    "SCHEMA_VERSION",
    "ChangeRecord",
    "FollowupDecision",
    "ResumePoint",
    "Session",
    "SessionStore",
    "StepRecord",
    "Turn",
    "UsageRecord",
    "atomic_write_text",
    "decide_followup",
    "default_store",
    "rehearsal_label",
    "with_context",
]
