"""Which driver runs which agent: the built-in ones plus any registered through entry points.

A third-party package adds a driver with an entry point in the ``orchestrator_nb.agents`` group
whose object is a factory ``(name: str, config: AgentConfig) -> Driver`` (a driver class whose
constructor takes those two arguments works too).
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from ..config import AgentConfig
from ..errors import AgentNotInstalled, ConfigError
from ..observe.checks import check_command_argv
from .base import Driver

ENTRY_POINT_GROUP = "orchestrator_nb.agents"
AGENTS_DIR_ENV = "ORCHESTRATOR_NB_AGENTS_DIR"

DriverFactory = Callable[[str, AgentConfig], Driver]


def _builtin_factories() -> dict[str, DriverFactory]:
    from .builtin import BUILTIN_DRIVERS
    from .command import CommandDriver

    def simple(cls: type[Driver]) -> DriverFactory:
        return lambda _name, _config: cls()

    factories: dict[str, DriverFactory] = {
        key: simple(cls) for key, cls in BUILTIN_DRIVERS.items() if key != "command"
    }

    def command(name: str, config: AgentConfig) -> Driver:
        if not config.argv:
            raise ConfigError(
                "a `driver: command` agent needs an `argv` list",
                key=f"agents.{name}.argv",
                hint='e.g. argv: ["my-cli", "--prompt", "{prompt}"]',
            )
        # Trusted or not, a configured command is an argv list that runs no shell string.
        argv = check_command_argv(config.argv, key=f"agents.{name}.argv")
        exe = os.path.expanduser(argv[0])
        if not (shutil.which(exe) or (os.path.isfile(exe) and os.access(exe, os.X_OK))):
            raise ConfigError(
                f"the program {argv[0]!r} of agent {name!r} was not found",
                key=f"agents.{name}.argv",
                hint="install it, or give its full path as the first element of argv",
            )
        return CommandDriver(name=name, argv=argv, prompt_via=config.prompt_via or "arg")

    factories["command"] = command
    factories["acp"] = _acp
    return factories


def _acp(name: str, config: AgentConfig) -> Driver:
    from .acp.driver import AcpDriver

    if not config.argv:
        raise ConfigError(
            "a `driver: acp` agent needs an `argv` list that starts the ACP agent",
            key=f"agents.{name}.argv",
            hint="e.g. argv: [gemini, --acp]",
        )
    return AcpDriver(name, config.argv, provider=config.provider, npm_package=config.npm_package)


class DriverRegistry:
    """Driver factories by driver name. Tests build their own with :func:`default_registry`."""

    def __init__(self, factories: dict[str, DriverFactory] | None = None) -> None:
        self._factories: dict[str, DriverFactory] = dict(factories or {})

    def register(self, driver: str, factory: DriverFactory) -> None:
        self._factories[driver] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def create(self, name: str, config: AgentConfig) -> Driver:
        try:
            factory = self._factories[config.driver]
        except KeyError:
            raise ConfigError(
                f"unknown driver {config.driver!r} (known: {', '.join(self.names())})",
                key=f"agents.{name}.driver",
                hint="install the package that provides it, or use `driver: command`",
            ) from None
        driver: Driver = factory(name, config)
        return driver


def default_registry(*, plugins: bool = True) -> DriverRegistry:
    """The built-in drivers, then those from installed packages' entry points.

    Each call builds a fresh registry (tests rely on that); the entry points are scanned again
    only when ``sys.path`` changed, since the scan costs milliseconds on every run.
    """
    registry = DriverRegistry(_builtin_factories())
    if plugins:
        for name, factory in _plugins(tuple(sys.path)):
            registry.register(name, factory)
    return registry


@functools.lru_cache(maxsize=8)
def _plugins(_path: tuple[str, ...]) -> list[tuple[str, DriverFactory]]:
    return [(ep.name, ep.load()) for ep in entry_points(group=ENTRY_POINT_GROUP)]


def agents_bin_dirs() -> list[Path]:
    """Where pinned CLIs installed by ``make agents`` live, most specific first."""
    if os.environ.get(AGENTS_DIR_ENV):
        # An explicit choice replaces the defaults, so a user can pin exactly one install.
        return [Path(os.environ[AGENTS_DIR_ENV]) / "node_modules" / ".bin"]
    dirs: list[Path] = []
    project = Path(__file__).resolve().parents[2]  # a source checkout: <repo>/.agents
    dirs.append(project / ".agents" / "node_modules" / ".bin")
    dirs.append(Path.cwd() / ".agents" / "node_modules" / ".bin")
    return dirs


def candidate_paths(driver: Driver, config: AgentConfig) -> list[str]:
    """Executables to try, in order: the config's path, PATH, then the project's ``.agents``."""
    if config.path:
        return [os.path.expanduser(config.path)]
    found: list[str] = []
    on_path = shutil.which(driver.executable)
    if on_path:
        found.append(on_path)
    for directory in agents_bin_dirs():
        candidate = directory / driver.executable
        if candidate.is_file() and os.access(candidate, os.X_OK) and str(candidate) not in found:
            found.append(str(candidate))
    return found


def not_installed(
    name: str, driver: Driver, config: AgentConfig, detail: str = ""
) -> AgentNotInstalled:
    if config.path:
        return AgentNotInstalled(
            f"the configured path {config.path!r} is not a working `{driver.executable}`{detail}",
            agent=name,
            hint=f"fix agents.{name}.path, or remove it to look the CLI up on PATH",
        )
    return AgentNotInstalled(
        f"`{driver.executable}` was not found on PATH or in .agents/{detail}",
        agent=name,
        hint=driver.install_hint(),
    )
