"""Who answers an agent's ``session/request_permission``: a policy, or a person through a hook.

For runs nobody watches a policy decides, by rules over the tool's kind, where it acts and the
command it runs (first matching rule wins)::

    approvals:                      # in orchestrator.yaml, or approvals= per call
      rules:
        - {command: "curl|wget", decision: reject}
        - {where: outside, decision: reject}
        - {kind: [edit, delete, move], where: workspace, decision: allow}
        - {kind: [execute], command: "pytest( -q)?", decision: allow}
      default: reject

``where: workspace`` holds only when the tool names paths and every one is inside the workspace;
``where: outside`` when any is outside. A shell command names none, so only a rule that names
``execute`` (or a ``command:`` pattern) allows it: an allow rule's pattern must match the whole
command, which must be one simple command (no ``;``, ``&``, ``|``, redirection or ``$(...)``).
A reject rule's pattern matches anywhere in it, in any case. Whatever the rules say, a policy
never lets an agent change ``.git/``, ``.orchestrator/`` or the files that decide what runs
(``orchestrator.yaml``, the CLIs' project settings): only a person can allow that.

An interactive front end passes ``approvals=`` a callable ``(PermissionRequest) ->
"allow_once" | "allow_always" | "reject"`` (async, or plain: a plain one runs in a worker
thread); "allow_always" holds for the rest of the run (the same request again). When it
does not answer within ``timeout`` seconds the policy decides (recorded ``by: timeout``); when
it raises, the policy decides too (recorded ``by: policy`` with the error).
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import json
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Decision = Literal["allow_once", "allow_always", "reject"]

# ACP's tool kinds (schema ToolKind).
TOOL_KINDS = (
    "read",
    "edit",
    "delete",
    "move",
    "search",
    "execute",
    "think",
    "fetch",
    "switch_mode",
    "other",
)
# Kinds that only look: they may name a protected path (reading .git/config changes nothing).
LOOKING_KINDS = frozenset({"read", "search"})

# Programs that reach the network, wherever they stand in a command: as a word of their own,
# after a path ('/usr/bin/curl'), a quote ('bash -c "curl ...') or a shell operator, in any case.
# Rejected by the default policy's first rule. A guard against the obvious, not a sandbox: shell
# quoting ('cu""rl') or a script gets past any pattern, which is why no command runs by default.
# git's subcommand is looked for within 200 characters: unbounded, "git git git ..." made the
# search quadratic, on the event loop every agent shares.
NETWORK_COMMANDS = (
    r"(?i)(?<![\w.-])(curl|wget|ssh|scp|sftp|rsync|nc|ncat|netcat|socat|telnet|ftp|aria2c"
    r"|ssh-keyscan|xh|https?|lynx|w3m|gh|glab"
    r"|git\b[^;&|\n]{0,200}?\s(push|fetch|pull|clone|ls-remote|submodule|remote|send-email|fetch-pack)"
    r"|pip[\d.]*\s+(install|download)|pipx|uvx|uv\s+(pip|add|sync|run|tool)"
    r"|npm\s+(install|i|ci|add|exec|update|publish)|npx|yarn|pnpm|bunx?|deno"
    r"|cargo\s+(install|add|update|fetch)|go\s+(get|install|mod)|gem\s+install"
    r"|poetry\s+(add|install|update)|conda\s+install|mamba\s+install)(?![\w.-])"
)
# What makes a command more than one simple command, which an allow rule's pattern cannot vouch
# for: a pattern for 'pytest -q' must not allow 'pytest -q; curl x | sh'.
_SHELL_OPERATORS = re.compile(r"[;&|`<>\n\r]|\$\(")


class ApprovalRule(BaseModel):
    """One rule; every given condition must hold for it to apply."""

    model_config = ConfigDict(extra="forbid")

    kind: list[str] | None = Field(
        default=None,
        description="ACP tool kinds: " + ", ".join(TOOL_KINDS) + " (one, or a list).",
    )
    where: Literal["workspace", "outside", "any"] = Field(
        default="any",
        description="workspace: the tool names paths, all inside; outside: one is outside.",
    )
    command: str | None = Field(
        default=None,
        description="A regular expression over the command: the whole of it for an allow rule "
        "(one simple command), anywhere in it (any case) for a reject rule.",
    )
    decision: Literal["allow", "reject"]

    @field_validator("kind", mode="before")
    @classmethod
    def _kinds(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        for kind in value if isinstance(value, list) else ():
            if isinstance(kind, str) and kind not in TOOL_KINDS:
                raise ValueError(f"unknown tool kind {kind!r}; the kinds: {', '.join(TOOL_KINDS)}")
        return value

    @field_validator("command")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc}): {value!r}") from None
        return value

    def applies(self, request: PermissionRequest, inside: bool | None) -> bool:
        """Whether every condition of this rule holds for ``request``."""
        if self.kind is not None and request.kind not in self.kind:
            return False
        if self.where == "workspace" and inside is not True:
            return False
        if self.where == "outside" and inside is not False:
            return False
        if self.decision == "reject":
            return self.command is None or bool(
                re.search(self.command, request.command, re.IGNORECASE)
            )
        # Allowing reaches outside the workspace, or out to an address, only where it says so.
        if inside is False and self.where != "outside":
            return False
        if request.urls and "fetch" not in (self.kind or ()):
            return False
        if request.escalation:  # more than its sandbox gives: a person decides
            return False
        if request.command:
            # Allowing a command takes a rule that names commands: its kind or its pattern.
            if self.command is None:
                return self.kind is not None and "execute" in self.kind
            return not _SHELL_OPERATORS.search(request.command) and bool(
                re.fullmatch(self.command, request.command.strip())
            )
        return self.command is None


def _default_rules() -> list[ApprovalRule]:
    return [
        ApprovalRule(command=NETWORK_COMMANDS, decision="reject"),
        ApprovalRule(kind=["fetch"], decision="reject"),
        ApprovalRule(where="outside", decision="reject"),
        ApprovalRule(
            kind=["read", "search", "edit", "delete", "move"], where="workspace", decision="allow"
        ),
    ]


class ApprovalPolicy(BaseModel):
    """Rules for unattended runs; the default allows reading and editing files inside the
    workspace, and nothing else (no command, no fetch)."""

    model_config = ConfigDict(extra="forbid")

    rules: list[ApprovalRule] = Field(default_factory=_default_rules)
    default: Literal["allow", "reject"] = Field(
        default="reject", description="When no rule matches."
    )
    timeout: float = Field(
        default=300, gt=0, description="Seconds an interactive question waits before the policy."
    )


@dataclass(frozen=True)
class PermissionRequest:
    """What the agent wants to do, as a front end shows it."""

    agent: str
    tool_call_id: str | None
    title: str
    kind: str
    command: str
    paths: list[str]
    workspace: Path
    options: list[str] = field(default_factory=list)  # the option kinds the agent offers
    diff: str = ""  # unified diff of the edits the tool call carries, if any
    step: str | None = None  # the workflow step the agent runs, for whoever is asked
    urls: list[str] = field(default_factory=list)  # addresses it would reach
    escalation: str = ""  # what it asks beyond its sandbox (codex's additionalPermissions), JSON

    @property
    def target(self) -> str:
        return self.command or ", ".join(self.paths) or ", ".join(self.urls)

    @property
    def same(self) -> tuple[Any, ...] | None:
        """What "Always for this run" remembers: the whole request as the agent described it;
        None when it describes nothing to tell one use from another (no always then)."""
        if not (self.command or self.paths or self.urls or self.escalation):
            return None
        return (
            self.kind,
            self.title,
            self.command,
            tuple(self.paths),
            tuple(self.urls),
            self.escalation,
            self.diff,
        )

    @cached_property
    def _relative(self) -> list[tuple[str, str | None]]:
        """``(path as named, path relative to the workspace once resolved, or None outside)``:
        resolved once per request, however often the policy, "always" and the question ask."""
        root = self.workspace.resolve()
        out: list[tuple[str, str | None]] = []
        for raw in self.paths:
            path = Path(os.path.expanduser(raw))  # '~/.bashrc' is the home folder's, not ours
            path = (root / path) if not path.is_absolute() else path
            try:
                out.append((raw, path.resolve().relative_to(root).as_posix()))
            except (ValueError, OSError, RuntimeError):  # outside, or a loop, a NUL, too long:
                out.append((raw, None))  # not known to be inside, so not allowed as inside
        return out

    def inside_workspace(self) -> bool | None:
        """True/False when the tool names paths; None when it names none (a command)."""
        if not self.paths:
            return None
        return all(rel is not None for _raw, rel in self._relative)

    @property
    def warning(self) -> str:
        """What a person should know before allowing this ("" when nothing): it changes a
        path no policy would let it change."""
        if self.kind in LOOKING_KINDS:
            return ""
        protected = self.protected()
        return f"this changes what runs: {protected}" if protected else ""

    def protected(self) -> str | None:
        """Why a path this tool names is not the agent's to change (None: none is): it is in
        ``.git/`` or ``.orchestrator/``, decides what runs, or is a folder holding one of
        those (or the workspace itself), which a move or delete would take along."""
        return self._protection

    @cached_property
    def _protection(self) -> str | None:  # a folder search at most once per request
        from ...errors import UnsafePathError
        from ...trust_store import changes_what_runs
        from ...workspace.paths import check_reserved

        root = self.workspace.resolve()
        takes_folders = self.kind in ("delete", "move")  # a folder goes with what it holds
        for raw, rel in self._relative:
            # The path as named, and as resolved (a symlink into .git/ counts as .git/).
            for candidate in {rel, _workspace_relative(raw, self.workspace)} - {None}:
                parts = [p for p in str(candidate).split("/") if p not in ("", ".")]
                if not parts:
                    if takes_folders:
                        return "the workspace folder itself"
                    continue  # a command's folder, say
                try:
                    check_reserved(parts, raw)
                except UnsafePathError as exc:
                    return exc.rule
                what = changes_what_runs("/".join(parts), folders=takes_folders)
                if what:
                    return f"{'/'.join(parts)} {what}"
                nested = takes_folders and rel is not None and candidate == rel
                if nested and _holds_git(root / str(rel)):
                    return f"{rel}/ holds a .git folder"
        return None


# How many entries a folder the agent wants to move or delete is searched for a nested .git
# before it is taken to hold one: bounded, and on the safe side past the bound.
_GIT_SEARCH_LIMIT = 20_000


def _holds_git(folder: Path) -> bool:
    """Whether ``folder`` (not followed if a link) may hold a ``.git`` at any depth: True
    also when it cannot be searched (unreadable, too large), the safe side for a move."""
    try:
        if folder.is_symlink() or not folder.is_dir():
            return False
    except (OSError, ValueError):
        return True
    unreadable: list[OSError] = []
    seen = 0
    for _dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable.append):
        seen += len(dirnames) + len(filenames)
        if ".git" in dirnames or ".git" in filenames or seen > _GIT_SEARCH_LIMIT or unreadable:
            return True
    return bool(unreadable)


def _workspace_relative(raw: str, workspace: Path) -> str | None:
    """``raw`` relative to the workspace as written (symlinks not resolved), or None."""
    path = Path(raw)
    if not path.is_absolute():
        return path.as_posix()
    for root in (workspace, workspace.resolve()):
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            continue
    return None


Ask = Callable[[PermissionRequest], Awaitable[str] | str]


def decide_by_policy(policy: ApprovalPolicy, request: PermissionRequest) -> tuple[Decision, str]:
    """The policy's decision and the rule that made it."""
    if request.kind not in LOOKING_KINDS and (protected := request.protected()):
        return "reject", f"protected: {protected}"
    inside = request.inside_workspace()
    for number, rule in enumerate(policy.rules, 1):
        if rule.applies(request, inside):
            decision: Decision = "allow_once" if rule.decision == "allow" else "reject"
            return decision, f"rule {number}"
    return ("allow_once" if policy.default == "allow" else "reject"), "default"


