"""The user's own folders, outside every workspace: config (trust, keys, ``config.yaml``) and cache.

A workspace is someone else's repository as often as not, so what decides what may run, and the
keys that authenticate the audit trail, live here, where no clone can write.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_DIR = "orchestrator-nb"


def _xdg(variable: str, default: str) -> Path:
    base = os.environ.get(variable) or ""
    # The XDG spec: a relative value is invalid and must be ignored.
    return Path(base) if os.path.isabs(base) else Path.home() / default


def user_config_dir() -> Path:
    """``$XDG_CONFIG_HOME/orchestrator-nb`` (default ``~/.config/orchestrator-nb``)."""
    return _xdg("XDG_CONFIG_HOME", ".config") / APP_DIR


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/orchestrator-nb`` (default ``~/.cache/orchestrator-nb``)."""
    return _xdg("XDG_CACHE_HOME", ".cache") / APP_DIR


__all__ = ["APP_DIR", "user_cache_dir", "user_config_dir"]
