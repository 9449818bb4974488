"""``driver: acp``: any agent that speaks the Agent Client Protocol over stdio.

    agents:
      my-agent:
        driver: acp
        argv: [opencode, acp]
        provider: claude      # optional: whose rehearsal environment the agent gets

The argv starts the agent; the prompt goes over JSON-RPC (``session/prompt``), never on the
command line. ``provider`` names the CLI the agent wraps (claude, codex, gemini, copilot) so a
rehearsal points it at the scripted model server exactly as it does that CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...events import Usage
from ..base import AgentRequest, ProviderEnv
from .events import AcpParser

if TYPE_CHECKING:
    from ...rehearsal.endpoint import RehearsalEndpoint


class AcpDriver:
    name = "acp"
    prompt_via = "acp"  # neither argv nor stdin: the run goes through agents.acp.run
    checks_version = False  # an ACP agent need not answer --version (many start serving)

    def __init__(
        self,
        agent: str,
        argv: list[str],
        *,
        provider: str | None = None,
        npm_package: str | None = None,
    ) -> None:
        self.agent = agent
        self.argv = list(argv)
        self.executable = argv[0]
        self.provider = provider
        self.npm_package = npm_package

    def build_argv(self, request: AgentRequest) -> list[str]:
        argv = [request.executable, *self.argv[1:]]
        if self.provider == "gemini" and (request.trusted or request.rehearsal):
            # As for the plain gemini driver: folder trust (which also loads the folder's .env
            # files) is the user's to give, or a rehearsal's throwaway HOME.
            argv += [] if "--skip-trust" in argv else ["--skip-trust"]
        return [*argv, *request.extra_args]

    def env(self, request: AgentRequest) -> dict[str, str]:
        """The wrapped CLI's own environment (telemetry and self-update off, its Node first on
        PATH): an adapter or an ``--acp`` mode runs the same CLI the plain driver runs."""
        from ..builtin import BUILTIN_DRIVERS

        if self.provider not in BUILTIN_DRIVERS:
            return {}
        own: dict[str, str] = BUILTIN_DRIVERS[self.provider]().env(request)
        return own

    def provider_env(self, endpoint: RehearsalEndpoint, step: str | None) -> ProviderEnv:
        from .rehearse import acp_provider_env

        return acp_provider_env(endpoint, self.agent, self.provider, step)

    def new_parser(self, previous_usage: Usage | None = None) -> AcpParser:
        base = previous_usage.cost_usd if previous_usage is not None else None
        return AcpParser(base_cost=base or 0.0)

    def is_genuine(self, version_output: str) -> bool:
        return True

    def install_hint(self) -> str:
        if self.npm_package:
            return f"run `make agents`, or `npm install -g {self.npm_package}`"
        where = f"agents.{self.agent}.argv"
        return f"install the ACP agent `{self.executable}` and put it on PATH ({where})"


__all__ = ["AcpDriver"]