def request_from_acp(
    agent: str,
    tool_call: dict[str, Any],
    options: list[dict[str, Any]],
    workspace: Path,
    earlier: dict[str, Any] | None = None,
) -> PermissionRequest:
    """A :class:`PermissionRequest` from the ACP request's ``toolCall`` and ``options``.

    ``earlier``: what the agent already said of the same tool call (its ``tool_call`` and
    updates): the request is an update of it, and may leave out what it said there (codex-acp
    names a move's source in the request, its destination only in the earlier diff). Paths
    and addresses are the union of both; nothing the earlier call named is dropped."""
    earlier = _dict(earlier)
    mine = _dict(tool_call.get("rawInput"))
    raw = {**_dict(earlier.get("rawInput")), **mine}
    title = str(tool_call.get("title") or earlier.get("title") or "")
    kind = str(tool_call.get("kind") or earlier.get("kind") or "")
    command = raw.get("command") or raw.get("cmd") or ""
    if isinstance(command, list):
        command = " ".join(str(c) for c in command)
    if not command and kind == "execute":
        command = title  # gemini sends a command only as the tool call's title
    kind = kind or ("execute" if command else "other")
    paths: list[str] = []
    urls: list[str] = []
    own_diffs: list[str] = []
    earlier_diffs: list[str] = []
    for call, diffs in ((earlier, earlier_diffs), (tool_call, own_diffs)):
        for loc in _list(call.get("locations")):
            _add(_dict(loc).get("path"), paths, urls)
        for item in _list(call.get("content")):
            if isinstance(item, dict) and item.get("type") == "diff":
                _add(item.get("path"), paths, urls)
                diffs.append(_unified(item))
        _walk(_dict(call.get("rawInput")), paths, urls)
    # Asking for more than the agent's sandbox gives (codex's additionalPermissions, a
    # request_permissions tool): only a person, or a rule that names it, can allow that.
    extra = {k: v for k, v in raw.items() if k in _ESCALATION_KEYS and v}
    if re.search(r"\bnetwork access\b", title, re.IGNORECASE):
        extra["title"] = title  # codex names a network request so, with no url for most kinds
    return PermissionRequest(
        agent=agent,
        tool_call_id=tool_call.get("toolCallId") or earlier.get("toolCallId"),
        title=title or kind,
        kind=kind,
        command=str(command),
        paths=paths,
        workspace=workspace,
        options=[str(_dict(o).get("kind")) for o in _list(options)],
        diff="".join(own_diffs or earlier_diffs),  # a person sees what will be written
        urls=urls,
        escalation=json.dumps(extra, sort_keys=True, default=str) if extra else "",
    )


