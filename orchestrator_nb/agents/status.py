"""Which agents are usable here, found without any network: path, version, install hint."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from html import escape
from typing import Any

from ..config import AgentConfig, Settings, load_settings
from ..errors import AgentNotInstalled, ConfigError
from ..process import base_env
from ._npm import node_env
from .base import Driver
from .registry import DriverRegistry, candidate_paths, default_registry, not_installed

_VERSION_CACHE: dict[tuple[str, int], str | None] = {}


def read_version(path: str, timeout: float = 20.0) -> str | None:
    """``PATH --version``'s output (cached per file and mtime), or None if it does not run."""
    try:
        key = (path, os.stat(path).st_mtime_ns)
    except OSError:
        return None
    if key in _VERSION_CACHE:
        return _VERSION_CACHE[key]
    try:
        done = subprocess.run(
            [path, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=base_env(node_env(path)),
            start_new_session=True,
            check=False,
        )
        text = (done.stdout or done.stderr).decode("utf-8", "replace").strip()
        version: str | None = text if done.returncode == 0 and text else None
    except (OSError, subprocess.TimeoutExpired):
        version = None
    _VERSION_CACHE[key] = version
    return version


def locate(name: str, driver: Driver, config: AgentConfig) -> tuple[str, str]:
    """The first candidate executable that is really this agent, with its version line.

    A ``copilot`` on PATH that is AWS Copilot is skipped in favour of the next candidate.
    """
    rejected: list[str] = []
    # Drivers for arbitrary CLIs may have no --version; for them, existing and executable is enough.
    checks_version = getattr(driver, "checks_version", True)
    for path in candidate_paths(driver, config):
        if not checks_version:
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path, ""
            rejected.append(f"{path} (not an executable file)")
            continue
        version = read_version(path)
        if version is None:
            rejected.append(f"{path} (does not run)")
            continue
        if driver.is_genuine(version):
            return path, version.splitlines()[0]
        rejected.append(f"{path} (is {version.splitlines()[0]!r}, not this agent)")
    detail = f"; skipped {', '.join(rejected)}" if rejected else ""
    raise not_installed(name, driver, config, detail)


@dataclass(frozen=True)
class AgentStatus:
    name: str
    driver: str
    found: bool
    path: str | None
    version: str | None
    install_hint: str
    problem: str | None = None


class AgentStatusTable(list[AgentStatus]):
    """The availability table; shows as text and HTML."""

    def __str__(self) -> str:
        rows = [f"{'agent':<10} {'found':<6} {'version':<28} path / hint"]
        for s in self:
            where = s.path if s.found else (s.problem or s.install_hint)
            rows.append(
                f"{s.name:<10} {'yes' if s.found else 'no':<6} {s.version or '-':<28} {where}"
            )
        return "\n".join(rows)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # IPython's printer for lists would otherwise win over our text/plain table.
        printer.text(str(self))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        cells = []
        for s in self:
            light = "#1a7f37" if s.found else "#cf222e"
            where = escape(s.path or "") if s.found else escape(s.problem or "")
            cells.append(
                f"<tr><td>{escape(s.name)}</td>"
                f'<td style="color:{light}" title="{escape(s.install_hint)}">'
                f"{'●' if s.found else '○'}</td>"
                f"<td>{escape(s.version or '-')}</td><td>{where}</td></tr>"
            )
        head = "<tr><th>agent</th><th>found</th><th>version</th><th>path</th></tr>"
        return {"text/plain": str(self), "text/html": f"<table>{head}{''.join(cells)}</table>"}


def status(
    settings: Settings | None = None, *, registry: DriverRegistry | None = None
) -> AgentStatusTable:
    """Per configured agent: found or not, path, ``--version``, install hint. No network."""
    settings = settings or load_settings()
    registry = registry or default_registry()
    table = AgentStatusTable()
    for name, config in settings.agents.items():
        try:
            driver = registry.create(name, config)
        except ConfigError as exc:
            table.append(AgentStatus(name, config.driver, False, None, None, "", str(exc)))
            continue
        try:
            path, version = locate(name, driver, config)
        except AgentNotInstalled as exc:
            table.append(
                AgentStatus(
                    name, config.driver, False, None, None, driver.install_hint(), exc.message
                )
            )
            continue
        table.append(AgentStatus(name, config.driver, True, path, version, driver.install_hint()))
    return table
