"""Run a coroutine to completion from sync code, also inside a running Jupyter kernel.

``asyncio.run()`` fails in a cell because the kernel's loop is already running, so there the
coroutine runs in a worker thread on one loop kept for the kernel's life (:func:`kernel_loop`):
what a run leaves warm on purpose (a session's ACP agents, see ``agents/acp/warm.py``) is still
usable by the next cell. A KeyboardInterrupt (the kernel's Interrupt button) cancels the
coroutine, waits for its clean-up (agent processes stopped), then re-raises.

The project's own typed errors (:class:`~orchestrator_nb.errors.OrchestratorError`: a bad
workflow name, a missing folder, ...) say what to do in their message; the frames of the event
loop, of this module and of the engine that found the problem only bury it. They are re-raised
here with the traceback cut at this frame, so the user reads their own call and the message.
Any other exception (a bug) keeps its whole traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    from .errors import OrchestratorError

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        here = True
    else:
        here = False
    try:
        if here:
            return _run_here(make)
        if on_kernel_loop():  # called from a run itself: waiting on its own loop would deadlock
            return _run_in_fresh_thread(make)
        return _run_in_thread(make)
    except OrchestratorError as exc:
        error = exc
    # Outside the except block: no "During handling..." context, and no frames below this one.
    error.__suppress_context__ = True
    raise error.with_traceback(None)


def _run_here(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    loop = asyncio.new_event_loop()
    task = loop.create_task(make())
    try:
        return loop.run_until_complete(task)
    except KeyboardInterrupt:
        task.cancel()
        # Let the task's clean-up run (it stops the agent's process group) before re-raising.
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        raise
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


_KERNEL_LOOP: asyncio.AbstractEventLoop | None = None
_KERNEL_LOCK = threading.Lock()


def kernel_loop() -> asyncio.AbstractEventLoop:
    """The loop cells' runs share, running in a daemon thread (started on first use)."""
    global _KERNEL_LOOP
    with _KERNEL_LOCK:
        if _KERNEL_LOOP is None or _KERNEL_LOOP.is_closed():
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            threading.Thread(target=serve, name="orchestrator-nb-runs", daemon=True).start()
            started.wait()
            _KERNEL_LOOP = loop
        return _KERNEL_LOOP


def on_kernel_loop() -> bool:
    """True when the running loop is :func:`kernel_loop`'s (a cell's blocking run)."""
    try:
        return asyncio.get_running_loop() is _KERNEL_LOOP
    except RuntimeError:
        return False


def _run_in_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    loop = kernel_loop()
    box: dict[str, Any] = {}
    made = threading.Event()

    def begin() -> None:
        box["task"] = loop.create_task(make())
        made.set()

    loop.call_soon_threadsafe(begin)
    made.wait()
    task: asyncio.Task[T] = box["task"]
    done = threading.Event()

    def finished(_task: object) -> None:
        # What the run printed from this thread (its log lines) reaches the cell before the
        # caller's own last line: a kernel's streams buffer other threads' writes.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        done.set()

    loop.call_soon_threadsafe(lambda: task.add_done_callback(finished))
    try:
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        loop.call_soon_threadsafe(task.cancel)
        done.wait()
        raise
    if task.cancelled():
        raise asyncio.CancelledError()
    error = task.exception()
    if error is not None:
        raise error
    return task.result()


def _run_in_fresh_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            box["result"] = _run_here(make)
        except BaseException as exc:  # handed to the calling thread below
            box["error"] = exc

    thread = threading.Thread(target=worker, name="orchestrator-nb-nested-run", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]
