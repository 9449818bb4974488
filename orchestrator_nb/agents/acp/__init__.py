"""ACP (Agent Client Protocol) agents: the driver, its run path, approvals and warm sessions."""

from .driver import AcpDriver
from .permissions import ApprovalPolicy, ApprovalRule, PermissionHandler, PermissionRequest
from .warm import warm_agents

__all__ = [
    "AcpDriver",
    "ApprovalPolicy",
    "ApprovalRule",
    "PermissionHandler",
    "PermissionRequest",
    "warm_agents",
]
