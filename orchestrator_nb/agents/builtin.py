"""The drivers that ship with orchestrator-nb, by their name in agents.yaml."""

from __future__ import annotations

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

__all__ = [
    "BUILTIN_DRIVERS",
    "ClaudeDriver",
    "CodexDriver",
    "CommandDriver",
    "CopilotDriver",
    "GeminiDriver",
]
