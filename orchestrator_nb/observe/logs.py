"""Structured logs: JSON lines per workspace, a readable console form at WARNING and above.

structlog is used without touching its global configuration (``structlog.configure``): a
notebook may hold other code that configures it, and a library must not take that over. Our
loggers are wrapped explicitly (:func:`get_logger`) and end in a small router that

* appends each line as JSON to ``<state>/logs/orchestrator-YYYYMMDD.jsonl`` of the workspace
  the line belongs to (the logger's own, or the one of the run bound in this context), and
* writes WARNING and above, rendered for people, to the notebook's stderr.

Context (``run_id``, ``workflow``, ``session``, ``step``, ``agent``, ``iteration``, ``attempt``)
is bound with contextvars, so a line logged anywhere during a run carries them; parallel steps
run in their own asyncio tasks and so keep their own ``step``. Every line is redacted last.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, unbind_contextvars

from ..errors import ConfigError
from ..events import RetryEvent, ToolCallEvent, WarningEvent
from ..lifecycle import (
    AgentEventEmitted,
    AgentFallback,
    BudgetWarning,
    FileWritten,
    GateDecided,
    GateRequested,
    LifecycleEvent,
    Reverted,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
)
from .redact import Redactor, clip, clip_tail, default_redactor

LOG_DIR = "logs"
CONTEXT_KEYS = ("run_id", "workflow", "session", "step", "agent", "iteration", "attempt")
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}


class LogSink:
    """The JSON-lines files of one workspace's ``logs/`` folder, one file per UTC day."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()

    def path_for(self, when: datetime) -> Path:
        return self.directory / f"orchestrator-{when:%Y%m%d}.jsonl"

    def write(self, event_dict: dict[str, Any]) -> None:
        # timestamp, level and event first: the file is read by people with grep and less too.
        ordered: dict[str, Any] = {
            k: event_dict[k] for k in ("timestamp", "level", "event") if k in event_dict
        }
        ordered.update(event_dict)
        line = json.dumps(ordered, default=str, ensure_ascii=False) + "\n"
        path = self.path_for(datetime.now(timezone.utc))
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            # One write on an O_APPEND descriptor: lines of parallel steps and of other
            # processes never interleave within a line.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8", errors="replace"))
            finally:
                os.close(fd)


_sinks: dict[Path, LogSink] = {}
_sinks_lock = threading.Lock()


def sink_for(state_dir: str | os.PathLike[str]) -> LogSink:
    """The (shared) sink of the workspace whose state folder is ``state_dir``."""
    directory = Path(state_dir).absolute() / LOG_DIR
    with _sinks_lock:
        return _sinks.setdefault(directory, LogSink(directory))


# Which workspace's file a line goes to when its logger has none of its own.
_current_sink: contextvars.ContextVar[LogSink | None] = contextvars.ContextVar(
    "orchestrator_nb_log_sink", default=None
)


class _Settings:
    file_level = logging.INFO
    console_level = logging.WARNING
    console = True


settings = _Settings()


class _Router:
    """The wrapped logger at the end of the processor chain: file and console outputs."""

    def __init__(self, sink: LogSink | None) -> None:
        self.sink = sink
        self._console = structlog.dev.ConsoleRenderer(colors=False)

    def _emit(self, /, **event_dict: Any) -> None:
        level = _LEVELS.get(str(event_dict.get("level", "info")), logging.INFO)
        sink = self.sink or _current_sink.get()
        if sink is not None and level >= settings.file_level:
            sink.write(event_dict)
        if settings.console and level >= settings.console_level:
            # Looked up now, not at import: the kernel and pytest swap sys.stderr.
            text = self._console(None, "", dict(event_dict))
            sys.stderr.write(f"{text}\n")

    debug = info = warning = warn = error = critical = exception = fatal = msg = log = _emit