# rawInput keys (lower-cased, '_' and '-' dropped) that hold paths besides those ending in
# "path", "paths", "file", "dir" or "directory": a move's destination, a command's folder, ...
_PATH_KEYS = frozenset(
    {"destination", "dest", "dst", "target", "targets", "source", "sources", "src", "cwd"}
    | {"filename", "files", "notebook", "to", "from", "location", "output", "out", "outfile"}
    | {"newname", "workdir", "workingdirectory", "root", "folder", "dirs", "directories"}
)
_PATH_ENDINGS = ("path", "paths", "file", "dir", "directory")
_URL_KEYS = frozenset({"url", "urls", "uri", "uris", "href", "endpoint", "host", "hostname"})
_ESCALATION_KEYS = frozenset({"additionalPermissions", "permissions", "sandboxPermissions"})


def _walk(value: Any, paths: list[str], urls: list[str], key: str = "", depth: int = 0) -> None:
    """Every path and address in a tool's input, nested ones and paths used as keys too."""
    if depth > 8:
        return
    name = key.lower().replace("_", "").replace("-", "")
    if isinstance(value, str):
        if name in _URL_KEYS or name.endswith(("url", "uri")):
            _add(value, paths, urls, url=True)
        elif name in _PATH_KEYS or name.endswith(_PATH_ENDINGS):
            _add(value, paths, urls)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and (k.startswith(("/", "~")) or "://" in k):
                _add(k, paths, urls)  # {changes: {"/ws/a.py": ...}}
            _walk(v, paths, urls, str(k), depth + 1)
    elif isinstance(value, list):
        for item in value:
            _walk(item, paths, urls, key, depth + 1)


