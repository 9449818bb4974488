"""The drivers that ship with orchestrator-nb, by their name in agents.yaml."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .claude import ClaudeDriver
from .codex import CodexDriver
from .command import CommandDriver
from .copilot import CopilotDriver
from .gemini import GeminiDriver

BUILTIN_DRIVERS: dict[str, type] = {
    "claude": ClaudeDriver,
    "codex": CodexDriver,
    "gemini": GeminiDriver,
    "copilot": CopilotDriver,
    "command": CommandDriver,
}

if TYPE_CHECKING:
    from .base import Driver

    # Makes mypy check every driver class against the Driver protocol, signatures included.
    _CONFORMS: tuple[Driver, ...] = (
        ClaudeDriver(),
        CodexDriver(),
        GeminiDriver(),
        CopilotDriver(),
        CommandDriver(name="x", argv=["x", "{prompt}"]),
    )

__all__ = [
    "BUILTIN_DRIVERS",
    "ClaudeDriver",
    "CodexDriver",
    "CommandDriver",
    "CopilotDriver",
    "GeminiDriver",
]
