"""The ACP server's pure parts: slash commands and a unified diff as ACP diff content."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from acp import text_block
from acp.schema import ResourceContentBlock

from orchestrator_nb.acpserver.commands import PromptError, commands, parse, prompt_text
from orchestrator_nb.acpserver.diffs import split
from orchestrator_nb.acpserver.stream import Progress
from orchestrator_nb.config import load_settings
from orchestrator_nb.events import ToolCallEvent, ToolResultEvent
from orchestrator_nb.lifecycle import AgentEventEmitted, StepStarted
from orchestrator_nb.workflow.result import PlannedStep
from orchestrator_nb.workspace.diff import make_change
from orchestrator_nb.workspace.store import FileState


@pytest.fixture(scope="module")
def known() -> list:
    return commands(load_settings())


def test_every_workflow_is_a_command_and_review_is_review_only(known: list) -> None:
    by_name = {c.name: c.workflow for c in known}
    assert by_name["quick"] == "quick" and by_name["best-of-n"] == "best-of-n"
    assert by_name["review"] == "review-only"


@pytest.mark.parametrize(
    ("text", "workflow", "task"),
    [
        ("Write calc.py", "default", "Write calc.py"),
        ("/quick Write calc.py", "quick", "Write calc.py"),
        ("@Orchestrator /review the parser", "review-only", "the parser"),
        ("System note: be careful.\n\n/best-of-n add pow", "best-of-n", "System note: be careful."
         "\n\nadd pow"),
        ("Fix /usr/lib paths in setup.py", "default", "Fix /usr/lib paths in setup.py"),
    ],
)  # fmt: skip
def test_a_slash_command_picks_the_workflow(
    known: list, text: str, workflow: str, task: str
) -> None:
    request = parse(text, known, "default")
    assert (request.workflow, request.task) == (workflow, task)


def test_bad_prompts_say_what_to_do(known: list) -> None:
    with pytest.raises(PromptError, match=r"unknown command /nope; the commands are: .*/quick"):
        parse("/nope do it", known, "default")
    with pytest.raises(PromptError, match="needs a task"):
        parse("/quick", known, "default")
    with pytest.raises(PromptError, match="empty"):
        parse("", known, "default")


def test_attachments_become_lines_of_the_prompt() -> None:
    link = ResourceContentBlock(type="resource_link", uri="file:///w/calc.py", name="calc.py")
    assert prompt_text([text_block("Review this"), link]) == (
        "Review this\nAttached: file:///w/calc.py"
    )


def _diff(path: str, old: bytes | None, new: bytes | None) -> str:
    """The diff the workspace layer writes for a file going from ``old`` to ``new``."""
    contents = {k: v for k, v in (("old", old), ("new", new)) if v is not None}
    before = FileState("old", size=len(old)) if old is not None else None
    after = FileState("new", size=len(new)) if new is not None else None
    return make_change(path, before, after, contents).diff


def test_a_new_file_is_its_whole_text_and_a_change_its_hunks() -> None:
    added = split(_diff("calc.py", None, b"def add(a, b):\n    return a + b\n"))
    assert [(f.path, f.old_text, f.new_text) for f in added] == [
        ("calc.py", None, "def add(a, b):\n    return a + b\n")
    ]
    old = b"".join(f"line {i}\n".encode() for i in range(30))
    new = old.replace(b"line 3\n", b"line three\n").replace(b"line 25\n", b"")
    (changed,) = split(_diff("notes.txt", old, new))
    assert changed.old_text is not None
    assert "line 3\n" in changed.old_text and "line three\n" in changed.new_text
    assert "line 25\n" in changed.old_text and "line 25\n" not in changed.new_text
    assert "⋮\n" in changed.new_text  # two hunks, apart
    assert "line 14\n" not in changed.new_text  # only the changed regions and their context


def test_no_newline_at_end_and_binary_files() -> None:
    (f,) = split(_diff("a.txt", b"one\ntwo", b"one\n2"))
    assert (f.old_text, f.new_text) == ("one\ntwo", "one\n2")
    (b,) = split(_diff("logo.png", b"\x89PNG\0\0", b"\x89PNG\0\1"))
    assert b.note.startswith("Binary files") and b.new_text == ""


async def test_tool_call_ids_carry_the_round_and_calls_without_ids_pair_up() -> None:
    sent: list[object] = []

    async def send(update: object) -> None:
        sent.append(update)

    plan = [PlannedStep("review", "agent", "gemini", 1)]
    progress = Progress(send, plan, token_budget=None)
    for round_ in (1, 2):
        progress(StepStarted("r", "review", "gemini", "agent", round_))
        for event in (
            ToolCallEvent("item_1", "read_file"),
            ToolResultEvent("item_1", True, "ok"),
            ToolCallEvent(None, "shell"),
            ToolResultEvent(None, False, "exit 1"),
        ):
            progress(AgentEventEmitted("r", "review", "gemini", event))
    await progress.close()
    calls = [
        (u.session_update, u.tool_call_id, u.status) for u in sent if hasattr(u, "tool_call_id")
    ]
    assert calls == [
        ("tool_call", "review #1/item_1", "in_progress"),
        ("tool_call_update", "review #1/item_1", "completed"),
        ("tool_call", "review #1/n2", "in_progress"),
        ("tool_call_update", "review #1/n2", "failed"),
        ("tool_call", "review #2/item_1", "in_progress"),
        ("tool_call_update", "review #2/item_1", "completed"),
        ("tool_call", "review #2/n4", "in_progress"),
        ("tool_call_update", "review #2/n4", "failed"),
    ]


async def test_inner_permission_answers_always_for_this_run_cancel_and_timeout(
    tmp_path: Path,
) -> None:
    """The forwarding approver: "always" holds for the rest of the run (the client is not asked
    again for the same tool and target), a cancel while asking rejects, and a client that does
    not answer in time leaves the decision to the approvals policy."""
    from acp.schema import AllowedOutcome, RequestPermissionResponse

    from orchestrator_nb.acpserver.permissions import approver
    from orchestrator_nb.agents.acp.permissions import (
        ApprovalPolicy,
        PermissionHandler,
        PermissionRequest,
    )

    asked: list[str] = []
    answers = ["allow_always", "reject"]
    hold = asyncio.Event()

    async def client(session_id: str, tool_call: Any, options: list[Any]) -> Any:
        asked.append(tool_call.title)
        if not answers:
            await hold.wait()  # a person who walked away
        choice = AllowedOutcome(option_id=answers.pop(0), outcome="selected")
        return RequestPermissionResponse(outcome=choice)

    async def send(update: Any) -> None:
        return None

    def edit(path: str) -> PermissionRequest:
        return PermissionRequest("gemini-acp", "t1", f"Write {path}", "edit", "", [path], tmp_path)

    progress = Progress(send, [], token_budget=None)
    cancel = asyncio.Event()
    policy = ApprovalPolicy(rules=[], default="reject", timeout=0.5)
    ask = approver(client, "s", cancel, progress, policy)
    handler = PermissionHandler(policy, ask=ask, step="write")
    assert await handler.decide(edit("a.py")) == ("allow_always", "user", "")
    # Another step's handler of the same run: "always" is the run's, not the call's.
    later = handler.for_step("refine")
    assert (await later.decide(edit("a.py")))[0] == "allow_once"
    assert await later.decide(edit("b.py")) == ("reject", "user", "")
    assert asked == [
        "gemini-acp · write: Write a.py (a.py)",
        "gemini-acp · refine: Write b.py (b.py)",
    ]
    decision, by, _reason = await later.decide(edit("c.py"))  # nobody answers
    assert (decision, by) == ("reject", "timeout")
    asking = asyncio.ensure_future(ask(edit("d.py")))
    while len(asked) < 4:
        await asyncio.sleep(0.01)
    cancel.set()
    assert await asyncio.wait_for(asking, 10) == "reject"
    await progress.close()
