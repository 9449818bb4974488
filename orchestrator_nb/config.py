"""Configuration: pydantic models loaded from YAML, with errors that name file, line and key.

Layers, later ones win: the package's ``config/agents.yaml`` and ``workflows.yaml``; the user's
own ``config.yaml`` in :func:`~orchestrator_nb.userdirs.user_config_dir` (always trusted); the
workspace's ``./orchestrator.yaml`` — or a path given explicitly, which is the user's choice and
trusted — then keyword overrides. A workspace's file is obeyed only as far as its folder is
trusted (:mod:`orchestrator_nb.trust_store`): the keys that change what runs are refused, or
ignored for a listing, until the user trusts it.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from .agents.acp.permissions import ApprovalPolicy
from .errors import ConfigError
from .workflow.models import CHILD_STEPS, Limits, Workflow

USER_CONFIG_NAME = "orchestrator.yaml"

M = TypeVar("M", bound=BaseModel)


def package_config_dir() -> Path:
    """Where the shipped YAML lives: ``config/`` in a source checkout, ``_config`` in a wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "config", here / "_config"):
        if (candidate / "agents.yaml").is_file():
            return candidate
    raise ConfigError(
        "the package's default configuration is missing",
        path=str(here / "_config"),
        hint="reinstall orchestrator-nb",
    )


