"""orchestrator-nb as an ACP agent: a whole multi-vendor workflow behind one agent.

``orchestrator-nb acp`` serves the Agent Client Protocol on stdio, so any ACP client — Jupyter
AI's chat (see :mod:`.persona`), Zed, marimo — can run workflows: a prompt runs a workflow
(slash commands choose which), progress streams as a plan, each agent's text and tool calls,
the diffs of the files each step changed and the run's usage; gates become permission
requests; cancel stops every agent.
"""

from __future__ import annotations

from .agent import Options, OrchestratorAgent

__all__ = ["Options", "OrchestratorAgent"]
