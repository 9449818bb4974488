"""Any other agent CLI, configured in agents.yaml: an argv template and plain-text output.

::

    my-agent:
      driver: command
      argv: ["mytool", "--ask", "{prompt}", "--cwd", "{workspace}"]
      prompt_via: arg        # or "stdin": the prompt is written to stdin, then stdin is closed

``{prompt}``, ``{workspace}`` and ``{model}`` are filled in inside each list element, in a single
pass (a prompt containing "{workspace}" stays as written); there is never a shell. Other braces
(JSON arguments) are left alone. Stdout is the answer. Sessions (resume) and max_turns mean
nothing to an arbitrary tool and are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..errors import AgentConfigError, ConfigError
from ..events import Event, TextEvent, Usage
from ._jsonl import stderr_tail, strip_ansi
from .base import AgentRequest, ProviderEnv, Verdict

if TYPE_CHECKING:
    from ..rehearsal.endpoint import RehearsalEndpoint

_PLACEHOLDER_RE = re.compile(r"\{(prompt|workspace|model)\}")


class CommandParser:
    """Plain text: every stdout line is part of the answer."""

    def __init__(self, agent: str = "command", allow_empty: bool = False) -> None:
        self.agent = agent
        self.allow_empty = allow_empty
        self.lines: list[str] = []

    def feed(self, line: str) -> list[Event]:
        line = strip_ansi(line).rstrip("\r")
        self.lines.append(line)
        return [TextEvent(line + "\n", delta=True)]

    @property
    def text(self) -> str:
        return "\n".join(self.lines).strip("\n")

    def finish(self, exit_code: int | None, stderr: str) -> Verdict:
        text = self.text
        tail = stderr_tail(stderr)
        detail = f": {tail}" if tail else ""
        if exit_code is None:
            return Verdict(
                ok=False,
                text=text,
                error_kind="crashed",
                error_message=f"{self.agent} was stopped before it finished",
                hint="see the timeout / cancel that stopped it",
            )
        if exit_code in (126, 127):
            # What a wrapper script returns when the program it runs is missing.
            return Verdict(
                ok=False,
                text=text,
                error_kind="not_installed",
                error_message=f"{self.agent} could not run its program (exit {exit_code}){detail}",
                hint="check that the program in `argv` is installed and executable",
            )
        if exit_code != 0:
            return Verdict(
                ok=False,
                text=text,
                error_kind="failed",
                error_message=f"{self.agent} exited with code {exit_code}{detail}",
                hint="run the command by hand in the workspace to see what it needs",
            )
        if not text.strip() and not self.allow_empty:
            return Verdict(
                ok=False,
                error_kind="failed",
                error_message=f"{self.agent} exited 0 but printed nothing{detail}",
                hint="check the argv template; set allow_empty if no output is expected",
            )
        return Verdict(ok=True, text=text)


class CommandDriver:
    """``CommandDriver(name=..., argv=[...], prompt_via="arg" | "stdin")``.

    ``allow_empty``: an exit 0 with no output counts as success. ``env``: extra environment.
    ``install``: the install hint to show. ``version_pattern``: a regex ``--version`` output must
    match to count as this tool (default: anything).
    """

    npm_package: str | None = None

    def __init__(
        self,
        name: str = "command",
        argv: Sequence[str] = (),
        prompt_via: str = "arg",
        *,
        allow_empty: bool = False,
        env: Mapping[str, str] | None = None,
        install: str | None = None,
        version_pattern: str | None = None,
    ) -> None:
        where = f"agents.{name}"
        if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
            raise ConfigError(
                "`argv` must be a non-empty list of strings",
                key=f"{where}.argv",
                hint='e.g. argv: ["my-cli", "--prompt", "{prompt}"]',
            )
        if prompt_via not in ("arg", "stdin"):
            raise ConfigError(
                f"prompt_via must be 'arg' or 'stdin', not {prompt_via!r}",
                key=f"{where}.prompt_via",
            )
        if prompt_via == "arg" and not any("{prompt}" in a for a in argv):
            raise ConfigError(
                "prompt_via is 'arg' but no argv element contains {prompt}",
                key=f"{where}.argv",
                hint='add "{prompt}" to argv, or set prompt_via: stdin',
            )
        self.name = name
        self.argv = list(argv)
        self.executable = self.argv[0]
        self.prompt_via = prompt_via
        self.allow_empty = allow_empty
        self.extra_env = dict(env or {})
        self.install = install
        try:
            self.version_re = re.compile(version_pattern) if version_pattern else None
        except re.error as exc:
            raise ConfigError(
                f"version_pattern is not a valid regular expression: {exc}",
                key=f"{where}.version_pattern",
            ) from None

    def build_argv(self, request: AgentRequest) -> list[str]:
        values = {
            "prompt": request.prompt,
            "workspace": str(request.workspace),
            "model": request.model,
        }

        def fill(match: re.Match[str]) -> str:
            value = values[match.group(1)]
            if value is None:
                raise AgentConfigError(
                    f"the argv template of {self.name!r} uses {{model}} but no model was given",
                    agent=self.name,
                    hint="set `model` for this agent, or remove {model} from argv",
                )
            return value

        filled = [_PLACEHOLDER_RE.sub(fill, part) for part in self.argv[1:]]
        return [request.executable, *filled, *request.extra_args]

    def env(self, request: AgentRequest) -> dict[str, str]:
        return {"NO_COLOR": "1", **self.extra_env}

    def provider_env(self, endpoint: RehearsalEndpoint, step: str | None) -> ProviderEnv:
        # An arbitrary tool: it is told where the server is and which key to send, and its
        # argv or a wrapper passes them on (the server speaks the Anthropic, OpenAI and
        # Gemini APIs under that URL).
        return ProviderEnv(
            {
                "ORCHESTRATOR_REHEARSAL_URL": endpoint.base_url(self.name, step),
                "ORCHESTRATOR_REHEARSAL_KEY": endpoint.key(self.name),
            }
        )

    def new_parser(self, previous_usage: Usage | None = None) -> CommandParser:
        # Usage in this CLI's stream is per run already; nothing to subtract.
        return CommandParser(self.name, self.allow_empty)

    @property
    def checks_version(self) -> bool:
        # An arbitrary CLI may have no --version; only ask when a pattern must be matched.
        return self.version_re is not None

    def is_genuine(self, version_output: str) -> bool:
        if self.version_re is None:
            return True
        return bool(self.version_re.search(version_output))

    def install_hint(self) -> str:
        return self.install or f"install `{self.executable}` and make sure it is on PATH"
