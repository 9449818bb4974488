"""What a prompt asks for: the workflow (a slash command, or the default) and the task.

Every workflow of the workspace's settings is a slash command (``/quick``, ``/best-of-n``…),
with a few short aliases (``/review`` for ``review-only``). A chat client may put other text
before the command (a mention, a note of its own), so the command is the first line that
starts with ``/name`` — optionally after an ``@mention`` — naming a known workflow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..config import Settings

ALIASES = {"review": "review-only", "best": "best-of-n", "parallel": "parallel-review"}
_COMMAND = re.compile(r"^[ \t]*(?:@\S+[ \t]+)?/([A-Za-z][A-Za-z0-9_-]*)\b[ \t]*", re.MULTILINE)


class PromptError(ValueError):
    """A prompt that cannot run: unknown command, or no task."""


@dataclass(frozen=True)
class Command:
    name: str
    workflow: str
    description: str


@dataclass(frozen=True)
class Request:
    workflow: str
    task: str
    command: str | None  # the slash command used, None for a plain prompt


def commands(settings: Settings) -> list[Command]:
    """The slash commands of these settings: one per workflow, then the aliases that apply."""
    out = [
        Command(name, name, settings.workflows[name].description or f"the {name} workflow")
        for name in sorted(settings.workflows)
    ]
    for alias, target in ALIASES.items():
        if target in settings.workflows and alias not in settings.workflows:
            out.append(Command(alias, target, f"same as /{target}"))
    return out


def prompt_text(blocks: list[Any]) -> str:
    """The prompt's text; attached resources become one line each naming them."""
    parts: list[str] = []
    for block in blocks:
        kind = getattr(block, "type", None)
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource_link":
            parts.append(f"Attached: {block.uri}")
        elif kind == "resource":
            uri = getattr(block.resource, "uri", "")
            text = getattr(block.resource, "text", None)
            parts.append(f"Attached {uri}:\n{text}" if text is not None else f"Attached: {uri}")
    return "\n".join(parts).strip()


def parse(text: str, known: list[Command], default: str) -> Request:
    """The workflow and task of a prompt; ``PromptError`` names an unknown command."""
    by_name = {c.name: c for c in known}
    for match in _COMMAND.finditer(text):
        name = match.group(1)
        command = by_name.get(name)
        if command is None:
            if match.start() == 0 or text[: match.start()].strip() == "":
                names = ", ".join(f"/{c.name}" for c in known)
                raise PromptError(f"unknown command /{name}; the commands are: {names}")
            continue  # a path or a word later in the text, not a command
        task = (text[: match.start()] + text[match.end() :]).strip()
        if not task:
            raise PromptError(f"/{name} needs a task after it, e.g. `/{name} add a pow function`")
        return Request(command.workflow, task, name)
    if not text:
        raise PromptError("the prompt is empty: say what the agents should do")
    return Request(default, text, None)
