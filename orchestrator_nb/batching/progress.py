"""Batch progress: an ``on_progress`` callback, and a display that suits where the batch runs.

In a notebook an updating display (one output that is redrawn, not a new line per event); in a
terminal a one-line bar on stderr; elsewhere (a log, CI) one line per finished task. No
dependencies beyond IPython, which is only touched when a kernel is already running.
"""

from __future__ import annotations

import html
import logging
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TextIO

from ..display import plural
from ..lifecycle import LifecycleEvent, StepStarted
from ..publish import show
from .result import BatchRow

log = logging.getLogger("orchestrator_nb")
ProgressKind = Literal["start", "task_started", "step", "task_finished", "done"]


@dataclass(frozen=True)
class BatchProgress:
    """Where a batch stands; handed to ``on_progress`` after every change."""

    event: ProgressKind
    total: int
    finished: int  # tasks taken from the journal included
    ok: int
    running: Mapping[str, str]  # task id → the step it is on ("" before its first)
    elapsed_s: float
    task_id: str | None = None
    row: BatchRow | None = None
    journal: str = ""  # pass it as journal= to resume the batch

    @property
    def failed(self) -> int:
        return self.finished - self.ok

    def line(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        text = f"{self.finished}/{self.total} done{failed}"
        if self.running:
            shown = [f"{t} [{s}]" if s else t for t, s in self.running.items()]
            text += " · running: " + ", ".join(shown)
        return text


ProgressCallback = Callable[[BatchProgress], Any]


class Display(Protocol):
    def update(self, progress: BatchProgress) -> None: ...

    def close(self, progress: BatchProgress) -> None: ...


class Tracker:
    """Turns task starts, lifecycle events and finished rows into :class:`BatchProgress`."""

    def __init__(
        self,
        total: int,
        done: list[BatchRow],
        callback: ProgressCallback | None,
        display: Display | None,
        *,
        journal: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.total = total
        self.finished = len(done)
        self.ok = sum(1 for row in done if row.ok)
        self.running: dict[str, str] = {}
        self.peak = 0
        self._callback = callback
        self._display = display
        self._clock = clock
        self._start = clock()
        self._failed: set[str] = set()

    def started(self, task_id: str) -> None:
        self.running[task_id] = ""
        self.peak = max(self.peak, len(self.running))
        self._emit("task_started", task_id)

    def on_lifecycle(self, task_id: str, event: LifecycleEvent) -> None:
        """Fed from the task's engine bus: which step the task is on."""
        if isinstance(event, StepStarted) and event.kind == "agent" and task_id in self.running:
            self.running[task_id] = event.step_id
            self._emit("step", task_id)

    def finished_task(self, row: BatchRow) -> None:
        self.running.pop(row.id, None)
        self.finished += 1
        self.ok += int(row.ok)
        self._emit("task_finished", row.id, row)

    def begin(self) -> None:
        self._emit("start")

    def end(self) -> None:
        progress = self._snapshot("done")
        self._call(progress)
        self._show(progress, close=True)

    def _snapshot(
        self, kind: ProgressKind, task_id: str | None = None, row: BatchRow | None = None
    ) -> BatchProgress:
        return BatchProgress(
            kind,
            self.total,
            self.finished,
            self.ok,
            dict(self.running),
            self._clock() - self._start,
            task_id,
            row,
            self.journal,
        )

    def _emit(
        self, kind: ProgressKind, task_id: str | None = None, row: BatchRow | None = None
    ) -> None:
        progress = self._snapshot(kind, task_id, row)
        self._call(progress)
        self._show(progress)

    def _call(self, progress: BatchProgress) -> None:
        if self._callback is not None:
            self._guard("on_progress", self._callback, progress)

    def _show(self, progress: BatchProgress, *, close: bool = False) -> None:
        if self._display is not None:
            show = self._display.close if close else self._display.update
            self._guard("the progress display", show, progress)

    def _guard(self, what: str, call: Callable[[BatchProgress], Any], p: BatchProgress) -> None:
        try:
            call(p)
        except Exception:  # a display or a user's callback must never stop the batch
            if what not in self._failed:
                self._failed.add(what)
                log.warning("%s failed; later failures are silent", what, exc_info=True)


class TerminalBar:
    """One line on a terminal, redrawn in place."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def update(self, progress: BatchProgress) -> None:
        width = shutil.get_terminal_size((80, 20)).columns - 1
        filled = int(20 * progress.finished / max(progress.total, 1))
        text = f"[{'#' * filled}{'-' * (20 - filled)}] {progress.line()}"
        self.stream.write("\r" + text[:width].ljust(width))
        self.stream.flush()

    def close(self, progress: BatchProgress) -> None:
        self.update(progress)
        self.stream.write("\n")
        self.stream.flush()


class LineLog:
    """One line per finished task, for logs and CI where ``\\r`` redraws would be noise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def update(self, progress: BatchProgress) -> None:
        row = progress.row
        if progress.event == "start":
            text = f"batch: {plural(progress.total, 'task')}, {progress.finished} done earlier"
        elif progress.event == "task_finished" and row is not None:
            text = f"[{progress.finished}/{progress.total}] {row.id}: {row.outcome}"
            text += f" ({row.seconds:.1f} s)"
        else:
            return
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self, progress: BatchProgress) -> None:
        pass


class _View:
    """What the notebook shows: the progress line and a bar, inline styles only."""

    def __init__(self, progress: BatchProgress) -> None:
        self.progress = progress

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        p = self.progress
        pct = int(100 * p.finished / max(p.total, 1))
        colour = "#cf222e" if p.failed else "#1a7f37"
        bar = (
            '<div style="width:240px;height:8px;background:#eaeef2;border-radius:4px">'
            f'<div style="width:{pct}%;height:8px;background:{colour};border-radius:4px"></div>'
            "</div>"
        )
        text = html.escape(f"batch: {p.line()}")
        body = f'<div style="font-family:sans-serif;font-size:13px">{bar}<div>{text}</div></div>'
        return {"text/plain": f"batch: {p.line()}", "text/html": body}


class NotebookDisplay:
    """One output in the cell, updated through its display handle."""

    def __init__(self) -> None:
        self._id = f"orchestrator-batch-{secrets.token_hex(6)}"
        self._shown = False

    def update(self, progress: BatchProgress) -> None:
        show(_View(progress), display_id=self._id, update=self._shown)
        self._shown = True

    def close(self, progress: BatchProgress) -> None:
        self.update(progress)


def choose_display(progress: bool | None, stream: TextIO | None = None) -> Display | None:
    """``False``: none; otherwise the notebook display in a kernel, a bar on a terminal, lines."""
    if progress is False:
        return None
    if _in_kernel():
        return NotebookDisplay()
    out = stream or sys.stderr
    return TerminalBar(out) if out.isatty() else LineLog(out)


def _in_kernel() -> bool:
    if "IPython" not in sys.modules:
        return False  # nothing imported IPython, so no kernel is running here
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


__all__ = [
    "BatchProgress",
    "Display",
    "LineLog",
    "NotebookDisplay",
    "ProgressCallback",
    "TerminalBar",
    "Tracker",
    "choose_display",
]
