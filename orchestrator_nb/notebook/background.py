"""Background runs: the kernel stays free while a workflow runs in a worker thread.

:func:`start` (and ``%%orchestrate --background``) returns a :class:`Run` at once: ``cancel()``,
``done()``, ``result()``, and ``await run``. Output keeps arriving in the originating cell through
widgets (a box with one area per step), which a frontend updates whichever cell runs meanwhile.

Batch execution (nbclient, papermill) only records output of the cell that is executing, so
there a background run is awaited at the end of its cell, and the cell says so: batch must not
drop output.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from ..publish import set_outputs
from ..workflow.result import WorkflowResult
from .gates import frontend_is_interactive
from .live import Bundle

MakeRun = Callable[[asyncio.Event], Coroutine[Any, Any, WorkflowResult]]
BATCH_NOTE = (
    "--background: batch execution keeps only the output of the running cell, "
    "so this run is awaited at the end of the cell"
)


class WidgetSink:
    """A box of output widgets: areas a frontend keeps updating after the cell has finished."""

    live = True

    def __init__(self) -> None:
        import ipywidgets as widgets

        self._widgets = widgets
        self.box = widgets.VBox([])
        self._areas: dict[str, Any] = {}
        self._lock = threading.Lock()

    def show(self, display_id: str, bundle: Bundle) -> None:
        area = self._widgets.Output()
        set_outputs(area, [bundle])
        with self._lock:
            self._areas[display_id] = area
            self.box.children = (*self.box.children, area)

    def update(self, display_id: str, bundle: Bundle) -> None:
        with self._lock:
            area = self._areas.get(display_id)
        if area is None:
            self.show(display_id, bundle)
        else:
            set_outputs(area, [bundle])

    def add_widget(self, widget: Any) -> None:
        with self._lock:
            self.box.children = (*self.box.children, widget)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.box._repr_mimebundle_(include=include, exclude=exclude)


class Run:
    """A run in a worker thread: ``cancel()``, ``done()``, ``result()``, awaitable."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._future: concurrent.futures.Future[WorkflowResult] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancel: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.cancel_requested = False

    def _launch(self, make: MakeRun) -> None:
        def worker() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                self._cancel = asyncio.Event()
                self._loop = loop
                self._ready.set()
                task = loop.create_task(make(self._cancel))
                self._future.set_result(loop.run_until_complete(task))
            except BaseException as exc:  # handed to whoever asks for the result
                if not self._future.done():
                    self._future.set_exception(exc)
            finally:
                self._ready.set()
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=worker, name=f"orchestrator-nb {self.label}")
        self._thread.daemon = True
        self._thread.start()
        self._ready.wait()

    def cancel(self) -> bool:
        """Ask the run to stop: running agents are stopped, the result says cancelled."""
        if self.done() or self._loop is None or self._cancel is None:
            return False
        self.cancel_requested = True
        try:
            self._loop.call_soon_threadsafe(self._cancel.set)
        except RuntimeError:  # the loop closed meanwhile: it is done
            return False
        return True

    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout: float | None = None) -> WorkflowResult:
        """Wait for the result; Ctrl-C (the kernel's interrupt) cancels the run and waits."""
        try:
            return self._future.result(timeout)
        except KeyboardInterrupt:
            self.cancel()
            concurrent.futures.wait([self._future])
            raise

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self._future.exception(timeout)

    def add_done_callback(self, fn: Callable[[Run], Any]) -> None:
        self._future.add_done_callback(lambda _f: fn(self))

    def __await__(self) -> Generator[Any, None, WorkflowResult]:
        return asyncio.wrap_future(self._future).__await__()

    def status(self) -> str:
        if not self.done():
            return "cancelling" if self.cancel_requested else "running"
        error = self._future.exception()
        if error is not None:
            return f"error: {type(error).__name__}: {error}"
        return self._future.result().outcome

    def __repr__(self) -> str:
        return f"<Run {self.label}: {self.status()}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        text = f"background run of {self.label}: {self.status()}"
        hint = "run.result() waits for it, run.cancel() stops it, `await run` in a cell"
        return {"text/plain": f"{text} — {hint}", "text/markdown": f"**{text}** — {hint}"}


def launch(make: MakeRun, label: str) -> Run:
    """Start ``make(cancel_event)`` on a fresh loop in a worker thread."""
    run = Run(label)
    run._launch(make)
    return run


def await_at_cell_end(shell: Any, run: Run, on_interrupt: Callable[[], None]) -> None:
    """Batch: wait for ``run`` when the cell finishes, so its output stays in this cell."""

    def wait(*_args: Any) -> None:
        shell.events.unregister("post_run_cell", wait)
        try:
            run.result()
        except KeyboardInterrupt:
            on_interrupt()
        except Exception:  # the error is shown by the run's own completion hook
            pass

    shell.events.register("post_run_cell", wait)


def start(task: str, workflow: str = "default", **kwargs: Any) -> Run:
    """Run ``workflow`` on ``task`` in the background from Python; see :func:`orchestrator_nb.run`.

    Keywords are those of ``orchestrator_nb.workflow.arun`` (``workspace``, ``rehearsal``,
    ``session``, ``max_cost_usd``, ...) plus ``quiet`` (no live output).
    """
    from IPython.core.getipython import get_ipython

    from .runner import CellRun, RunSpec

    shell = get_ipython()
    spec = RunSpec.from_python(task, workflow, **kwargs)
    cell = CellRun(spec, shell, interactive=frontend_is_interactive(shell))
    return cell.background()


__all__ = ["BATCH_NOTE", "Run", "WidgetSink", "await_at_cell_end", "launch", "start"]
