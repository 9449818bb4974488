"""Who answers an agent's ``session/request_permission``: a policy, or a person through a hook.

For runs nobody watches a policy decides, by rules over the tool's kind, where it acts and the
command it runs (first matching rule wins)::

    approvals:                      # in orchestrator.yaml, or approvals= per call
      rules:
        - {kind: [execute], command: "curl|wget", decision: reject}
        - {where: outside, decision: reject}
        - {kind: [edit, delete, move], where: workspace, decision: allow}
      default: reject

An interactive front end passes ``approvals=`` an async callable ``(PermissionRequest) ->
"allow_once" | "allow_always" | "reject"``; "allow_always" holds for the rest of the run
(the same tool kind and target). When the callable does not answer within ``timeout`` seconds,
the policy decides (recorded ``by: timeout``).
"""

from __future__ import annotations

import asyncio
import difflib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Decision = Literal["allow_once", "allow_always", "reject"]

# Commands that reach the network: rejected by the default policy.
NETWORK_COMMANDS = (
    r"(^|[\s;&|(])(curl|wget|ssh|scp|sftp|rsync|nc|ncat|telnet|ftp|git\s+(push|fetch|pull|clone)"
    r"|pip\s+install|npm\s+(install|i)\b|npx)\b"
)


class ApprovalRule(BaseModel):
    """One rule; every given condition must hold for it to apply."""

    model_config = ConfigDict(extra="forbid")

    kind: list[str] | None = Field(
        default=None,
        description="ACP tool kinds: read, edit, delete, move, search, execute, fetch, other...",
    )
    where: Literal["workspace", "outside", "any"] = Field(
        default="any", description="Whether every path the tool names is inside the workspace."
    )
    command: str | None = Field(
        default=None, description="A regular expression searched in the command text."
    )
    decision: Literal["allow", "reject"]

    @field_validator("command")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value


def _default_rules() -> list[ApprovalRule]:
    return [
        ApprovalRule(kind=["execute", "other"], command=NETWORK_COMMANDS, decision="reject"),
        ApprovalRule(kind=["fetch"], decision="reject"),
        ApprovalRule(where="outside", decision="reject"),
        ApprovalRule(where="workspace", decision="allow"),
    ]


class ApprovalPolicy(BaseModel):
    """Rules for unattended runs; the default allows work inside the workspace only."""

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

    @property
    def target(self) -> str:
        return self.command or ", ".join(self.paths)

    def inside_workspace(self) -> bool | None:
        """True/False when the tool names paths; None when it names none."""
        if not self.paths:
            return None
        root = self.workspace.resolve()
        for raw in self.paths:
            path = Path(raw)
            path = (root / path) if not path.is_absolute() else path
            try:
                path.resolve().relative_to(root)
            except ValueError:
                return False
        return True


Ask = Callable[[PermissionRequest], Awaitable[str]]


def decide_by_policy(policy: ApprovalPolicy, request: PermissionRequest) -> tuple[Decision, str]:
    """The policy's decision and the rule that made it."""
    inside = request.inside_workspace()
    for number, rule in enumerate(policy.rules, 1):
        if rule.kind is not None and request.kind not in rule.kind:
            continue
        if rule.where == "workspace" and inside is False:
            continue
        if rule.where == "outside" and inside is not False:
            continue
        if rule.command is not None and not re.search(rule.command, request.command):
            continue
        decision: Decision = "allow_once" if rule.decision == "allow" else "reject"
        return decision, f"rule {number}"
    return ("allow_once" if policy.default == "allow" else "reject"), "default"


def request_from_acp(
    agent: str, tool_call: dict[str, Any], options: list[dict[str, Any]], workspace: Path
) -> PermissionRequest:
    """A :class:`PermissionRequest` from the ACP request's ``toolCall`` and ``options``."""
    raw = tool_call.get("rawInput")
    raw = raw if isinstance(raw, dict) else {}
    command = raw.get("command") or raw.get("cmd") or ""
    if isinstance(command, list):
        command = " ".join(str(c) for c in command)
    paths = [
        str(loc["path"])
        for loc in tool_call.get("locations") or []
        if isinstance(loc, dict) and isinstance(loc.get("path"), str)
    ]
    for key in ("file_path", "path", "absolute_path", "filePath"):
        value = raw.get(key)
        if isinstance(value, str) and value not in paths:
            paths.append(value)
    diffs: list[str] = []
    for item in tool_call.get("content") or []:
        if not isinstance(item, dict) or item.get("type") != "diff":
            continue
        if item.get("path") not in paths:
            paths.append(str(item.get("path")))
        diffs.append(_unified(item))
    kind = str(tool_call.get("kind") or ("execute" if command else "other"))
    return PermissionRequest(
        agent=agent,
        tool_call_id=tool_call.get("toolCallId"),
        title=str(tool_call.get("title") or kind),
        kind=kind,
        command=str(command),
        paths=paths,
        workspace=workspace,
        options=[str(o.get("kind")) for o in options],
        diff="".join(diffs),
    )


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
        key = (request.kind, request.target)
        if key in self._always:
            return "allow_once", "always", "allowed for this run"
        if self.ask is not None:
            try:
                answer = await asyncio.wait_for(self.ask(request), self.policy.timeout)
            except asyncio.TimeoutError:
                decision, rule = decide_by_policy(self.policy, request)
                return decision, "timeout", f"no answer in {self.policy.timeout:g}s; policy {rule}"
            if answer not in ("allow_once", "allow_always", "reject"):
                return "reject", "user", f"unknown answer {answer!r}"
            if answer == "allow_always":
                self._always.add(key)
            return answer, "user", ""  # type: ignore[return-value]
        decision, rule = decide_by_policy(self.policy, request)
        return decision, "policy", rule


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
        try:
            return PermissionHandler(ApprovalPolicy.model_validate(approvals), step=step)
        except ValueError as exc:
            raise ConfigError(f"bad approvals policy: {exc}", key="approvals") from None
    if callable(approvals):
        return PermissionHandler(default, ask=approvals, step=step)
    raise ConfigError(
        f"approvals must be a policy, a dict or an async callable, not {type(approvals).__name__}",
        key="approvals",
    )