class AgentConfig(BaseModel):
    """How to run one agent."""

    model_config = ConfigDict(extra="forbid")

    driver: str = Field(
        description="Driver name: claude, codex, gemini, copilot, command, or one from a plugin."
    )
    description: str = Field(default="", description="Shown in the availability table.")
    path: str | None = Field(
        default=None, description="Executable to run instead of looking it up on PATH/.agents."
    )
    model: str | None = Field(
        default=None, description="Model passed to the CLI (its default when unset)."
    )
    permission_mode: str | None = Field(
        default=None,
        description="The CLI's permission/approval mode (driver-specific values); for an ACP "
        "agent, the session mode to set (one of the ids it offers).",
    )
    timeout: float = Field(default=900, gt=0, description="Total seconds one attempt may take.")
    idle_timeout: float | None = Field(
        default=300, gt=0, description="Seconds without any output before the run is stopped."
    )
    retries: int = Field(
        default=2, ge=0, le=10, description="Extra attempts after a rate limit or transient error."
    )
    retry_wait: float = Field(
        default=2.0, ge=0, description="First backoff wait in seconds (doubles, with jitter)."
    )
    max_turns: int | None = Field(
        default=None, gt=0, description="Agent turn limit, where supported."
    )
    extra_args: list[str] = Field(
        default_factory=list, description="Flags appended to the CLI's argv."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for the CLI.")
    # The generic command driver's settings.
    argv: list[str] | None = Field(
        default=None,
        description="command driver: argv template; {prompt}, {workspace}, {model} are filled in.",
    )
    prompt_via: Literal["arg", "stdin"] | None = Field(
        default=None, description="command driver: pass the prompt as an argument or on stdin."
    )
    provider: Literal["claude", "codex", "gemini", "copilot"] | None = Field(
        default=None,
        description="acp driver: the CLI the agent wraps, whose rehearsal environment it gets.",
    )
    npm_package: str | None = Field(
        default=None, description="acp driver: the npm package that provides it (install hint)."
    )


class Settings(BaseModel):
    """Everything orchestrator-nb reads from configuration."""

    model_config = ConfigDict(extra="forbid")

    agents: dict[str, AgentConfig] = Field(
        default_factory=dict, description="Agents by the name used in workflows and calls."
    )
    workflows: dict[str, Workflow] = Field(default_factory=dict, description="Workflows by name.")
    limits: Limits = Field(
        default_factory=Limits, description="Concurrency caps, rate limits, breakers, cache TTL."
    )
    approvals: ApprovalPolicy = Field(
        default_factory=ApprovalPolicy,
        description="How ACP agents' permission requests are answered when nobody is asked.",
    )
    max_events: int = Field(
        default=20_000, gt=0, description="Events kept per step; later ones are counted, not kept."
    )
    sources: list[str] = Field(default_factory=list, description="Files these settings came from.")
    secrets: list[str] = Field(
        default_factory=list,
        description="Environment variables whose values are masked wherever they would appear.",
    )

    def model_post_init(self, context: Any, /) -> None:
        # Known as soon as the settings exist, before any agent runs or anything is written.
        from .secrets import register_settings

        register_settings(self)

    # Decided by load_settings from the user's trust store, never from a file: a workspace must
    # not be able to declare itself trusted.
    # (workspace root, trusted, fingerprint of what was trusted)
    _trust: tuple[str, bool, str] | None = PrivateAttr(default=None)
    _ignored: list[str] = PrivateAttr(default_factory=list)

    @property
    def ignored(self) -> list[str]:
        """What an untrusted workspace asked for and a listing ignored (empty for a run)."""
        return list(self._ignored)

    def trusts(self, workspace: str | os.PathLike[str]) -> bool:
        """Whether agents may follow ``workspace``'s own settings (its CLIs' project files)."""
        from .trust_store import assess, is_trusted, trust_root

        root = str(trust_root(workspace))
        if self._trust is not None and self._trust[0] == root:
            # Trust covers the folder as it was when it was given: a step that rewrote a
            # hook or an MCP server since then does not inherit it.
            return self._trust[1] and assess(root)[0] == self._trust[2]
        return is_trusted(root)

    def with_trust(self, workspace: str | os.PathLike[str], trusted: bool | None) -> Settings:
        """A copy that counts ``workspace`` as trusted (``trust=True`` of one run) or not."""
        if trusted is None:
            return self
        from .trust_store import assess, trust_root

        copy = self.model_copy()
        root = trust_root(workspace)
        copy._trust = (str(root), trusted, assess(root)[0])
        return copy


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (as deep as the document goes)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(key):
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


_C_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", None)


def _parse_fast(text: str) -> tuple[Any, yaml.Node | None]:
    """Node tree and data in one pass of libyaml's parser (when PyYAML was built with it).

    The pure-Python parser, run twice, was most of the first cell's configuration time; the
    constructor and resolver are the same Python classes either way, so the data is the same.
    """
    loader = _C_SAFE_LOADER(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, node


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Load a YAML file safely, keeping its node tree for line numbers."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text (byte {exc.start})", path=str(path), hint="save the file as UTF-8"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=str(path)) from exc
    if _C_SAFE_LOADER is not None:
        try:
            return _parse_fast(text)
        except yaml.YAMLError:
            pass  # the pure-Python parser below words the error as it always has
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            f"not valid YAML: {getattr(exc, 'problem', None) or exc}",
            path=str(path),
            line=mark.line + 1 if mark else None,
        ) from exc
    return data, node


