"""The Jupyter AI persona: ``@Orchestrator`` in JupyterLab's chat runs orchestrator-nb workflows.

Installed with ``pip install "orchestrator-nb[jupyter-ai]"``, which brings Jupyter AI and its
ACP client; the entry point ``jupyter_ai.personas`` → ``orchestrator-nb`` makes Jupyter AI load
this class, which starts ``python -m orchestrator_nb.acpserver`` as its ACP agent. Each chat
gets its own session, in the folder of its ``.chat`` file.

``ORCHESTRATOR_NB_ACP_ARGS`` (read when JupyterLab starts) adds arguments to that command,
split like a command line but never run by a shell: e.g. ``--rehearse calculator`` to rehearse
every run, or ``--workflow quick``.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from jupyter_ai_persona_manager import PersonaDefaults, PersonaRequirementsUnmet

try:
    from jupyter_ai_acp_client.base_acp_persona import BaseAcpPersona
except ImportError as exc:  # Jupyter AI without its ACP client: a warning, not a traceback
    raise PersonaRequirementsUnmet(
        "@Orchestrator needs Jupyter AI's ACP client: pip install 'orchestrator-nb[jupyter-ai]'"
    ) from exc

ARGS_ENV = "ORCHESTRATOR_NB_ACP_ARGS"
NAME = "Orchestrator"
AVATAR = Path(__file__).with_name("static") / "orchestrator.svg"


def executable() -> list[str]:
    """The agent's command: this interpreter, the server module, the user's extra arguments."""
    extra = shlex.split(os.environ.get(ARGS_ENV, ""))
    return [sys.executable, "-m", "orchestrator_nb.acpserver", *extra]


class OrchestratorPersona(BaseAcpPersona):
    """Several vendors' agents in one chat persona: workflows chosen by slash commands."""

    # Jupyter AI prepends this to a session's first prompt for agents that edit notebooks
    # through its MCP tools; the workflow's agents do not get those tools, and the note would
    # become part of every task.
    NOTEBOOK_EDITING_GUIDANCE = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, executable=executable(), **kwargs)

    @property
    def defaults(self) -> PersonaDefaults:
        return PersonaDefaults(
            name=NAME,
            description=(
                "orchestrator-nb: Codex, Gemini, Claude and Copilot working together in "
                "workflows (implement → review → refine, parallel reviews, best-of-n, gates). "
                "Start a message with /quick, /review, /best-of-n… to choose one."
            ),
            avatar_path=str(AVATAR),
            system_prompt="unused",
        )

    async def process_message(self, message: Any) -> None:
        # The chat keeps "@Orchestrator" in the body; the task is what follows it.
        mention = re.compile(rf"(^|\s)@{re.escape(self.as_user().mention_name)}:?(?=\s|$)")
        body = mention.sub(r"\1", message.body).strip()
        await super().process_message(replace(message, body=body))
