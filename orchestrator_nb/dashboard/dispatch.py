"""The panel's plumbing: one dispatcher for every callback, a throttle, batched widget updates.

Callbacks from buttons, observers, background threads and timers all pass through
:class:`Dispatcher`, which catches what they raise and shows it in the panel: a bug in one
callback must never leave the panel frozen or the kernel with a traceback nobody sees.
:class:`Throttle` turns many "something changed" pokes into at most one render per interval,
with the last change always rendered; :func:`batched` holds each widget's sync so one render
sends one message per widget instead of one per trait.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..notebook.live import Cancel, Schedule, timer_schedule
from ..publish import set_value

T = TypeVar("T")
log = logging.getLogger("orchestrator_nb.dashboard")
MAX_ERRORS = 20


class Dispatcher:
    """Runs callbacks, turning any exception into a message in the panel (``on_error``)."""

    def __init__(self, on_error: Callable[[str], None]) -> None:
        self._on_error = on_error
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def call(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """``fn(*args, **kwargs)``; on an exception, show it and return None."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            self.report(name, exc)
            return None

    def wrap(self, name: str, fn: Callable[[], object]) -> Callable[..., None]:
        """A widget handler (it ignores the widget or change it is called with)."""

        def handler(*_args: Any) -> None:
            self.call(name, fn)

        return handler

    def report(self, name: str, exc: BaseException) -> None:
        message = f"{name}: {type(exc).__name__}: {exc}"
        log.warning("dashboard callback %s failed", name, exc_info=exc)
        with self._lock:
            self.errors.append(message)
            del self.errors[:-MAX_ERRORS]
        try:
            self._on_error(message)
        except Exception:  # the error display itself failed: the log line is all that is left
            log.error("cannot show a dashboard error:\n%s", traceback.format_exc())


class Throttle:
    """Calls ``flush`` at most once per ``interval``; a poke inside it is sent by a timer."""

    def __init__(
        self,
        flush: Callable[[], None],
        interval: float = 0.2,
        *,
        clock: Callable[[], float] = time.monotonic,
        schedule: Schedule = timer_schedule,
    ) -> None:
        self._flush = flush
        self.interval = interval
        self._clock = clock
        self._schedule = schedule
        self._lock = threading.Lock()
        self._render = threading.RLock()  # one render at a time, whichever thread pokes
        self._last = float("-inf")
        self._timer: Cancel | None = None
        self.flushes = 0

    def poke(self) -> None:
        with self._lock:
            if self._timer is not None:
                return  # the pending timer will pick this change up
            wait = self._last + self.interval - self._clock()
            if wait > 0:
                self._timer = self._schedule(wait, self._fire)
                return
        self.now()

    def _fire(self) -> None:
        with self._lock:
            self._timer = None
        self.now()

    def now(self) -> None:
        """Render at once (the final state of a run must not wait for a timer)."""
        with self._render:
            with self._lock:
                self._last = self._clock()
            self.flushes += 1
            self._flush()

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer()
                self._timer = None


@contextlib.contextmanager
def batched(*widgets: Any) -> Iterator[None]:
    """Hold the sync of every widget: each sends its changed traits as one message at the end."""
    with contextlib.ExitStack() as stack:
        for widget in widgets:
            stack.enter_context(widget.hold_sync())
        yield


def set_if_changed(widget: Any, **values: Any) -> None:
    """Assign only what differs (containers compare by identity and would resend), redacted."""
    for name, value in values.items():
        set_value(widget, value, name)


def walk(widget: Any) -> Iterator[Any]:
    """A widget and every widget inside it (children of boxes and tabs)."""
    yield widget
    for child in getattr(widget, "children", ()) or ():
        yield from walk(child)


__all__ = ["Dispatcher", "Throttle", "batched", "set_if_changed", "walk"]
