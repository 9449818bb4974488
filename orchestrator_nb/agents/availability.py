"""Which agents are usable here, found without any network: path, version, install hint."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from .. import fsio
from ..config import AgentConfig, Settings, load_settings
from ..errors import AgentNotInstalled, ConfigError
from ..process import base_env
from ..userdirs import user_cache_dir
from ._npm import node_env
from .base import Driver
from .registry import (
    DriverRegistry,
    agents_bin_dirs,
    candidate_paths,
    default_registry,
    not_installed,
)

_VERSION_CACHE: dict[str, str | None] = {}
_CACHE_LOCK = threading.Lock()


def _cache_file() -> Path:
    """Versions read once per binary, kept across processes (``--version`` of gemini takes ~2 s)."""
    return user_cache_dir() / "versions.json"


def _key(path: str) -> str | None:
    # A binary replaced in place (an upgrade) changes size or mtime, so its version is read again.
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}"


def _disk_cache() -> dict[str, str | None]:
    try:
        data = json.loads(fsio.read_text(_cache_file(), anchor=_cache_file().parent))
    except (OSError, ValueError, fsio.StatePathError):
        return {}
    return data if isinstance(data, dict) else {}


def cached_version(path: str) -> tuple[bool, str | None]:
    """``(known, version)`` from the memory or disk cache, without running anything."""
    key = _key(path)
    if key is None:
        return True, None
    if key in _VERSION_CACHE:
        return True, _VERSION_CACHE[key]
    disk = _disk_cache()
    if key in disk:
        _VERSION_CACHE[key] = disk[key]
        return True, disk[key]
    return False, None


def read_version(path: str, timeout: float = 20.0) -> str | None:
    """``PATH --version``'s output (cached per binary), or None if it does not run."""
    known, version = cached_version(path)
    if known:
        return version
    key = _key(path)
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
        version = text if done.returncode == 0 and text else None
    except (OSError, subprocess.TimeoutExpired):
        return None  # not cached: a timeout on a busy machine says nothing about the binary
    if key is not None:
        _VERSION_CACHE[key] = version
        with _CACHE_LOCK:
            disk = _disk_cache()
            disk[key] = version
            with contextlib.suppress(OSError, fsio.StatePathError):
                cache = _cache_file()
                fsio.write_json(cache, disk, anchor=cache.parent.parent, fsync=False)
    return version


def _ours(path: str) -> bool:
    """A binary ``make agents`` installed: genuine by construction."""
    real = os.path.realpath(path)
    return any(
        real.startswith(os.path.realpath(d.parent.parent) + os.sep) for d in agents_bin_dirs()
    )


def _runnable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def locate(
    name: str, driver: Driver, config: AgentConfig, *, probe: bool = True
) -> tuple[str, str]:
    """The first candidate executable that is really this agent, with its version line.

    A ``copilot`` on PATH that is AWS Copilot is skipped in favour of the next candidate. With
    ``probe=False`` (the run path) nothing slow runs when it can be avoided: a version known from
    the cache is used, the project's own pinned CLIs and a configured ``path`` are taken as they
    are (their version is read in the background for next time), and only an unknown binary on
    PATH is asked for its ``--version`` once, since it may be another tool of the same name.
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
        trusted_binary = bool(config.path) or _ours(path)
        if not probe and trusted_binary and not cached_version(path)[0] and _runnable(path):
            threading.Thread(target=read_version, args=(path,), daemon=True).start()
            return path, ""
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
        width = max([10, *(len(s.name) for s in self)])
        rows = [f"{'agent':<{width}} {'found':<6} {'version':<28} path / hint"]
        for s in self:
            where = s.path if s.found else (s.problem or s.install_hint)
            found = "yes" if s.found else "no"
            rows.append(f"{s.name:<{width}} {found:<6} {s.version or '-':<28} {where}")
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
    # Never the agents an untrusted workspace names: listing must not run its binaries.
    settings = settings or load_settings(untrusted="ignore")
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
