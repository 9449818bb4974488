"""Whether a cell continues the session: the follow-up decision, made in one place.

:func:`decide_followup` applies the original tool's heuristic (action or request words on a
short message) unless the user forced the choice (``--followup``/``--new``); only a turn of the
same workspace that got somewhere can be continued.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sessions import Session

ACTION_WORDS = ("add", "also", "now", "then", "next", "improve", "fix", "change", "update")
REQUEST_WORDS = ("can you", "please", "try", "would you")
SHORT_MESSAGE_WORDS = 30
_WORDS = re.compile(r"[a-z']+")


def with_context(context: str, message: str) -> str:
    """``message`` as a follow-up's new request after ``context`` (itself when there is none)."""
    return f"{context}\n\nNew request:\n{message}" if context else message


@dataclass(frozen=True)
class FollowupDecision:
    """Whether a cell continues the session, why, and how to ask for the other way."""

    followup: bool
    reason: str
    forced: bool = False
    previous: int | None = None  # the turn it follows

    def __str__(self) -> str:
        if self.followup:
            override = "" if self.forced else " — use --new to run it on its own"
            return f"↪ follow-up of turn {self.previous} ({self.reason}){override}"
        override = "" if self.forced or self.previous is None else " — use --followup to continue"
        return f"● new task ({self.reason}){override}"


def decide_followup(
    message: str,
    session: Session,
    *,
    force: bool | None = None,
    workspace: str | os.PathLike[str] | None = None,
) -> FollowupDecision:
    """The original tool's heuristic, unless ``force`` (``--followup``/``--new``) decides.

    With ``workspace``, only that workspace's turns count: a follow-up continues the last turn
    in the same folder, never another folder's.
    """
    parent = session.parent_turn(workspace)
    previous = parent.number if parent is not None else None
    if previous is None:
        mine = session.turns_in(workspace)
        if mine:  # turns here, but none that a follow-up may continue
            last = mine[-1]
            why = f"turn {last.number} {last.outcome}, and no earlier turn here finished"
        else:
            where = " in this workspace" if workspace is not None and session.turns else ""
            why = f"first turn{where}"
        if force:
            reason = f"--followup, but {why if mine else 'the session has no earlier turn'}"
            if not mine and workspace is not None and session.turns:
                reason += " in this workspace"
        else:
            reason = "--new" if force is False else why
        return FollowupDecision(False, reason, forced=bool(force))
    if force is not None:
        return FollowupDecision(force, "--followup" if force else "--new", True, previous)
    if session.conversation:
        return FollowupDecision(True, "conversation mode is on", False, previous)
    lowered = " ".join(message.lower().split())
    words = _WORDS.findall(lowered)
    if len(words) > SHORT_MESSAGE_WORDS:
        return FollowupDecision(False, f"more than {SHORT_MESSAGE_WORDS} words", False, previous)
    found = [w for w in ACTION_WORDS if w in words]
    found += [p for p in REQUEST_WORDS if re.search(rf"\b{re.escape(p)}\b", lowered)]
    if found:
        return FollowupDecision(True, f"short message with {found[0]!r}", False, previous)
    return FollowupDecision(False, "no follow-up words", False, previous)


__all__ = [
    "ACTION_WORDS",
    "REQUEST_WORDS",
    "SHORT_MESSAGE_WORDS",
    "FollowupDecision",
    "decide_followup",
    "with_context",
]
