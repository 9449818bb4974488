"""The driver interface: the one small thing each agent CLI implements.

A driver builds the argv and environment for one run, and gives a fresh :class:`StreamParser`
that turns stdout lines into normalized events and, at the end, a :class:`Verdict`. Everything
else (the subprocess, timeouts, cancel, retries, logging, workspace) lives once, outside drivers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..errors import AgentErrorKind
from ..events import Event, FileChange, Usage

if TYPE_CHECKING:
    from ..rehearsal.endpoint import RehearsalEndpoint


@dataclass
class AgentRequest:
    """Everything a driver needs to build one invocation."""

    prompt: str
    workspace: Path
    executable: str
    model: str | None = None
    resume: str | None = None
    max_turns: int | None = None
    # Driver-specific meaning; each driver maps it onto its CLI's own flag and documents the values.
    permission_mode: str | None = None
    # Extra flags, placed by the driver where its CLI accepts them (codex: before `resume`).
    extra_args: list[str] = field(default_factory=list)
    # Whether the user trusts the workspace: only then may the CLI follow the folder's own
    # settings (claude's project hooks and MCP servers, gemini's folder trust).
    trusted: bool = False
    # Under rehearsal the CLI runs in its own throwaway HOME against the local server.
    rehearsal: bool = False


@dataclass(frozen=True)
class ProviderEnv:
    """What one run of a CLI needs to talk to a rehearsal server: variables and flags."""

    env: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    # The agent the URLs name, when not the driver's own (an ACP adapter wrapping claude).
    served_as: str | None = None


@dataclass
class Verdict:
    """The outcome a parser decides from the events, the exit code and stderr together."""

    ok: bool
    text: str = ""
    session_id: str | None = None
    model: str | None = None
    usage: Usage = field(default_factory=Usage)
    changes: list[FileChange] = field(default_factory=list)
    error_kind: AgentErrorKind | None = None  # set when not ok
    error_message: str | None = None
    hint: str | None = None
    retryable: bool = False  # e.g. codex "Reconnecting..." errors, rate limits
    retry_after_s: float | None = None
    # The native session's running total, for CLIs that report totals (codex after a resume).
    session_usage: Usage | None = None


class StreamParser(Protocol):
    """Stateful parser for one run's stdout."""

    def feed(self, line: str) -> list[Event]:
        """Parse one stdout line (without its newline). Never raises on bad input."""
        ...

    def finish(self, exit_code: int | None, stderr: str) -> Verdict:
        """Decide the verdict once the process has ended (exit_code None: it was killed)."""
        ...


@runtime_checkable
class Driver(Protocol):
    """One agent CLI."""

    name: str  # the driver's name in config: "claude", "codex", "gemini", "copilot", "command"
    executable: str  # the default binary name looked up on PATH / in .agents
    npm_package: str | None  # for install hints; None for non-npm CLIs
    # How the prompt reaches the CLI: "arg" (one argv element) or "stdin" (written, then closed).
    prompt_via: str

    def build_argv(self, request: AgentRequest) -> list[str]:
        """The full argv, starting with ``request.executable``. Never a shell string."""
        ...

    def env(self, request: AgentRequest) -> dict[str, str]:
        """Extra environment for the run (no-colour settings and the like)."""
        ...

    def provider_env(self, endpoint: RehearsalEndpoint, step: str | None) -> ProviderEnv:
        """Point this CLI at a rehearsal server: the variables that carry its base URL
        (``endpoint.base_url(self.name, step)``), its key (``endpoint.key(self.name)``) and
        model, and any flags. The HOME and proxy settings every CLI needs are added for it.
        """
        ...

    def new_parser(self, previous_usage: Usage | None = None) -> StreamParser:
        """A fresh parser for one run.

        ``previous_usage`` is what the resumed native session had used before this run, for
        CLIs that report a thread's running total (codex); others ignore it.
        """
        ...

    def is_genuine(self, version_output: str) -> bool:
        """Whether ``--version`` output is this agent's (``copilot`` collides with AWS Copilot)."""
        ...

    def install_hint(self) -> str:
        """What to run to install the CLI."""
        ...
