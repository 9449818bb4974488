"""The rehearsal environment of an ACP agent: that of the CLI it wraps (``provider``).

An adapter runs the real CLI underneath, so it needs what that CLI gets under rehearsal:
base URL, throwaway key, isolated HOME. Codex takes its provider as ``-c`` flags, which the
codex adapter cannot pass on; the adapter reads the same settings from ``CODEX_CONFIG`` (a JSON
object merged into each session's config) and ``MODEL_PROVIDER``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...config import AgentConfig
from ...errors import ConfigError


def _value(text: str) -> Any:
    return int(text) if text.isdigit() else text


def codex_config(args: list[str]) -> dict[str, Any]:
    """``-c a.b=v`` and ``-m MODEL`` flags as the nested object codex's config would hold."""
    config: dict[str, Any] = {}
    pairs = zip(args[::2], args[1::2], strict=False)
    for flag, value in pairs:
        if flag == "-m":
            config["model"] = value
            continue
        if flag != "-c" or "=" not in value:
            continue
        dotted, raw = value.split("=", 1)
        node = config
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _value(raw)
    return config


def acp_rehearsal_env(
    reh: Any, agent: str, config: AgentConfig, step: str | None, workspace: Path
) -> dict[str, str]:
    provider = config.provider
    if provider is None:
        raise ConfigError(
            f"agent {agent!r} cannot be rehearsed: which model API it calls is not known",
            key=f"agents.{agent}.provider",
            hint="set provider: claude, codex, gemini or copilot (the CLI the agent wraps)",
        )
    env: dict[str, str] = dict(reh.env(provider, step, workspace=workspace))
    if provider == "codex":
        settings = codex_config(list(reh.args(provider, step)))
        env["CODEX_CONFIG"] = json.dumps(settings)
        if "model_provider" in settings:
            env["MODEL_PROVIDER"] = str(settings["model_provider"])
    return env


__all__ = ["acp_rehearsal_env", "codex_config"]
