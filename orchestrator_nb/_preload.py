"""Importing the run machinery in the background while a new kernel waits for its first cell.

``%load_ext orchestrator_nb`` imports next to nothing, so that loading the extension is quick;
a run needs several hundred modules (configuration and session models, the engine, the drivers,
logs, metrics and the audit trail), most of a second of CPU. :func:`start` imports them on a
daemon thread while the user writes the first cell. Whoever is about to use them calls
:func:`wait` first (the magic, the package's lazy names), so the package is never imported by two
threads at once: the waiter blocks until the thread is done, then finds the modules in place.
A failed import here is dropped: the waiter imports the module again and gets the error itself.
"""

from __future__ import annotations

import contextlib
import threading
from importlib import import_module

# What a first ``%%orchestrate`` cell imports, entry points first (each pulls in the rest).
MODULES = (
    "orchestrator_nb.sessions",
    "orchestrator_nb.config",
    "orchestrator_nb.notebook.magics",
    "orchestrator_nb.notebook.runner",
    "orchestrator_nb.workflow.api",
    "orchestrator_nb.agents.builtin",
    "orchestrator_nb.observe.logs",
    "orchestrator_nb.observe.metrics",
    "orchestrator_nb.observe.audit_subscriber",
    "orchestrator_nb.observe.receipts",
    "orchestrator_nb.secrets",
    "cryptography.hazmat.primitives.asymmetric.ed25519",  # the audit trail's signing key
)

_lock = threading.Lock()
_thread: threading.Thread | None = None


def _import_all() -> None:
    for name in MODULES:
        with contextlib.suppress(Exception):
            import_module(name)


def start() -> None:
    """Start importing :data:`MODULES` in the background (once per process)."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_import_all, name="orchestrator-nb-preload")
            _thread.daemon = True
            _thread.start()


def wait() -> None:
    """Return once the background imports (if started) are done."""
    thread = _thread
    if thread is not None and thread is not threading.current_thread():
        thread.join()


__all__ = ["MODULES", "start", "wait"]
