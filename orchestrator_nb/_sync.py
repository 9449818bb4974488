"""Run a coroutine to completion from sync code, also inside a running Jupyter kernel.

``asyncio.run()`` fails in a cell because the kernel's loop is already running, so there the
coroutine runs on a fresh loop in a worker thread. A KeyboardInterrupt (the kernel's Interrupt
button) cancels the coroutine, waits for its clean-up (agent processes stopped), then re-raises.

The project's own typed errors (:class:`~orchestrator_nb.errors.OrchestratorError`: a bad
workflow name, a missing folder, ...) say what to do in their message; the frames of the event
loop, of this module and of the engine that found the problem only bury it. They are re-raised
here with the traceback cut at this frame, so the user reads their own call and the message.
Any other exception (a bug) keeps its whole traceback.
"""

from __future__ import annotations

import asyncio
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
        return _run_here(make) if here else _run_in_thread(make)
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


def _run_in_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    loop = asyncio.new_event_loop()
    box: dict[str, Any] = {}
    ready = threading.Event()

    def worker() -> None:
        asyncio.set_event_loop(loop)
        task = loop.create_task(make())
        box["task"] = task
        ready.set()
        try:
            box["result"] = loop.run_until_complete(task)
        except BaseException as exc:  # handed to the calling thread below
            box["error"] = exc
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=worker, name="orchestrator-nb-run", daemon=True)
    thread.start()
    ready.wait()
    try:
        while thread.is_alive():
            thread.join(0.1)
    except KeyboardInterrupt:
        loop.call_soon_threadsafe(box["task"].cancel)
        thread.join()
        raise
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]
