"""Observability and safety: logs, metrics, the audit trail, redaction and input checks.

The engine's lifecycle events feed three subscribers (logs, metrics, audit). Every run is wired
by :func:`orchestrator_nb.runs.scope.open_run` with :func:`install`::

    uninstall = observe.install(engine.bus, workspace.state.root, breakers=engine.breakers)
    try:
        ...  # run; every event reaches the logs, the metrics and the audit trail
    finally:
        uninstall()

Submodules load on first use: ``orchestrator_nb.audit.verify`` must not pull in prometheus.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..lifecycle import EventBus, Subscriber
    from .audit import AuditTrail, VerifyResult, verify
    from .audit_subscriber import AuditSubscriber
    from .checks import check_command_argv, check_name, check_path, check_task
    from .logs import LogSubscriber, configure_logging, get_logger
    from .metrics import (
        BreakerStates,
        Metrics,
        MetricsSubscriber,
        get_metrics,
        metrics_table,
        serve_metrics,
    )
    from .redact import Redactor, add_secret, redact, redact_obj

_EXPORTS = {
    "AuditSubscriber": ".audit_subscriber",
    "AuditTrail": ".audit",
    "VerifyResult": ".audit",
    "verify": ".audit",
    "check_command_argv": ".checks",
    "check_name": ".checks",
    "check_path": ".checks",
    "check_task": ".checks",
    "LogSubscriber": ".logs",
    "configure_logging": ".logs",
    "get_logger": ".logs",
    "Metrics": ".metrics",
    "MetricsSubscriber": ".metrics",
    "get_metrics": ".metrics",
    "metrics_table": ".metrics",
    "serve_metrics": ".metrics",
    "Redactor": ".redact",
    "add_secret": ".redact",
    "redact": ".redact",
    "redact_obj": ".redact",
}


def default_subscribers(
    state_dir: str | os.PathLike[str], *, breakers: BreakerStates | None = None
) -> list[Subscriber]:
    """Logs, metrics and audit subscribers for the workspace whose state folder is ``state_dir``.

    Logs come first so that the run's context is bound before anything else reacts. Pass the
    engine's ``breakers`` to export circuit-breaker states.
    """
    from .audit_subscriber import AuditSubscriber
    from .logs import LogSubscriber, configure_logging
    from .metrics import MetricsSubscriber

    configure_logging()
    return [
        LogSubscriber(state_dir),
        MetricsSubscriber(breakers=breakers),
        AuditSubscriber(state_dir),
    ]


def install(
    bus: EventBus,
    workspace_state_dir: str | os.PathLike[str],
    *,
    breakers: BreakerStates | None = None,
) -> Callable[[], None]:
    """Subscribe :func:`default_subscribers` to ``bus``; returns the function that removes them."""
    subscribers = default_subscribers(workspace_state_dir, breakers=breakers)
    offs = [bus.subscribe(s) for s in subscribers]

    def uninstall() -> None:
        for off in offs:
            off()
        for s in subscribers:  # a run that ended without RunFinished: its audit records too
            flush = getattr(s, "flush", None)
            if flush is not None:
                flush()

    return uninstall


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AuditSubscriber",
    "AuditTrail",
    "LogSubscriber",
    "Metrics",
    "MetricsSubscriber",
    "Redactor",
    "VerifyResult",
    "add_secret",
    "check_command_argv",
    "check_name",
    "check_path",
    "check_task",
    "configure_logging",
    "default_subscribers",
    "get_logger",
    "get_metrics",
    "install",
    "metrics_table",
    "redact",
    "redact_obj",
    "serve_metrics",
    "verify",
]
