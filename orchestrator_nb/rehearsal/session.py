"""``with rehearsal(scenario) as r:`` — the server plus everything each CLI needs to use it.

``r.env(agent, step)`` and ``r.args(agent, step)`` point one run of a CLI at the server, with
an isolated ``HOME`` (``r.home``) so no real configuration or credential is read, and
``r.drop_env`` names the inherited variables that must be removed before the run (setting a
variable to "" is not the same as unsetting it for every CLI: gemini prefers a non-empty
``GOOGLE_API_KEY`` over ``GEMINI_API_KEY``, claude sends ``ANTHROPIC_AUTH_TOKEN`` as a bearer
token, and a set ``CODEX_HOME`` or ``XDG_CONFIG_HOME`` moves where configuration is read).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from orchestrator_nb.errors import RehearsalError

from ..agents.base import ProviderEnv
from ..userdirs import user_cache_dir
from .endpoint import ANY_AGENT, RehearsalEndpoint, announce, provider_settings
from .recording import RecordedRequest, to_jsonl
from .scenario import AGENTS, Scenario, load_scenario
from .server import ScriptedModelServer, prefix

# Inherited variables that carry real credentials, or that would make a CLI read real
# configuration, another provider, or a proxy instead of the rehearsal server.
DROP_ENV: frozenset[str] = frozenset(
    {
        # claude
        "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL",
        "ANTHROPIC_CUSTOM_HEADERS", "ANTHROPIC_MODEL", "ANTHROPIC_SMALL_FAST_MODEL",
        "ANTHROPIC_DEFAULT_OPUS_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL", "ANTHROPIC_BEDROCK_BASE_URL", "ANTHROPIC_VERTEX_BASE_URL",
        "ANTHROPIC_VERTEX_PROJECT_ID", "ANTHROPIC_FOUNDRY_API_KEY", "ANTHROPIC_FOUNDRY_BASE_URL",
        "ANTHROPIC_UNIX_SOCKET", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CODE_USE_BEDROCK",
        "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CODE_USE_FOUNDRY", "CLAUDE_CONFIG_DIR",
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
        "AWS_BEARER_TOKEN_BEDROCK",
        # codex
        "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_ORGANIZATION",
        "OPENAI_PROJECT", "CODEX_HOME", "CODEX_API_KEY", "AZURE_OPENAI_API_KEY",
        # gemini
        "GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_PROJECT_ID", "GOOGLE_CLOUD_LOCATION",
        "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_GCA", "GOOGLE_CLOUD_ACCESS_TOKEN",
        "GOOGLE_VERTEX_BASE_URL", "GOOGLE_GEMINI_BASE_URL", "GEMINI_MODEL", "GEMINI_CLI_HOME",
        "GEMINI_CLI_SYSTEM_SETTINGS_PATH", "GEMINI_CLI_SYSTEM_DEFAULTS_PATH",
        "GEMINI_DEFAULT_AUTH_TYPE", "GEMINI_CLI_USE_COMPUTE_ADC", "CLOUDSDK_CONFIG",
        "GCLOUD_PROJECT",
        # copilot
        "GH_TOKEN", "GITHUB_TOKEN", "COPILOT_GITHUB_TOKEN", "GH_ENTERPRISE_TOKEN",
        "GITHUB_ENTERPRISE_TOKEN", "GH_HOST", "COPILOT_HOME", "COPILOT_API_URL",
        "COPILOT_CONNECTION_TOKEN", "COPILOT_GH_HOST", "COPILOT_AGENT_MODEL",
        "COPILOT_PROVIDER_BEARER_TOKEN", "COPILOT_PROVIDER_HEADERS",
        "COPILOT_PROVIDER_API_KEY_COMMAND", "COPILOT_PROVIDER_WIRE_API",
        "COPILOT_PROVIDER_MODEL_ID", "COPILOT_PROVIDER_WIRE_MODEL", "COPILOT_PROVIDER_TRANSPORT",
        "COPILOT_PROVIDER_AZURE_API_VERSION",
        # configuration homes and proxies (a proxy would swallow the 127.0.0.1 traffic)
        "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME",
        "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
    }
)  # fmt: skip


class Rehearsal:
    """A running scripted model server and the settings that point each CLI at it."""

    drop_env: frozenset[str] = DROP_ENV

    def __init__(
        self,
        scenario: str | os.PathLike[str] | Scenario,
        *,
        workspace: str | os.PathLike[str] | None = None,
        home: str | os.PathLike[str] | None = None,
        cli_max_retries: int | None = None,
        package_cache: str | os.PathLike[str] | bool | None = True,
    ) -> None:
        self.scenario = load_scenario(scenario if isinstance(scenario, Scenario) else str(scenario))
        retries = cli_max_retries
        if retries is None:
            retries = self.scenario.settings.cli_max_retries
        self.cli_max_retries = retries
        # Copilot unpacks ~235 MB of itself into its cache on first start; sharing that cache
        # (it holds no configuration or credential) saves the unpacking on every rehearsal.
        if package_cache is True:
            package_cache = default_package_cache()
        self.package_cache = Path(package_cache) if package_cache else None
        if self.package_cache is not None:
            try:
                self.package_cache.mkdir(parents=True, exist_ok=True)
            except OSError:
                self.package_cache = None  # a read-only cache dir: unpack into HOME instead
        if home is not None and Path(home).expanduser().resolve() == Path.home().resolve():
            # The rehearsal writes settings files into its HOME; never into the user's own.
            raise RehearsalError(
                "a rehearsal needs a HOME of its own, not the real one",
                hint="leave home=None for a fresh temporary folder",
            )
        self._own_home = home is None
        self.home = Path(home) if home else Path(tempfile.mkdtemp(prefix="rehearsal-home-"))
        # Throwaway keys: each CLI insists on some key; none of them is worth anything.
        self._keys: dict[str, str] = {
            a: f"rehearsal-{'any' if a == ANY_AGENT else a}-{secrets.token_hex(16)}"
            for a in (*AGENTS, ANY_AGENT)
        }
        self._server = ScriptedModelServer(self.scenario, secrets=self._keys.values())
        self.workspace = workspace
        self._closed = False
        try:
            self._prepare_home()
            self.url: str = self._server.start()
        except BaseException:
            self._cleanup_home()
            raise
        announce(self.url, self._server)
        # A rehearsal that is never closed still stops its server and removes its home when it
        # is garbage-collected or the interpreter exits (a notebook cell that raised, say).
        owned = self.home if self._own_home else None
        self._finalizer = weakref.finalize(self, _shutdown, self._server, owned)

    # ------------------------------------------------------------------ public

    @property
    def workspace(self) -> Path | None:
        """Fallback working directory for relative paths when a request does not state one."""
        ws = self._server.workspace
        return Path(ws) if ws else None

    @workspace.setter
    def workspace(self, value: str | os.PathLike[str] | None) -> None:
        self._server.workspace = str(Path(value).resolve()) if value is not None else None

    def base_url(self, agent: str, step: str | None = None) -> str:
        """``URL/r/AGENT/STEP``: the run's own prefix, before the CLI's API path."""
        self._check(agent)
        return self.url + prefix(agent, step)

    @property
    def endpoint(self) -> RehearsalEndpoint:
        """This rehearsal as plain, picklable data: what a run (here or on a worker) needs."""
        if self._closed:
            raise RehearsalError("this rehearsal is closed", hint="start a new one")
        models = {a: self.scenario.settings.model_for(a) for a in AGENTS}
        return RehearsalEndpoint(
            url=self.url,
            home=str(self.home),
            keys=tuple(self._keys.items()),
            models=tuple((a, m) for a, m in models.items() if m),
            cli_max_retries=self.cli_max_retries,
            package_cache=str(self.package_cache) if self.package_cache is not None else None,
            drop_env=self.drop_env,
            scenario=self.scenario.name,
        )

    def env(
        self,
        agent: str,
        step: str | None = None,
        *,
        workspace: str | os.PathLike[str] | None = None,
    ) -> dict[str, str]:
        """Environment overrides for one run of ``agent``; apply after removing drop_env.

        ``workspace`` registers the run's working directory with the server, for requests
        that do not state one (all four pinned CLIs do; a future version might not).
        The variables are the driver's own (:meth:`Driver.provider_env`).
        """
        return dict(self._provider(agent, step, workspace).env)

    def args(self, agent: str, step: str | None = None) -> list[str]:
        """Extra command-line flags: codex's provider ``-c`` flags and ``-m``; [] otherwise."""
        return list(self._provider(agent, step, None).args)

    def _provider(
        self, agent: str, step: str | None, workspace: str | os.PathLike[str] | None
    ) -> ProviderEnv:
        from ..agents.builtin import BUILTIN_DRIVERS

        self._check(agent)
        driver = BUILTIN_DRIVERS[agent]()
        return provider_settings(self.endpoint, driver, step, workspace=workspace)

    def subprocess_env(
        self,
        agent: str,
        step: str | None = None,
        base: Mapping[str, str] | None = None,
        *,
        workspace: str | os.PathLike[str] | None = None,
    ) -> dict[str, str]:
        """``base`` (default ``os.environ``) minus :attr:`drop_env`, plus :meth:`env`."""
        inherited = os.environ if base is None else base
        env = {k: v for k, v in inherited.items() if k not in self.drop_env}
        return env | self.env(agent, step, workspace=workspace)

    def new_run(self, workspace: str | os.PathLike[str] | None = None) -> None:
        """Serve another run: the scenario afresh (faults fire again, a new recording), with
        ``workspace`` as the fallback folder."""
        self._server.new_run()
        self.workspace = workspace

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, oldest first (a copy)."""
        return self._server.requests

    def requests_for(
        self, agent: str | None = None, step: str | None = None, kind: str | None = None
    ) -> list[RecordedRequest]:
        """The recorded requests of one agent / step / kind (``"turn"``, ``"utility"``...)."""
        return [
            q
            for q in self.requests
            if (agent is None or q.agent == agent)
            and (step is None or q.step == step)
            and (kind is None or q.kind == kind)
        ]

    def dump(self, path: str | os.PathLike[str]) -> Path:
        """Write the recording as JSON lines (no credentials in it; prompts redacted)."""
        from ..fsio import write_text

        target = Path(path)
        return write_text(target, to_jsonl(self.requests), anchor=target.parent)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Rehearsal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Rehearsal:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.url
        return f"<Rehearsal {self.scenario.name!r} {state} requests={len(self.requests)}>"

    # ------------------------------------------------------------------ internals

    def _check(self, agent: str) -> None:
        if agent not in AGENTS:
            raise RehearsalError(
                f"unknown agent {agent!r}", hint=f"rehearsal speaks for {', '.join(AGENTS)}"
            )
        if self._closed:
            raise RehearsalError("this rehearsal is closed", hint="start a new one")

    def _prepare_home(self) -> None:
        gemini_dir = self.home / ".gemini"
        gemini_dir.mkdir(parents=True, exist_ok=True)
        settings: dict[str, object] = {
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
            "privacy": {"usageStatisticsEnabled": False},
            "telemetry": {"enabled": False},
        }
        if self.cli_max_retries is not None:
            general = settings["general"]
            assert isinstance(general, dict)
            general["maxAttempts"] = self.cli_max_retries + 1
        text = json.dumps(settings, indent=2) + "\n"
        (gemini_dir / "settings.json").write_text(text, encoding="utf-8")
        for sub in (".codex", ".copilot", ".claude", ".config", ".cache"):
            (self.home / sub).mkdir(exist_ok=True)
        # Agents that commit need an identity; the real ~/.gitconfig stays out of reach.
        (self.home / ".gitconfig").write_text(
            "[user]\n\tname = orchestrator-nb rehearsal\n\temail = rehearsal@localhost\n",
            encoding="utf-8",
        )

    def _cleanup_home(self) -> None:
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)


def _shutdown(server: ScriptedModelServer, home: Path | None) -> None:
    server.close()
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)


def default_package_cache() -> Path:
    """Where CLI code caches are shared between rehearsals (``~/.cache/orchestrator-nb``)."""
    return user_cache_dir() / "rehearsal"


def rehearsal(
    scenario: str | os.PathLike[str] | Scenario = "write-file",
    *,
    workspace: str | os.PathLike[str] | None = None,
    home: str | os.PathLike[str] | None = None,
    cli_max_retries: int | None = None,
    package_cache: str | os.PathLike[str] | bool | None = True,
) -> Rehearsal:
    """Start a scripted model server for ``scenario``; use it as a (async) context manager.

    ``scenario`` is a YAML path, the name of a shipped scenario (``write-file``,
    ``calculator``, ``rate-limit``, ``hang``, ...) or a :class:`Scenario`. ``workspace`` is
    where relative scenario paths point when a request does not name its working directory.
    ``cli_max_retries`` bounds each CLI's own retry loop (default: the scenario's setting).
    ``package_cache`` is a directory shared by rehearsals for CLI code caches (copilot unpacks
    itself there); ``True`` means :func:`default_package_cache`, ``None`` keeps it in ``home``.
    """
    return Rehearsal(
        scenario,
        workspace=workspace,
        home=home,
        cli_max_retries=cli_max_retries,
        package_cache=package_cache,
    )