def validation_error(
    exc: ValidationError, path: str | None, node: yaml.Node | None, error_type: type[ConfigError]
) -> ConfigError:
    """One ConfigError for a pydantic error: the first problem, with file, line and key."""
    first = exc.errors()[0]
    loc = tuple(first["loc"])
    message = first["msg"]
    ctx = first.get("ctx") or {}
    if loc and loc[-1] == "[key]":
        # A name that YAML did not read as text: `no:`, `on:`, `1:` are a bool and a number.
        loc = loc[:-2]
        name = first.get("input")
        message = (
            f"the name {name!r} is a {type(name).__name__}, not text: YAML reads yes, no, on, "
            "off, true, false and bare numbers that way; quote it ('no':)"
        )
    key = ".".join(str(p) for p in loc) or None
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "value_error" and ctx.get("error"):
        message = str(ctx["error"])  # the validator's own sentence, without pydantic's prefix
    elif "expected" in ctx and str(ctx["expected"]) not in message:
        message += f" (accepted: {ctx['expected']})"
    more = len(exc.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return error_type(message, path=path, line=_line_of(node, loc), key=key)


def validate_yaml(model: type[M], path: Path, error_type: type[ConfigError] = ConfigError) -> M:
    """Load ``path`` into ``model``; any problem becomes one ``error_type`` with file:line."""
    data, node = read_yaml(path)
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise validation_error(exc, str(path), node, error_type) from None


@functools.lru_cache(maxsize=4)
def _read_shipped(path: Path, _mtime_ns: int) -> tuple[Any, yaml.Node | None]:
    # The package's own files are parsed once per process (per version of the file): every
    # run loads settings, and parsing them cost tens of milliseconds. Callers get a deep copy.
    return read_yaml(path)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    cwd: str | os.PathLike[str] | None = None,
    trust: bool | None = None,
    untrusted: Literal["refuse", "ignore"] = "refuse",
    **overrides: Any,
) -> Settings:
    """The package defaults, the user's ``config.yaml``, then ``path`` (or the workspace's
    ``orchestrator.yaml`` in ``cwd``), then ``overrides``.

    ``trust``: True trusts the workspace for this load (a script that must not prompt), False
    treats it as untrusted, None asks the user's trust store. In an untrusted workspace whose
    file sets keys that change what runs, ``untrusted="refuse"`` raises a ConfigError listing
    them (before anything starts); ``"ignore"`` drops the file's ``agents:`` (for listings).
    """
    from .trust_store import GUARDED_TOP, config_findings, refusal, report, trust_root
    from .userdirs import user_config_dir

    layers: list[tuple[Path, Any, yaml.Node | None]] = []
    for name in ("agents.yaml", "workflows.yaml"):
        shipped = package_config_dir() / name
        data, node = _read_shipped(shipped, shipped.stat().st_mtime_ns)
        layers.append((shipped, copy.deepcopy(data), node))
    user_file = user_config_dir() / "config.yaml"
    if user_file.is_file():
        layers.append((user_file, *read_yaml(user_file)))
    if path is not None and not Path(path).is_file():
        raise ConfigError("configuration file not found", path=str(path))
    workspace = Path(cwd or ".")
    decided: tuple[str, bool, str] | None = None
    ignored: list[str] = []
    if path is not None:
        layers.append((Path(path), *read_yaml(Path(path))))
    elif cwd is not None or (workspace / USER_CONFIG_NAME).is_file():
        root = trust_root(workspace)
        state = report(root)
        trusted = trust if trust is not None else state.trusted
        decided = (str(root), trusted, state.fingerprint)
        ws_file = workspace / USER_CONFIG_NAME
        if ws_file.is_file():
            data, node = read_yaml(ws_file)
            guarded = [] if trusted else config_findings(data, node, USER_CONFIG_NAME)
            if guarded and untrusted == "refuse":
                raise refusal(root, guarded)
            if guarded and isinstance(data, dict):
                data = {k: v for k, v in data.items() if k not in ("agents", *GUARDED_TOP)}
                ignored = [str(f) for f in guarded]
            layers.append((ws_file, data, node))
    merged: dict[str, Any] = {}
    for file, data, node in layers:
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ConfigError("the top level must be a mapping", path=str(file), line=1)
        candidate = _merge(merged, data)
        try:
            Settings.model_validate(candidate)
        except ValidationError as exc:
            # Attribute the problem to the layer that introduced it.
            raise validation_error(exc, str(file), node, ConfigError) from None
        merged = candidate
    merged = _merge(merged, overrides)
    merged["sources"] = [str(f) for f, data, _ in layers if data is not None]
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise validation_error(exc, "keyword arguments", None, ConfigError) from None
    if not ignored:  # a listing that dropped a workspace's agents still lists its workflows
        check_agents(settings, layers)
    settings._trust = decided
    settings._ignored = ignored
    return settings


