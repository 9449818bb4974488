"""Rehearsal: run the real agent CLIs against a scripted model server on 127.0.0.1.

No credentials, no network, no cost: the server speaks the Anthropic Messages API (claude),
the OpenAI Responses API (codex), the OpenAI Chat Completions API (copilot) and the Gemini API
(gemini), streaming, and answers from a scenario file::

    from orchestrator_nb.rehearsal import rehearsal

    with rehearsal("calculator") as r:
        env = r.subprocess_env("codex", step="implement")   # os.environ - r.drop_env + r.env()
        argv = ["codex", "exec", "--json", *r.args("codex", step="implement"), "Write calc.py"]
        ...
        r.requests      # what every CLI asked, with keys stripped
"""

from __future__ import annotations

from .recording import RecordedRequest
from .scenario import (
    AGENTS,
    Action,
    EditFile,
    Fault,
    Reply,
    Scenario,
    Settings,
    Turn,
    Usage,
    WriteFile,
    load_scenario,
    parse_scenario,
    shipped_scenarios,
)
from .server import ScriptedModelServer
from .session import DROP_ENV, Rehearsal, rehearsal

__all__ = [
    "AGENTS",
    "DROP_ENV",
    "Action",
    "EditFile",
    "Fault",
    "RecordedRequest",
    "Rehearsal",
    "Reply",
    "Scenario",
    "ScriptedModelServer",
    "Settings",
    "Turn",
    "Usage",
    "WriteFile",
    "load_scenario",
    "parse_scenario",
    "rehearsal",
    "shipped_scenarios",
]
