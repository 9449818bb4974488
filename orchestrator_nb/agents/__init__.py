"""Agent drivers: one small module per CLI, behind the protocol in :mod:`.base`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .availability import AgentStatusTable


def status(*args: Any, **kwargs: Any) -> AgentStatusTable:
    """Per configured agent: found or not, path, version, install hint (no network)."""
    from .availability import status as _status

    return _status(*args, **kwargs)


__all__ = ["status"]