def check_agents(
    settings: Settings, layers: list[tuple[Path, Any, yaml.Node | None]] | None = None
) -> None:
    """Every agent a workflow step names is configured: refused when the file is loaded, with
    the workflow, step, agent and the known agents, not when a run reaches the step."""
    from .workflow.models import AgentStep, iter_steps

    # A workflow's roles are resolved into each step's agent and fallback when it is loaded
    # (workflow/models.py), so every name here is an agent's.
    names = set(settings.agents)
    for name, workflow in settings.workflows.items():
        for step in iter_steps(workflow.steps):
            if not isinstance(step, AgentStep):
                continue
            # The step's agent, then its role's others (a fallback found out mid-run otherwise).
            for agent in [step.agent, *step.fallback]:
                if agent in names:
                    continue
                known = ", ".join(sorted(settings.agents)) or "none"
                path, line, key = _where_step(layers or [], name, step.id)
                if agent != step.agent:
                    path, line, key = _where_role(layers or [], workflow, name, step)
                raise ConfigError(
                    f"workflow {name!r}, step {step.id!r}: unknown agent {agent!r} "
                    f"(known: {known})",
                    path=path,
                    line=line,
                    key=key,
                    hint=f"name a known agent, or add {agent!r} under `agents:` "
                    "with `driver: command`",
                )


def _where_step(
    layers: list[tuple[Path, Any, yaml.Node | None]], workflow: str, step_id: str
) -> tuple[str | None, int | None, str | None]:
    """The file, line and key of a workflow step: in the last layer that defines it."""
    for file, data, node in reversed(layers):
        flows = data.get("workflows") if isinstance(data, dict) else None
        if not isinstance(flows, dict) or not isinstance(flows.get(workflow), dict):
            continue
        loc = _step_loc(flows[workflow].get("steps"), step_id, ("workflows", workflow, "steps"))
        if loc is not None:
            loc = (*loc, "agent")
            return str(file), _line_of(node, loc), ".".join(str(p) for p in loc)
    return None, None, f"workflows.{workflow}"


def _where_role(
    layers: list[tuple[Path, Any, yaml.Node | None]], flow: Any, workflow: str, step: Any
) -> tuple[str | None, int | None, str | None]:
    """The file, line and key of the role list a step's fallback agents come from."""
    loc: tuple[int | str, ...] = ("workflows", workflow)
    if step.role in flow.roles:
        loc = (*loc, "roles", step.role)
    for file, data, node in reversed(layers):
        flows = data.get("workflows") if isinstance(data, dict) else None
        if isinstance(flows, dict) and isinstance(flows.get(workflow), dict):
            return str(file), _line_of(node, loc), ".".join(str(p) for p in loc)
    return None, None, ".".join(str(p) for p in loc)


def _step_loc(
    steps: Any, step_id: str, prefix: tuple[int | str, ...]
) -> tuple[int | str, ...] | None:
    if not isinstance(steps, list):
        return None
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        if step.get("id") == step_id:
            return (*prefix, i)
        for child in CHILD_STEPS:
            found = _step_loc(step.get(child), step_id, (*prefix, i, child))
            if found is not None:
                return found
    return None


def agent_config(settings: Settings, name: str) -> AgentConfig:
    """The named agent's configuration, or a ConfigError that lists the known ones."""
    try:
        return settings.agents[name]
    except KeyError:
        known = ", ".join(sorted(settings.agents)) or "none"
        raise ConfigError(
            f"unknown agent {name!r} (known: {known})",
            key=f"agents.{name}",
            hint=f"add it under `agents:` in ./{USER_CONFIG_NAME} with `driver: command`",
        ) from None


__all__ = [
    "AgentConfig",
    "Settings",
    "agent_config",
    "check_agents",
    "load_settings",
    "package_config_dir",
    "read_yaml",
    "validate_yaml",
    "validation_error",
]
