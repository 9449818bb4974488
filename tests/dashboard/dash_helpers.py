"""Helpers of the dashboard tests: tool checks (skip, or fail under CI) and agent processes."""

from __future__ import annotations

import os
import shutil

import pytest

from orchestrator_nb.agents.registry import agents_bin_dirs

CLIS = ("claude", "codex", "gemini", "copilot")


def require(ok: bool, reason: str) -> None:
    """Skip with ``reason`` when a tool is missing; under CI a missing tool is a failure."""
    if not ok:
        pytest.skip(reason)  # a failure under CI=true (tests/conftest.py)


def require_clis(*names: str) -> None:
    names = names or CLIS
    missing = [
        c
        for c in names
        if not shutil.which(c) and not any((d / c).exists() for d in agents_bin_dirs())
    ]
    require(shutil.which("node") is not None, "node is not installed: the agent CLIs need it")
    require(not missing, f"agent CLIs not installed ({', '.join(missing)}): run `make agents`")


def agent_processes(folder: str | os.PathLike[str]) -> list[int]:
    """Our processes whose working directory is ``folder``: the agents a run started there."""
    target = os.path.realpath(folder)
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.readlink(f"/proc/{entry.name}/cwd") == target:
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found
