"""A workflow gate as an ACP permission request: Approve continues, Reject stops the run.

The client is asked with ``session/request_permission`` (a pending tool call naming the gate
and its message). A cancel while the question is open rejects; a client that cannot ask
leaves the decision to the gate's policy, as a batch run would.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from acp import text_block, tool_content
from acp.schema import AllowedOutcome, PermissionOption, ToolCallUpdate

from ..observe.redact import redact
from ..workflow.models import GateStep
from .stream import Progress

log = logging.getLogger("orchestrator_nb.acp")
APPROVE, REJECT = "approve", "reject"
OPTIONS = [
    PermissionOption(option_id=APPROVE, name="Approve, continue", kind="allow_once"),
    PermissionOption(option_id=REJECT, name="Reject, stop here", kind="reject_once"),
]
Ask = Callable[..., Awaitable[Any]]  # the client's request_permission


async def ask_unless_cancelled(
    ask: Ask,
    session_id: str,
    call: ToolCallUpdate,
    options: list[PermissionOption],
    cancel: asyncio.Event,
) -> Any | None:
    """The client's answer (its ``outcome``) to one question, or None when the run is
    cancelled first: the question is then withdrawn, also when our caller is cancelled (a
    handler's timeout). A client that fails to ask raises, and the caller's policy decides."""
    asking = asyncio.ensure_future(ask(session_id=session_id, tool_call=call, options=options))
    stopping = asyncio.ensure_future(cancel.wait())
    try:
        await asyncio.wait({asking, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not asking.done():
            asking.cancel()
    if not asking.done() or asking.cancelled():
        return None
    return asking.result().outcome


def gate_handler(
    ask: Ask, session_id: str, cancel: asyncio.Event, progress: Progress
) -> Callable[[GateStep, str], Awaitable[str | None]]:
    """The ``gate=`` handler of one prompt's run."""
    numbers = itertools.count(1)

    async def decide(step: GateStep, message: str) -> str | None:
        await progress.drain()  # the client sees what led to the gate before the question
        text = redact(message)
        call = ToolCallUpdate(
            tool_call_id=f"gate/{step.id}/{next(numbers)}",
            title=f"Gate {step.id}: {text}",
            kind="think",
            status="pending",
            content=[tool_content(text_block(text))],
        )
        try:
            outcome = await ask_unless_cancelled(ask, session_id, call, OPTIONS, cancel)
        except Exception as exc:
            log.warning("permission request for gate %s failed: %s", step.id, exc)
            return None  # nobody could answer: the gate's policy decides
        if outcome is None:
            return REJECT  # cancelled while asking: nobody approved
        if isinstance(outcome, AllowedOutcome) and outcome.option_id == APPROVE:
            return APPROVE
        return REJECT

    return decide
