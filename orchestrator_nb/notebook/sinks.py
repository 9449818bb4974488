"""Where live areas go: display handles in a cell, and the timer that throttled updates use.

:class:`CellSink` pins the cell that was executing when it was made, so updates sent later from
a run's worker thread or a timer land there. :func:`timer_schedule` runs a callback once after a
delay on a named daemon timer thread, cancellable; the live display's throttle and its ticker
use it, and tests check by that name that none outlives a run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from ..publish import emit

Bundle = dict[str, str]
Cancel = Callable[[], None]
Schedule = Callable[[float, Callable[[], None]], Cancel]


class DisplaySink(Protocol):
    """Where areas live. ``live`` is False where an update would print again (a terminal)."""

    live: bool

    def show(self, display_id: str, bundle: Bundle) -> None: ...

    def update(self, display_id: str, bundle: Bundle) -> None: ...


class CellSink:
    """Display handles in the cell that was executing when this sink was made.

    The parent header is captured now and pinned around every publish, so output sent from the
    run's worker thread (or a timer) lands in this cell, not in whichever cell runs later.
    """

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        pub = shell.display_pub
        self._parent: dict[str, Any] = dict(getattr(pub, "parent_header", None) or {})
        # IPython's plain DisplayPublisher prints text/plain: an update would print it again.
        from IPython.core.displaypub import DisplayPublisher

        self.live = type(pub) is not DisplayPublisher

    def _publish(self, display_id: str, bundle: Bundle, update: bool) -> None:
        pub = self.shell.display_pub
        token = None
        if self._parent and hasattr(pub, "set_thread_parent"):
            token = pub.set_thread_parent(self._parent)
        try:
            emit(pub, bundle, display_id=display_id, update=update)
        finally:
            if token is not None:
                pub.reset_thread_parent(token)

    def show(self, display_id: str, bundle: Bundle) -> None:
        self._publish(display_id, bundle, False)

    def update(self, display_id: str, bundle: Bundle) -> None:
        self._publish(display_id, bundle, True)

    def add_widget(self, widget: Any) -> None:
        """Show a widget (a question, a gate) in this cell, below what it shows already."""
        self.show(f"orchestrator-widget-{id(widget)}", widget._repr_mimebundle_())


TIMER_THREAD = "orchestrator-nb-live"


def timer_schedule(delay: float, fn: Callable[[], None]) -> Cancel:
    timer = threading.Timer(delay, fn)
    timer.name = TIMER_THREAD  # tests check that none is left once a run is over
    timer.daemon = True
    timer.start()
    return timer.cancel


__all__ = [
    "TIMER_THREAD",
    "Bundle",
    "Cancel",
    "CellSink",
    "DisplaySink",
    "Schedule",
    "timer_schedule",
]
