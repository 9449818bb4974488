"""Clicks that reach a blocking cell: a widget's messages are handled beside the busy cell.

A button click is a ``comm_msg`` on the shell channel. ipykernel handles shell messages on
its main thread one at a time, so while a blocking cell runs, a click waits behind it. Since
ipykernel 7 every shell message passes through a shell-channel thread that forwards it to the
main thread or to a *subshell* (a thread with its own loop), and it asks a comm which subshell
its messages belong to (``Comm._reply_subshell_for``). :func:`click_router` keeps one
subshell for the kernel's life and routes the comms of the widgets it is given there: their
clicks run at once on that thread, while every other message (the next cells' execute
requests in particular) still queues for the main thread and runs after the cell, in order.
The cell's run itself is on another thread (``_sync.kernel_loop``), and an interrupt still
reaches the main thread that waits for it.

A widget's comm is routed before the widget is shown (:func:`busy_cell_add`): a person can
only click what is on screen, so no click reaches the main thread's queue first. The subshell
is a kernel's ordinary one (``list_subshell_request`` lists it) and ends with the kernel.

Where this cannot work (an older ipykernel, subshells switched off, a plain IPython) the
router is None and the caller lets the policy decide, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

# One subshell per kernel, made on first use; None if making it failed (never retried).
_SUBSHELL: dict[int, str | None] = {}
_LOCK = threading.Lock()
CREATE_TIMEOUT = 10.0  # seconds to wait for the shell-channel thread to make the subshell

Route = Callable[[Any], None]


def _kernel_supports_routing(kernel: Any) -> bool:
    try:
        from ipykernel.comm.comm import BaseComm
    except ImportError:
        return False
    thread = getattr(kernel, "shell_channel_thread", None)
    return (
        thread is not None
        and hasattr(BaseComm, "_reply_subshell_for")
        and hasattr(thread, "io_loop")
        and hasattr(thread.manager, "_create_subshell")
    )


def _create_subshell(kernel: Any) -> str | None:
    """A new subshell's id, made on the shell-channel thread (its manager's only thread)."""
    thread = kernel.shell_channel_thread
    box: dict[str, str] = {}
    made = threading.Event()

    def create() -> None:
        try:
            box["id"] = thread.manager._create_subshell()
        finally:
            made.set()

    thread.io_loop.add_callback(create)
    if not made.wait(CREATE_TIMEOUT):
        return None
    return box.get("id")


def _subshell(kernel: Any) -> str | None:
    try:
        supported = _kernel_supports_routing(kernel)
    except Exception:  # a kernel laid out otherwise: no routing, the policy decides
        supported = False
    if not supported:
        return None
    with _LOCK:  # the kernel lives as long as the process: its id stays its own
        key = id(kernel)
        if key not in _SUBSHELL:
            _SUBSHELL[key] = _create_subshell(kernel)
        return _SUBSHELL[key]


def _widgets(widget: Any) -> list[Any]:
    """The widget and every widget inside it (a panel is a box of rows of buttons)."""
    found = [widget]
    for child in getattr(widget, "children", ()) or ():
        found.extend(_widgets(child))
    return found


def click_router(shell: Any) -> Route | None:
    """A function that makes a widget's clicks reach the kernel while a cell is busy, or None
    when this kernel cannot do it (the caller then keeps the policy and says why)."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return None
    subshell = _subshell(kernel)
    if subshell is None:
        return None

    def route(widget: Any) -> None:
        for each in _widgets(widget):
            comm = getattr(each, "comm", None)
            if comm is not None:
                # Looked up per message by the shell-channel thread (kernelbase.py).
                comm._reply_subshell_for = lambda _data, _default: subshell

    return route


def busy_cell_add(shell: Any, add_widget: Callable[[Any], None]) -> Callable[[Any], None] | None:
    """``add_widget`` for a blocking cell: each widget's clicks are routed beside the busy cell
    before it is shown; None when the kernel cannot do it."""
    route = click_router(shell)
    if route is None:
        return None

    def add(widget: Any) -> None:
        route(widget)
        add_widget(widget)

    return add


__all__ = ["busy_cell_add", "click_router"]