def _add(value: Any, paths: list[str], urls: list[str], *, url: bool = False) -> None:
    """A path or an address, each in its list; ``file://`` addresses are paths."""
    if not isinstance(value, str) or not value:
        return
    if value.startswith("file://"):
        value, url = value[len("file://") :] or "/", False
    elif "://" in value:
        url = True
    into = urls if url else paths
    if value not in into:
        into.append(value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _unified(item: dict[str, Any]) -> str:
    """An ACP diff content item (path, oldText or null for a new file, newText) as text."""
    path = str(item.get("path"))
    old = item.get("oldText")
    new = item.get("newText")
    lines = difflib.unified_diff(
        str(old or "").splitlines(keepends=True),
        str(new or "").splitlines(keepends=True),
        fromfile="/dev/null" if old is None else path,
        tofile=path,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


class PermissionHandler:
    """Answers one run's permission requests; remembers "always for this run" answers."""

    def __init__(
        self, policy: ApprovalPolicy, ask: Ask | None = None, *, step: str | None = None
    ) -> None:
        self.policy = policy
        self.ask = ask
        self.step = step
        self._always: set[tuple[str, str]] = set()

    def for_step(self, step: str | None) -> PermissionHandler:
        """This run's handler as one step asks it: the same answers, "always" included."""
        handler = PermissionHandler(self.policy, self.ask, step=step)
        handler._always = self._always
        return handler

    async def decide(self, request: PermissionRequest) -> tuple[Decision, str, str]:
        """(decision, by, reason)."""
        if request.step is None and self.step is not None:
            request = replace(request, step=self.step)
        key = request.same
        # "Always" covers the same request again, never one that changes what runs.
        if key is not None and key in self._always and not request.warning:
            return "allow_once", "always", "allowed for this run"
        if self.ask is not None:
            try:
                answer = await asyncio.wait_for(_answer(self.ask, request), self.policy.timeout)
            except asyncio.TimeoutError:
                decision, rule = decide_by_policy(self.policy, request)
                return decision, "timeout", f"no answer in {self.policy.timeout:g}s; policy {rule}"
            except Exception as exc:  # the hook is the user's code: its failure is not the run's
                decision, rule = decide_by_policy(self.policy, request)
                why = f"the approvals function raised {type(exc).__name__}: {exc}"
                return decision, "policy", f"{why}; policy {rule}"
            if answer not in ("allow_once", "allow_always", "reject"):
                return "reject", "user", f"unknown answer {answer!r}"
            if answer == "allow_always" and key is not None:
                self._always.add(key)
            return answer, "user", ""
        decision, rule = decide_by_policy(self.policy, request)
        return decision, "policy", rule


async def _answer(ask: Ask, request: PermissionRequest) -> Decision | Any:
    """The hook's answer: an async hook is awaited, a plain one runs in a worker thread (it may
    block, as ``input()`` does, without stopping the agents' event loop)."""
    if inspect.iscoroutinefunction(ask) or inspect.iscoroutinefunction(
        getattr(ask, "__call__", None)  # noqa: B004 - an object with an async __call__
    ):
        answer: Any = ask(request)
    else:
        answer = await asyncio.to_thread(ask, request)
    if inspect.isawaitable(answer):
        answer = await answer
    return answer


def pick_option(decision: Decision, options: list[dict[str, Any]]) -> str | None:
    """The ACP option id that carries ``decision`` (None: answer "cancelled")."""
    wanted = {
        "allow_once": ("allow_once", "allow_always"),
        "allow_always": ("allow_always", "allow_once"),
        "reject": ("reject_once", "reject_always"),
    }[decision]
    for kind in wanted:
        for option in options:
            if option.get("kind") == kind and isinstance(option.get("optionId"), str):
                return str(option["optionId"])
    return None


__all__ = [
    "NETWORK_COMMANDS",
    "ApprovalPolicy",
    "ApprovalRule",
    "Ask",
    "Decision",
    "PermissionHandler",
    "PermissionRequest",
    "decide_by_policy",
    "handler_for",
    "pick_option",
    "request_from_acp",
]


def handler_for(
    approvals: Any, default: ApprovalPolicy, *, step: str | None = None
) -> PermissionHandler:
    """The handler for ``approvals=``: a policy, its dict form, an async callable, or None.
    ``step``: the workflow step the agent runs (a callable's requests carry it)."""
    from ...errors import ConfigError

    if isinstance(approvals, PermissionHandler):
        return approvals.for_step(step)  # the run's own: "always for this run" spans its steps
    if approvals is None:
        return PermissionHandler(default, step=step)
    if isinstance(approvals, ApprovalPolicy):
        return PermissionHandler(approvals, step=step)
    if isinstance(approvals, dict):
        from pydantic import ValidationError

        from ...config import validation_error

        try:
            return PermissionHandler(ApprovalPolicy.model_validate(approvals), step=step)
        except ValidationError as exc:
            error = validation_error(exc, None, None, ConfigError)
            key = f"approvals.{error.key}" if error.key else "approvals"
            raise ConfigError(
                f"bad approvals policy, {key}: {error.message}",
                key=key,
                hint=_POLICY_HINT,
            ) from None
    if callable(approvals):
        return PermissionHandler(default, ask=approvals, step=step)
    raise ConfigError(
        f"approvals must be a policy, a dict or a callable, not {type(approvals).__name__}",
        key="approvals",
        hint=_POLICY_HINT,
    )


_POLICY_HINT = (
    "e.g. approvals={'rules': [{'kind': ['edit'], 'where': 'workspace', 'decision': 'allow'}], "
    "'default': 'reject'}, or a function (PermissionRequest) -> 'allow_once' | 'allow_always' "
    "| 'reject'"
)
