"""Workspace trust: what a folder may change about what runs, and the user's record of trusting it.

A workspace is often a repository cloned from someone else. Its ``orchestrator.yaml`` may choose
workflows and prompts (data), but the keys that decide *which program runs, with which
permissions, environment, endpoint or model* (:data:`GUARDED_KEYS` under ``agents:``) are obeyed
only once the user trusts the folder. The agent CLIs' own project files that run code (claude's
hooks and MCP servers, gemini's and codex's project settings) are neutralized in an untrusted
folder by each driver (see ``AgentRequest.trusted``) and are part of what is trusted.

Trust is kept in the user's config folder (:func:`~orchestrator_nb.userdirs.user_config_dir`),
never in a workspace, keyed by the folder's real path and a fingerprint of everything above: when
any of it changes, the folder is untrusted again until the user looks and trusts it anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import yaml

from . import fsio
from .errors import ConfigError
from .userdirs import user_config_dir

WORKSPACE_CONFIG = "orchestrator.yaml"
STORE_NAME = "trusted-workspaces.json"

# Keys of an agent that change what runs. Everything else (description, timeouts, retries)
# only shapes how long and how often the user's own program runs.
GUARDED_KEYS = (
    "driver",
    "argv",
    "path",
    "env",
    "extra_args",
    "permission_mode",
    "model",
    "prompt_via",
    "provider",
    "npm_package",  # its install hint is a command the user is told to run
)
# Workflows' agent lists (``roles``, a step's ``fallback``) are guarded too: see _agent_lists.
# Top-level keys that change what an agent is allowed to do (the ACP approval policy).
GUARDED_TOP = ("approvals",)

# The agent CLIs' project files that can make a program run: (path or folder, what it holds).
CLI_PROJECT_FILES: tuple[tuple[str, str], ...] = (
    (".claude/settings.json", "claude hooks, MCP servers and permissions"),
    (".claude/settings.local.json", "claude hooks, MCP servers and permissions"),
    (".mcp.json", "MCP servers claude starts"),
    (".gemini/settings.json", "gemini MCP servers and tools"),
    (".env", "environment a trusted gemini loads (base URLs, keys)"),
    (".gemini/.env", "environment a trusted gemini loads (base URLs, keys)"),
    (".codex", "codex project configuration"),
    (".copilot", "copilot project configuration"),
    (".vscode/mcp.json", "MCP servers copilot starts"),
)


def changes_what_runs(rel: str, *, folders: bool = False) -> str | None:
    """Why the workspace path ``rel`` (relative, '/'-separated) matters to what runs, if it is
    one of the files trust covers (``orchestrator.yaml``, a CLI's project settings) or, with
    ``folders``, a folder holding one (a move or delete takes it along). Compared as a
    case-insensitive file system that drops trailing dots and spaces would reach the file."""
    from .workspace.paths import _canonical

    name = "/".join(_canonical(p) for p in rel.split("/") if p not in ("", "."))
    if name == WORKSPACE_CONFIG:
        return "decides what runs (the agents, workflows and approvals of this folder)"
    for path, what in CLI_PROJECT_FILES:
        if name == path.casefold() or name.startswith(path.casefold() + "/"):
            return f"decides what runs ({what})"
        if folders and path.casefold().startswith(name + "/"):
            return f"holds {path}, which decides what runs"
    return None


@dataclass(frozen=True)
class Finding:
    """One thing a workspace asks for that needs trust."""

    file: str
    key: str
    line: int | None = None
    what: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} {self.key}" + (f" ({self.what})" if self.what else "")


@dataclass
class TrustReport:
    """A folder's trust state and what trusting it means; shows as text and HTML."""

    workspace: Path
    trusted: bool
    fingerprint: str
    findings: list[Finding] = field(default_factory=list)
    changed: bool = False  # trusted once, but something listed here changed since

    @property
    def state(self) -> str:
        if self.trusted:
            return "trusted"
        return "changed since it was trusted" if self.changed else "untrusted"

    def lines(self) -> list[str]:
        head = f"workspace {self.workspace}: {self.state}"
        if not self.findings:
            return [head, "  it asks for nothing beyond your own configuration"]
        return [head, "  it can change what runs:", *(f"  - {f}" for f in self.findings)]

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        colour = "#1a7f37" if self.trusted else "#9a6700"
        items = "".join(f"<li><code>{escape(str(f))}</code></li>" for f in self.findings)
        body = f"<ul>{items}</ul>" if items else "<p>It asks for nothing beyond your config.</p>"
        html = (
            f'<div><b>{escape(str(self.workspace))}</b>: <span style="color:{colour}">'
            f"{escape(self.state)}</span>{body}</div>"
        )
        return {"text/plain": str(self), "text/html": html}


def trust_root(path: str | os.PathLike[str]) -> Path:
    """The workspace a folder belongs to (a step worktree under ``.orchestrator``: its owner)."""
    real = Path(os.path.realpath(path))
    parts = real.parts
    if fsio.STATE_DIR_NAME in parts:
        return Path(*parts[: parts.index(fsio.STATE_DIR_NAME)])
    return real


def _line(node: yaml.Node | None, *keys: str) -> int | None:
    from .config import _line_of

    return _line_of(node, tuple(int(k) if k.isdigit() else k for k in keys))


def config_findings(data: Any, node: yaml.Node | None, file: str) -> list[Finding]:
    """The guarded keys the ``agents:`` part of a workspace's configuration sets."""
    found: list[Finding] = []
    for key in GUARDED_TOP:
        if isinstance(data, dict) and key in data:
            found.append(Finding(file, key, _line(node, key), "what agents may do unasked"))
    for name, path in _step_models(data):
        found.append(Finding(file, f"{name}.model", _line(node, *path), "a model for one step"))
    for key, path, value in _agent_lists(data):
        shown = json.dumps(value, default=str)[:60]
        found.append(Finding(file, key, _line(node, *path), f"agents that take a step: {shown}"))
    agents = data.get("agents") if isinstance(data, dict) else None
    if not isinstance(agents, dict):
        return found
    for name, spec in agents.items():
        if not isinstance(spec, dict):
            found.append(Finding(file, f"agents.{name}", _line(node, "agents", str(name))))
            continue
        for key in GUARDED_KEYS:
            if key in spec:
                shown = json.dumps(spec[key], default=str)
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                found.append(
                    Finding(
                        file, f"agents.{name}.{key}", _line(node, "agents", str(name), key), shown
                    )
                )
    return found


def _digest(file: Path) -> bytes:
    """The SHA-256 of a whole file (read in chunks), or of its read error."""
    h = hashlib.sha256()
    try:
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as exc:
        h.update(f"<unreadable: {exc.errno}>".encode())
    return h.digest()


def _flows(data: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(name, workflow)`` of the raw (unvalidated) config's workflows."""
    flows = data.get("workflows") if isinstance(data, dict) else None
    for name, flow in flows.items() if isinstance(flows, dict) else ():
        if isinstance(flow, dict):
            yield str(name), flow


def _raw_steps(name: str, flow: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """``(yaml path, step)`` of every step of one raw workflow, nested ones too."""
    from .workflow.models import CHILD_STEPS

    def walk(steps: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        for i, step in enumerate(steps if isinstance(steps, list) else []):
            if not isinstance(step, dict):
                continue
            here = (*path, str(i))
            yield here, step
            for child in CHILD_STEPS:
                yield from walk(step.get(child), (*here, child))

    yield from walk(flow.get("steps"), ("workflows", name, "steps"))


def _step_models(data: Any) -> list[tuple[str, tuple[str, ...]]]:
    """``(key, yaml path)`` of every workflow step that sets its own ``model`` (nested too)."""
    return [
        (".".join(path), (*path, "model"))
        for name, flow in _flows(data)
        for path, step in _raw_steps(name, flow)
        if "model" in step
    ]


def _agent_lists(data: Any) -> list[tuple[str, tuple[str, ...], Any]]:
    """``(key, yaml path, agents)`` of every agent list a workflow sets: its ``roles`` and any
    step's ``fallback``. Which agent takes a step is as guarded as the agents themselves."""
    out: list[tuple[str, tuple[str, ...], Any]] = []
    for name, flow in _flows(data):
        roles = flow.get("roles")
        for role, agents in roles.items() if isinstance(roles, dict) else ():
            at: tuple[str, ...] = ("workflows", name, "roles", str(role))
            out.append((".".join(at), at, agents))
        for path, step in _raw_steps(name, flow):
            if "fallback" in step:
                out.append((".".join((*path, "fallback")), (*path, "fallback"), step["fallback"]))
    return out


def _at(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data[int(key)] if isinstance(data, list) else data.get(key)
    return data


def _cli_files(root: Path) -> list[tuple[str, str, bytes]]:
    """``(relative path, what, digest)`` of the CLI project files present (folders walked)."""
    out: list[tuple[str, str, bytes]] = []
    for rel, what in CLI_PROJECT_FILES:
        path = root / rel
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if not file.is_file():
                continue
            out.append((str(file.relative_to(root)), what, _digest(file)))
    return out


def _str_keys(value: Any) -> Any:
    """``value`` with every mapping key a string: YAML reads ``no:`` or ``1:`` as a bool or an
    int, and sorting keys of mixed types fails. (All-string keys dump exactly as before.)"""
    if isinstance(value, dict):
        return {str(k): _str_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_str_keys(v) for v in value]
    return value


def assess(root: str | os.PathLike[str]) -> tuple[str, list[Finding]]:
    """The fingerprint of what in ``root`` can change what runs, and the list of those things."""
    from .config import read_yaml

    folder = trust_root(root)
    digest = hashlib.sha256(b"orchestrator-nb trust v1\0")
    findings: list[Finding] = []
    config = folder / WORKSPACE_CONFIG
    if config.is_file():
        data, node = read_yaml(config)
        guarded = (
            {k: data.get(k) for k in ("agents", *GUARDED_TOP)} if isinstance(data, dict) else {}
        )
        digest.update(json.dumps(_str_keys(guarded), sort_keys=True, default=str).encode())
        lists = [(key, agents) for key, _path, agents in _agent_lists(data)]
        if lists:  # only when there are any: trust recorded before roles existed still holds
            digest.update(b"\0agent lists\0" + json.dumps(lists, default=str).encode())
        findings += config_findings(data, node, WORKSPACE_CONFIG)
    for rel, what, data in _cli_files(folder):
        digest.update(b"\0" + rel.encode() + b"\0" + data)
        findings.append(Finding(rel, "present", None, what))
    return digest.hexdigest(), findings


def _store_path() -> Path:
    return user_config_dir() / STORE_NAME


def _load_store() -> dict[str, Any]:
    path = _store_path()
    try:
        data = json.loads(fsio.read_text(path, anchor=path.parent.parent))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"the trust store is unreadable: {exc}",
            path=str(path),
            hint="delete it; every workspace is then untrusted until you trust it again",
        ) from None
    return data if isinstance(data, dict) else {}


def report(path: str | os.PathLike[str]) -> TrustReport:
    """Whether ``path`` is trusted now, and what it can change about what runs."""
    root = trust_root(path)
    fingerprint, findings = assess(root)
    entry = _load_store().get(str(root))
    recorded = entry.get("fingerprint") if isinstance(entry, dict) else None
    trusted = recorded == fingerprint
    return TrustReport(
        root, trusted, fingerprint, findings, changed=recorded is not None and not trusted
    )


def is_trusted(path: str | os.PathLike[str]) -> bool:
    return report(path).trusted


def trust(path: str | os.PathLike[str] = ".") -> TrustReport:
    """Trust ``path`` as it is now (its configuration and the CLIs' project files)."""
    root = trust_root(path)
    if not root.is_dir():
        raise ConfigError(f"{str(root)!r} is not a folder", key="path", hint="give the workspace")
    store_file = _store_path()
    anchor = store_file.parent.parent
    with fsio.FileLock(store_file.parent / "trust.lock", anchor=anchor):
        fingerprint, findings = assess(root)
        store = _load_store()
        store[str(root)] = {
            "fingerprint": fingerprint,
            "trusted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "findings": [str(f) for f in findings],
        }
        fsio.write_json(store_file, store, anchor=anchor, mode=0o600)
    return TrustReport(root, True, fingerprint, findings)


def untrust(path: str | os.PathLike[str] = ".") -> TrustReport:
    """Forget that ``path`` was trusted."""
    root = trust_root(path)
    store_file = _store_path()
    anchor = store_file.parent.parent
    with fsio.FileLock(store_file.parent / "trust.lock", anchor=anchor):
        store = _load_store()
        if store.pop(str(root), None) is not None:
            fsio.write_json(store_file, store, anchor=anchor, mode=0o600)
    return report(root)


# CLI project files that a CLI would still load in an untrusted folder, with no flag to stop it.
_UNGUARDED = {
    "gemini": (".gemini/settings.json",),
    # ACP adapters load the project's settings by their own rules, with no flag of ours.
    "acp:claude": (".claude/settings.json", ".claude/settings.local.json", ".mcp.json"),
    "acp:gemini": (".gemini/settings.json",),
    "acp:codex": (".codex",),
    "acp:copilot": (".copilot", ".vscode/mcp.json"),
}


def refuse_untrusted_cli(driver: str, workspace: str | os.PathLike[str]) -> None:
    """Refuse, before it starts, a CLI that would run what an untrusted folder configures.

    claude is started with ``--setting-sources user --strict-mcp-config`` there, codex and copilot
    keep their own project trust; gemini loads ``.gemini/settings.json`` (MCP servers, tools)
    unless the user's own gemini settings turn its folder trust on, so it is not started at all.
    """
    root = trust_root(workspace)
    for rel in _UNGUARDED.get(driver, ()):
        if (root / rel).exists():
            what = f"{driver.removeprefix('acp:')} would start what it names"
            raise refusal(root, [Finding(rel, "present", None, what)])


def refusal(root: Path, findings: list[Finding]) -> ConfigError:
    """The one-line error for an untrusted workspace that asks for guarded things."""
    first = findings[0]
    more = f" and {len(findings) - 1} more" if len(findings) > 1 else ""
    return ConfigError(
        f"untrusted workspace {root} asks to change what runs: {first}{more}",
        path=str(root / first.file),
        line=first.line,
        key=first.key,
        hint=(
            f"review it, then trust it: `orchestrator-nb trust {root}`, `%orchestrate trust "
            f"{root}`, orchestrator_nb.trust({str(root)!r}) or trust=True for one run"
        ),
    )


__all__ = [
    "CLI_PROJECT_FILES",
    "GUARDED_KEYS",
    "Finding",
    "TrustReport",
    "assess",
    "changes_what_runs",
    "config_findings",
    "is_trusted",
    "refusal",
    "refuse_untrusted_cli",
    "report",
    "trust",
    "trust_root",
    "untrust",
]