def _drop_below_min(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
    # Before any other work: a debug line nobody keeps costs one dict lookup.
    level = _LEVELS.get(str(event_dict.get("level", "info")), logging.INFO)
    if level < min(settings.file_level, settings.console_level if settings.console else 99):
        raise structlog.DropEvent
    return event_dict


def _redactor_processor(redactor: Redactor | None) -> Any:
    def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
        clean: dict[str, Any] = (redactor or default_redactor()).redact_obj(dict(event_dict))
        return clean

    return redact


def get_logger(
    name: str = "orchestrator_nb",
    *,
    sink: LogSink | None = None,
    redactor: Redactor | None = None,
    **initial: Any,
) -> Any:
    """A structlog logger whose lines go to ``sink`` (or the bound run's workspace) and stderr."""
    processors: list[Any] = [
        structlog.processors.add_log_level,
        _drop_below_min,
        structlog.contextvars.merge_contextvars,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redactor_processor(redactor),
    ]
    return structlog.wrap_logger(
        _Router(sink),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        context_class=dict,
    ).bind(logger=name, **initial)


class _StdlibBridge(logging.Handler):
    """Routes the stdlib ``orchestrator_nb`` logger (warnings of the bus, ...) the same way."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._log = get_logger("orchestrator_nb.stdlib")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            method = getattr(self._log, record.levelname.lower(), self._log.info)
            method(record.getMessage(), logger=record.name, exc_info=record.exc_info or False)
        except Exception:  # logging must never raise into the code that logged
            self.handleError(record)


def _level(value: int | str) -> int:
    if isinstance(value, int):
        return value
    try:
        return _LEVELS[value.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown log level {value!r}", key="level", hint=f"one of {', '.join(_LEVELS)}"
        ) from None


_configured = False
_configure_lock = threading.Lock()


def configure_logging(
    *,
    file_level: int | str | None = None,
    console_level: int | str | None = None,
    console: bool | None = None,
) -> None:
    """Set levels, and bridge the stdlib ``orchestrator_nb`` logger (once per process)."""
    global _configured
    if file_level is not None:
        settings.file_level = _level(file_level)
    if console_level is not None:
        settings.console_level = _level(console_level)
    if console is not None:
        settings.console = console
    with _configure_lock:
        if not _configured:
            logging.getLogger("orchestrator_nb").addHandler(_StdlibBridge())
            _configured = True


def bind(**values: Any) -> None:
    """Bind context for every later line in this context (and tasks started from it)."""
    bind_contextvars(**{k: v for k, v in values.items() if v is not None})


def unbind(*keys: str) -> None:
    unbind_contextvars(*keys)


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Bind context for the lines logged inside the ``with`` block only."""
    with bound_contextvars(**{k: v for k, v in values.items() if v is not None}):
        yield


@contextmanager
def routed_to(state_dir: str | os.PathLike[str]) -> Iterator[LogSink]:
    """Send lines of loggers without a sink of their own to this workspace's logs."""
    token = _current_sink.set(sink_for(state_dir))
    try:
        yield sink_for(state_dir)
    finally:
        _current_sink.reset(token)


def set_current_sink(sink: LogSink | None) -> LogSink | None:
    """Route lines of sink-less loggers to ``sink`` from now on; returns the previous one."""
    previous = _current_sink.get()
    _current_sink.set(sink)
    return previous


class LogSubscriber:
    """Writes a run's lifecycle as log lines to ``<state_dir>/logs/``, and binds its context.

    Among them ``task_executed`` (the original design's event) for every finished agent step:
    ``task_id`` (the run id), ``workflow``, ``step``, ``agent``, ``duration_ms``, ``success``.
    """

    def __init__(
        self, workspace_state_dir: str | os.PathLike[str], *, redactor: Redactor | None = None
    ) -> None:
        self.sink = sink_for(workspace_state_dir)
        self.log = get_logger("orchestrator_nb.run", sink=self.sink, redactor=redactor)
        self._workflow: dict[str, str] = {}
        self._previous_sink: dict[str, LogSink | None] = {}
        self._lock = threading.Lock()

    def __call__(self, event: LifecycleEvent) -> None:
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)

    def _on_RunStarted(self, e: RunStarted) -> None:
        with self._lock:
            self._workflow[e.run_id] = e.workflow
            self._previous_sink[e.run_id] = set_current_sink(self.sink)
        bind(run_id=e.run_id, workflow=e.workflow, session=e.session)
        # Redacted before it is clipped: a cut through a secret would leave a piece no
        # pattern matches any more.
        preview = clip(e.task, 200, tail="…")
        self.log.info(
            "run_started",
            task=preview,
            task_chars=len(e.task),
            workspace=e.workspace,
            rehearsal=e.rehearsal,
        )

    def _on_RunFinished(self, e: RunFinished) -> None:
        fields = {
            "outcome": e.outcome,
            "ok": e.ok,
            "duration_ms": round(e.duration_s * 1000, 2),
            "input_tokens": e.usage.input_tokens,
            "output_tokens": e.usage.output_tokens,
            "cost_usd": e.usage.cost_usd,
        }
        if e.ok:
            self.log.info("run_finished", **fields)
        else:
            self.log.warning("run_failed", error=e.error, **fields)
        with self._lock:
            self._workflow.pop(e.run_id, None)
            previous = self._previous_sink.pop(e.run_id, None)
        set_current_sink(previous)
        unbind(*CONTEXT_KEYS)

    def _on_StepStarted(self, e: StepStarted) -> None:
        if e.kind == "agent":  # groups have no StepFinished to unbind them again
            bind(step=e.step_id, agent=e.agent, iteration=e.iteration)
        self.log.info(
            "step_started",
            step=e.step_id,
            kind=e.kind,
            agent=e.agent,
            iteration=e.iteration,
            prompt_chars=len(e.prompt) if e.prompt is not None else None,
        )

    def _on_StepFinished(self, e: StepFinished) -> None:
        r = e.result
        with self._lock:
            workflow = self._workflow.get(e.run_id)
        self.log.info(
            "task_executed",
            task_id=e.run_id,
            workflow=workflow,
            step=e.step_id,
            agent=e.agent or r.agent,
            iteration=e.iteration,
            duration_ms=round(r.duration_s * 1000, 2),
            success=r.ok,
            cached=e.cached,
            attempts=len(r.attempts),
            model=r.model,
            input_tokens=r.usage.input_tokens,
            output_tokens=r.usage.output_tokens,
            cost_usd=r.usage.cost_usd,
            changes=len(r.changes),
        )
        if not r.ok and r.error is not None:
            self.log.warning(
                "step_failed",
                step=e.step_id,
                agent=e.agent or r.agent,
                error_kind=r.error_kind,
                error=r.error.message,
                hint=r.error.hint,
                exit_code=r.exit_code,
                stderr_tail=clip_tail(r.stderr_tail, 300) or None,
            )
        unbind("step", "agent", "iteration", "attempt")

    def _on_AgentEventEmitted(self, e: AgentEventEmitted) -> None:
        ev = e.event
        if isinstance(ev, RetryEvent):
            bind(attempt=ev.attempt)
            self.log.info(
                "agent_retry",
                reason=ev.reason,
                delay_s=ev.delay_s,
                attempt=ev.attempt,
                source=ev.source,
            )
        elif isinstance(ev, WarningEvent):
            self.log.info("agent_warning", message=ev.message)
        elif isinstance(ev, ToolCallEvent):
            self.log.debug("tool_call", tool=ev.name)

    def _on_AgentFallback(self, e: AgentFallback) -> None:
        self.log.info(
            "agent_fallback", step=e.step_id, agent=e.from_agent, to=e.to_agent, kind=e.kind
        )

    def _on_GateRequested(self, e: GateRequested) -> None:
        self.log.info("gate_requested", step=e.step_id, message=e.message)

    def _on_GateDecided(self, e: GateDecided) -> None:
        self.log.info("gate_decided", step=e.step_id, decision=e.decision, by=e.by)

    def _on_BudgetWarning(self, e: BudgetWarning) -> None:
        self.log.warning("budget_warning", budget=e.budget, used=e.used, limit=e.limit)

    def _on_FileWritten(self, e: FileWritten) -> None:
        self.log.info("file_written", step=e.step_id, path=e.path, backup=e.backup)

    def _on_Reverted(self, e: Reverted) -> None:
        self.log.info("reverted", step=e.step_id, paths=e.paths)


__all__ = [
    "CONTEXT_KEYS",
    "LOG_DIR",
    "LogSink",
    "LogSubscriber",
    "bind",
    "bound",
    "configure_logging",
    "get_logger",
    "routed_to",
    "set_current_sink",
    "settings",
    "sink_for",
    "unbind",
]
