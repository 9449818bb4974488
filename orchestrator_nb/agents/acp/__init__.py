"""ACP (Agent Client Protocol) agents: the driver, its run path, approvals and warm sessions.

The names are imported on first use: ``orchestrator_nb.config`` needs only the approval policy
(:mod:`.permissions`), and the ACP SDK under :mod:`.driver` and :mod:`.warm` costs more than the
rest of a notebook's start-up together.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .driver import AcpDriver
    from .permissions import ApprovalPolicy, ApprovalRule, PermissionHandler, PermissionRequest
    from .warm import warm_agents

_EXPORTS = {
    "AcpDriver": ".driver",
    "ApprovalPolicy": ".permissions",
    "ApprovalRule": ".permissions",
    "PermissionHandler": ".permissions",
    "PermissionRequest": ".permissions",
    "warm_agents": ".warm",
}

__all__ = [
    "AcpDriver",
    "ApprovalPolicy",
    "ApprovalRule",
    "PermissionHandler",
    "PermissionRequest",
    "warm_agents",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
