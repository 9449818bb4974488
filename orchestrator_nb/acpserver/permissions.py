"""An inner agent's permission request, forwarded to the ACP client that drives the run.

An ACP agent of the workflow (``gemini-acp``, ``copilot-acp``, ...) asks before it edits or
runs something. Served as an ACP agent ourselves, we ask our own client the same question with
``session/request_permission``, labelled with the agent and the step: Allow once, Always for
this run (the same kind of tool on the same target is then allowed without asking again until
the run ends) or Reject. The approvals policy keeps its part: when the client does not answer
within ``approvals.timeout`` the policy decides (the run's handler records ``by: timeout``),
and a client that cannot ask leaves the decision to the policy too. A cancel while the
question is open rejects. Every decision reaches the audit trail as ``permission_decided``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import get_args

from acp import text_block, tool_content
from acp.schema import AllowedOutcome, PermissionOption, ToolCallUpdate, ToolKind

from ..agents.acp.permissions import ApprovalPolicy, Decision, PermissionRequest, decide_by_policy
from ..observe.redact import redact
from .gates import Ask, ask_unless_cancelled
from .stream import Progress

log = logging.getLogger("orchestrator_nb.acp")
ALLOW_ONCE: Decision = "allow_once"
ALLOW_ALWAYS: Decision = "allow_always"
REJECT: Decision = "reject"
OPTIONS = [
    PermissionOption(option_id=ALLOW_ONCE, name="Allow once", kind="allow_once"),
    PermissionOption(option_id=ALLOW_ALWAYS, name="Always for this run", kind="allow_always"),
    PermissionOption(option_id=REJECT, name="Reject", kind="reject_once"),
]
_KINDS = frozenset(get_args(ToolKind))


def label(request: PermissionRequest) -> str:
    """``gemini-acp · write: Write hello.txt (hello.txt)``: who asks, in which step, for what."""
    who = f"{request.agent} · {request.step}" if request.step else request.agent
    target = f" ({request.target})" if request.target and request.target != request.title else ""
    warning = f" [{request.warning}]" if request.warning else ""
    return redact(f"{who}: {request.title}{target}{warning}")


def approver(
    ask: Ask,
    session_id: str,
    cancel: asyncio.Event,
    progress: Progress,
    policy: ApprovalPolicy,
) -> Callable[[PermissionRequest], Awaitable[Decision]]:
    """The ``approvals=`` callable of one prompt's run. "Always for this run" is remembered by
    the run's permission handler, which asks this callable only what it has not allowed."""
    numbers = itertools.count(1)

    async def decide(request: PermissionRequest) -> Decision:
        await progress.drain()  # the client sees what led to the question first
        text = label(request)
        call = ToolCallUpdate(
            tool_call_id=f"permission/{request.step or request.agent}/{next(numbers)}",
            title=text,
            kind=request.kind if request.kind in _KINDS else "other",  # type: ignore[arg-type]
            status="pending",
            content=[tool_content(text_block(redact(request.target or request.title)))],
        )
        try:
            outcome = await ask_unless_cancelled(ask, session_id, call, OPTIONS, cancel)
        except Exception as exc:
            log.warning("permission request of %s failed: %s", request.agent, exc)
            return decide_by_policy(policy, request)[0]  # nobody could answer: the policy
        if outcome is None:
            return REJECT  # cancelled while asking: nobody allowed it
        if not isinstance(outcome, AllowedOutcome) or outcome.option_id == REJECT:
            return REJECT
        if outcome.option_id == ALLOW_ALWAYS:
            return ALLOW_ALWAYS
        return ALLOW_ONCE if outcome.option_id == ALLOW_ONCE else REJECT

    return decide


__all__ = ["OPTIONS", "approver", "label"]
