"""The rehearsal environment of an ACP agent: that of the CLI it wraps (``provider``).

An adapter runs the real CLI underneath, so it needs what that CLI gets under rehearsal:
base URL, throwaway key, isolated HOME. Codex takes its provider as ``-c`` flags, which the
codex adapter cannot pass on; the adapter reads the same settings from ``CODEX_CONFIG`` (a JSON
object merged into each session's config) and ``MODEL_PROVIDER``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from ...rehearsal.scenario import AGENTS
from ..base import ProviderEnv

if TYPE_CHECKING:
    from ...rehearsal.endpoint import RehearsalEndpoint


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


def acp_provider_env(
    endpoint: RehearsalEndpoint, agent: str, provider: str | None, step: str | None
) -> ProviderEnv:
    """What the wrapped CLI's own driver gives it under rehearsal, in a form the adapter takes."""
    from ..builtin import BUILTIN_DRIVERS

    if provider is None or provider not in AGENTS:
        raise ConfigError(
            f"agent {agent!r} cannot be rehearsed: which model API it calls is not known"
            if provider is None
            else f"agent {agent!r} names an unknown provider {provider!r}",
            key=f"agents.{agent}.provider",
            hint="set provider: claude, codex, gemini or copilot (the CLI the agent wraps)",
        )
    own = BUILTIN_DRIVERS[provider]().provider_env(endpoint, step)
    env = dict(own.env)
    if provider == "codex":
        settings = codex_config(list(own.args))
        env["CODEX_CONFIG"] = json.dumps(settings)
        if "model_provider" in settings:
            env["MODEL_PROVIDER"] = str(settings["model_provider"])
    return ProviderEnv(env, (), served_as=provider)


__all__ = ["acp_provider_env", "codex_config"]
