"""A running rehearsal as plain data: where the scripted server is, and what every CLI needs.

:class:`RehearsalEndpoint` is resolved once at the edge (from a scenario name, a ``Scenario``,
a running :class:`~orchestrator_nb.rehearsal.session.Rehearsal` or an endpoint) and handed down
to every run; it is frozen and picklable, so a Ray task gets the same thing a local run does.
It knows the server (URL, throwaway keys), the isolated HOME and the settings that hold for
every CLI; what one CLI needs to reach the server (its base-URL variable, its key variable, its
flags) is the driver's own :meth:`~orchestrator_nb.agents.base.Driver.provider_env`, so any
driver, a third party's included, can be rehearsed.

:func:`rehearsal_scope` is the one place a rehearsal is started for a run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Union
from urllib.parse import urlsplit

from ..agents.base import ProviderEnv
from ..errors import RehearsalError
from .scenario import DEFAULT_MODELS, Scenario
from .server import prefix

if TYPE_CHECKING:
    from ..agents.base import Driver
    from .session import Rehearsal

ANY_AGENT = "*"  # the key of a driver the rehearsal has no key of its own for


class _Registers(Protocol):
    run_workspaces: dict[tuple[str, str | None], str]


# Servers running in this process, by URL: a run registers its working directory with its
# server (for requests that do not state one). An endpoint in another process has none here.
_LIVE: weakref.WeakValueDictionary[str, _Registers] = weakref.WeakValueDictionary()


@dataclass(frozen=True)
class RehearsalEndpoint:
    """A running rehearsal server and the settings that point a CLI at it (picklable)."""

    url: str
    home: str
    keys: tuple[tuple[str, str], ...]  # (agent, throwaway key); ANY_AGENT for the others
    models: tuple[tuple[str, str], ...] = ()  # (agent, model the scenario sets)
    cli_max_retries: int | None = None
    package_cache: str | None = None
    drop_env: frozenset[str] = frozenset()  # inherited variables to remove before a run
    scenario: str = ""

    def base_url(self, agent: str, step: str | None = None) -> str:
        """``URL/r/AGENT/STEP``: the run's own prefix, before the CLI's API path."""
        return self.url + prefix(agent, step)

    def key(self, agent: str) -> str:
        """The throwaway key of ``agent`` (the shared one for a driver the server has none for)."""
        keys = dict(self.keys)
        return keys.get(agent) or keys[ANY_AGENT]

    def model_for(self, agent: str) -> str | None:
        """The model the scenario sets for ``agent``, if any."""
        return dict(self.models).get(agent)

    def default_model(self, agent: str) -> str:
        return self.model_for(agent) or DEFAULT_MODELS.get(agent, "rehearsal")

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    def home_env(self) -> dict[str, str]:
        """What every CLI gets: the isolated HOME and config folders, no proxy, no updates."""
        home = self.home_path
        # The CLIs' temp files (gemini's gemini-client-error-*.json, say) stay in the
        # rehearsal's home, removed with it, instead of piling up in the system temp folder.
        tmp = home / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return {
            "HOME": self.home,
            "TMPDIR": str(tmp),
            "USERPROFILE": self.home,
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "DISABLE_AUTOUPDATER": "1",
            "NO_UPDATE_NOTIFIER": "1",
            "ORCHESTRATOR_REHEARSAL": "1",
        }

    def register_workspace(
        self, agent: str, step: str | None, workspace: str | os.PathLike[str]
    ) -> None:
        """Tell the server (when it runs in this process) where this run works."""
        server = _LIVE.get(self.url)
        if server is not None:
            server.run_workspaces[(agent, step)] = str(Path(workspace).resolve())

    def reachable(self, timeout: float = 2.0) -> bool:
        """Whether the server answers from here (another machine cannot reach 127.0.0.1)."""
        where = urlsplit(self.url)
        try:
            with socket.create_connection((where.hostname, where.port or 80), timeout=timeout):
                return True
        except OSError:
            return False


def provider_settings(
    endpoint: RehearsalEndpoint,
    driver: Driver,
    step: str | None = None,
    *,
    workspace: str | os.PathLike[str] | None = None,
) -> ProviderEnv:
    """Everything one run of ``driver`` needs: the common HOME settings, then the driver's own
    provider environment and flags; registers ``workspace`` with the server."""
    provide = getattr(driver, "provider_env", None)
    if provide is None:  # a third-party driver written before the hook existed
        raise RehearsalError(
            f"the driver of agent {driver.name!r} cannot be rehearsed: it has no provider_env()",
            hint="implement provider_env(endpoint, step) on the driver: the variables and flags "
            "that point its CLI at endpoint.base_url(name, step) with endpoint.key(name)",
        )
    own: ProviderEnv = provide(endpoint, step)
    if workspace is not None:
        endpoint.register_workspace(own.served_as or driver.name, step, workspace)
    return ProviderEnv({**endpoint.home_env(), **own.env}, tuple(own.args), own.served_as)


def announce(url: str, server: _Registers) -> None:
    """Called by a starting rehearsal: runs in this process may register with ``server``."""
    _LIVE[url] = server


RehearsalArg = Union[str, "os.PathLike[str]", Scenario, "Rehearsal", RehearsalEndpoint, None]


def endpoint_of(rehearsal: RehearsalArg) -> RehearsalEndpoint | None:
    """The endpoint of a running rehearsal (or None); a scenario has none until it starts."""
    from .session import Rehearsal

    if rehearsal is None or isinstance(rehearsal, RehearsalEndpoint):
        return rehearsal
    if isinstance(rehearsal, Rehearsal):
        if rehearsal.closed:
            raise RehearsalError(
                "the rehearsal passed to the run is closed",
                hint="run inside its `with rehearsal(...)` block, or pass a scenario name",
            )
        return rehearsal.endpoint
    return None


@contextlib.contextmanager
def rehearsal_scope(
    rehearsal: RehearsalArg,
    *,
    home: str | os.PathLike[str] | None = None,
    workspace: str | os.PathLike[str] | None = None,
) -> Iterator[RehearsalEndpoint | None]:
    """The endpoint of ``rehearsal``: as given when it runs, else started (and stopped) here
    from a scenario (a name, a path or a ``Scenario``). The one place a run starts one."""
    running = endpoint_of(rehearsal)
    if running is not None or rehearsal is None:
        yield running
        return
    from .session import Rehearsal

    if not isinstance(rehearsal, (str, os.PathLike, Scenario)):
        raise RehearsalError(
            f"rehearsal must be a scenario name or path, a Scenario or a running rehearsal, "
            f"not {type(rehearsal).__name__}",
            hint="e.g. rehearsal='write-file'",
        )
    with Rehearsal(rehearsal, home=home, workspace=workspace) as started:
        yield started.endpoint


__all__ = [
    "ANY_AGENT",
    "RehearsalArg",
    "RehearsalEndpoint",
    "announce",
    "endpoint_of",
    "provider_settings",
    "rehearsal_scope",
]
