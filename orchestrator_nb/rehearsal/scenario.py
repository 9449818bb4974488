"""Rehearsal scenarios: scripted model turns in a provider-neutral vocabulary.

A scenario is a YAML file validated by the pydantic models below (``extra="forbid"``
everywhere, so a typo is an error, never a silently ignored key). Errors name the file and
the line, found through the YAML node marks of the key pydantic complains about::

    name: write-file
    turns:
      - agent: claude            # optional keys that select the turn: agent, step, words
        words: [hello]
        usage: {input: 1200, output: 40, cached: 200}
        actions:
          - say: I'll create the file.
          - write: {path: hello.txt, content: "hi\\n"}
          - say: Done.
    default:
      say: Nothing scripted for this prompt.

Each action becomes a call of the requesting CLI's *own* tool; see :mod:`.tools`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator_nb.errors import ScenarioError

Agent = Literal["claude", "codex", "gemini", "copilot"]
AGENTS: tuple[Agent, ...] = ("claude", "codex", "gemini", "copilot")
# Models each CLI is told to use unless a scenario says otherwise. gpt-5.5 is one codex knows:
# it then offers apply_patch and prints no "model metadata not found" warning.
DEFAULT_MODELS: dict[str, str] = {
    "claude": "claude-sonnet-4-5",
    "codex": "gpt-5.5",
    "gemini": "gemini-2.5-flash",
    "copilot": "gpt-4.1",
}

# config/scenarios/ at the top of a source checkout; the wheel force-includes config/ as _config.
_PACKAGE_DIR = Path(__file__).resolve().parent.parent
SCENARIO_DIRS: tuple[Path, ...] = (
    _PACKAGE_DIR.parent / "config" / "scenarios",
    _PACKAGE_DIR / "_config" / "scenarios",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Usage(_Model):
    """Token counts reported for every model response of a turn.

    ``input`` counts all prompt tokens *including* the cached ones (the OpenAI and Gemini
    convention); Anthropic responses report ``input - cached`` as ``input_tokens`` and
    ``cached`` as ``cache_read_input_tokens``, which is what Anthropic itself does.
    """

    input: int = Field(default=100, ge=0, description="prompt tokens, cached ones included")
    output: int = Field(default=20, ge=0, description="completion tokens")
    cached: int = Field(default=0, ge=0, description="prompt tokens served from the cache")

    @model_validator(mode="after")
    def _cached_within_input(self) -> Usage:
        if self.cached > self.input:
            raise ValueError(f"cached ({self.cached}) cannot exceed input ({self.input})")
        return self


class Fault(_Model):
    """A failure injected instead of (or before) the scripted answer."""

    kind: Literal["rate_limit", "error", "delay", "hang", "cut"] = Field(
        description="rate_limit: HTTP 429 with retry-after; error: HTTP `status`; delay: wait "
        "`seconds` then answer; hang: never answer; cut: close the stream part way"
    )
    retry_after: float = Field(
        default=1.0, ge=0, description="seconds, sent as the retry-after header"
    )
    status: int = Field(default=500, ge=400, le=599, description="HTTP status for kind=error")
    seconds: float = Field(default=1.0, ge=0, description="wait before answering, for kind=delay")
    until: str | None = Field(
        default=None,
        min_length=1,
        description="for kind=delay: wait until this file exists instead of `seconds` (a gate "
        "a test opens, so no assertion depends on which of two timers fires first)",
    )
    after_events: int | None = Field(
        default=None, ge=0, description="stream events sent before a cut (default: half of them)"
    )
    times: int | None = Field(
        default=None,
        ge=1,
        description="how many requests of each agent and step get the fault; default: all",
    )
    message: str | None = Field(default=None, description="error text the CLI will show")


class WriteFile(_Model):
    path: str = Field(min_length=1, description="relative to the CLI's working directory")
    content: str


class EditFile(_Model):
    path: str = Field(min_length=1)
    old: str = Field(min_length=1, description="exact text to replace (must occur once)")
    new: str


class Action(_Model):
    """One scripted step: exactly one of the keys."""

    say: str | None = Field(default=None, description="assistant text")
    write: WriteFile | None = Field(default=None, description="create or overwrite a file")
    edit: EditFile | None = Field(default=None, description="replace text in a file")
    read: str | None = Field(default=None, min_length=1, description="read a file (path)")
    run: str | None = Field(default=None, min_length=1, description="run a shell command")

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            keys = [k for k in ("say", "write", "edit", "read", "run") if k in data]
            if len(keys) != 1 and not (set(data) - {"say", "write", "edit", "read", "run"}):
                shown = ", ".join(keys) or "none"
                raise ValueError(
                    f"an action needs exactly one of say/write/edit/read/run (got {shown})"
                )
        return data

    @property
    def kind(self) -> str:
        for key in ("say", "write", "edit", "read", "run"):
            if getattr(self, key) is not None:
                return key
        raise AssertionError("validated Action without a kind")


class Reply(_Model):
    """What the model does for one prompt: actions, usage and an optional fault."""

    say: str | None = Field(default=None, description="shorthand for actions: [{say: ...}]")
    actions: tuple[Action, ...] = Field(default=(), description="the scripted steps, in order")
    usage: Usage = Field(default_factory=lambda: Usage(), description="per model response")
    fault: Fault | None = None

    @model_validator(mode="after")
    def _say_or_actions(self) -> Reply:
        if self.say is not None and self.actions:
            raise ValueError("give either `say` or `actions`, not both")
        if self.say is None and not self.actions and (self.fault is None):
            raise ValueError("a turn needs `say` or `actions` (or only a `fault`)")
        return self

    @property
    def steps(self) -> tuple[Action, ...]:
        if self.actions:
            return self.actions
        # A fault-only turn still needs an answer for the requests after the fault ran out.
        return (Action(say=self.say if self.say is not None else "The scripted fault is over."),)


class Turn(Reply):
    """A reply plus the keys that select it. Absent keys match anything."""

    name: str | None = Field(default=None, description="label shown in the recording")
    agent: Agent | tuple[Agent, ...] | None = None
    step: str | tuple[str, ...] | None = Field(default=None, description="workflow step name(s)")
    words: str | tuple[str, ...] | None = Field(
        default=None,
        description="all must occur in the prompt (case-insensitive); a string is split",
    )

    def matches(self, agent: str, step: str | None, prompt: str) -> bool:
        if self.agent is not None and agent not in _as_tuple(self.agent):
            return False
        if self.step is not None and step not in _as_tuple(self.step):
            return False
        text = prompt.casefold()
        return all(word.casefold() in text for word in self.word_list)

    @property
    def word_list(self) -> tuple[str, ...]:
        if self.words is None:
            return ()
        if isinstance(self.words, str):
            return tuple(self.words.split())
        return self.words


class Settings(_Model):
    cli_max_retries: int | None = Field(
        default=None, ge=0, le=9, description="bound each CLI's own retry loop (None: CLI defaults)"
    )
    models: dict[Agent, str] = Field(
        default_factory=dict, description="model name per agent (codex gets it as -m)"
    )

    def model_for(self, agent: str) -> str | None:
        """The model the scenario names for ``agent``, if any."""
        return next((m for a, m in self.models.items() if a == agent), None)


class Scenario(_Model):
    name: str = Field(min_length=1)
    description: str = ""
    settings: Settings = Field(default_factory=lambda: Settings())
    turns: tuple[Turn, ...] = ()
    default: Reply | None = Field(default=None, description="answer for prompts no turn matches")
    source: str | None = Field(
        default=None, description="file it was loaded from (set by the loader)"
    )

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise ValueError("use letters, digits, '.', '_' and '-' only")
        return value

    def select(self, agent: str, step: str | None, prompt: str) -> tuple[int, Reply]:
        """The first matching turn as ``(index, reply)``; ``(-1, default)`` when none does."""
        for index, turn in enumerate(self.turns):
            if turn.matches(agent, step, prompt):
                return index, turn
        return -1, self.default_reply()

    def reply_at(self, index: int) -> Reply:
        return self.turns[index] if 0 <= index < len(self.turns) else self.default_reply()

    def default_reply(self) -> Reply:
        """The default answer; its first text always says that it is the default."""
        marker = f"[default answer of rehearsal scenario {self.name!r}]"
        base = self.default or Reply(say="No scripted turn matched this prompt.")
        steps = list(base.steps)
        for i, action in enumerate(steps):
            if action.say is not None:
                if "default" not in action.say.casefold():
                    steps[i] = Action(say=f"{marker} {action.say}")
                break
        else:
            steps.insert(0, Action(say=marker))
        return Reply(actions=tuple(steps), usage=base.usage, fault=base.fault)


def _as_tuple(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


# ----------------------------------------------------------------------------- loading


def shipped_scenarios() -> dict[str, Path]:
    """Names and files of the scenarios that ship in ``config/scenarios``."""
    found: dict[str, Path] = {}
    for folder in SCENARIO_DIRS:
        if folder.is_dir():
            for file in sorted(folder.glob("*.y*ml")):
                found.setdefault(file.stem, file)
    return found


def load_scenario(source: str | Path | Scenario) -> Scenario:
    """A Scenario from an object, a YAML file path, or the name of a shipped scenario."""
    if isinstance(source, Scenario):
        return source
    path = Path(source)
    # A bare name is a shipped scenario unless a file of that name exists: a folder named like
    # one (a `calculator/` workspace the calculator scenario wrote) does not hide it.
    if not path.suffix and not path.is_file():
        shipped = shipped_scenarios()
        if str(source) not in shipped:
            names = ", ".join(sorted(shipped)) or "none"
            raise ScenarioError(
                f"no scenario file or shipped scenario named {str(source)!r}",
                hint=f"shipped scenarios: {names}",
            )
        path = shipped[str(source)]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            f"not UTF-8 text (byte {exc.start})", path=str(path), hint="save the file as UTF-8"
        ) from exc
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario: {exc}", path=str(path)) from exc
    return parse_scenario(text, path=str(path), default_name=path.stem)


def parse_scenario(
    text: str, *, path: str = "<string>", default_name: str = "scenario"
) -> Scenario:
    """Validate YAML text; errors carry the file and the 1-based line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ScenarioError(f"invalid YAML: {exc.problem or exc}", path=path, line=line) from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"invalid YAML: {exc}", path=path) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError("a scenario must be a mapping at the top level", path=path, line=1)
    if root is not None:
        _reject_duplicate_keys(root, path)
    data.setdefault("name", default_name)
    data["source"] = path
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise _scenario_error(exc, root, path) from None


def _reject_duplicate_keys(node: yaml.Node, path: str) -> None:
    # yaml.safe_load keeps the last duplicate silently; a scenario author never means that.
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            if key.value in seen:
                raise ScenarioError(
                    f"duplicate key {key.value!r}", path=path, line=key.start_mark.line + 1
                )
            seen.add(key.value)
            _reject_duplicate_keys(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _reject_duplicate_keys(item, path)


def _line_of(root: yaml.Node | None, loc: Sequence[int | str]) -> tuple[int | None, str]:
    """Follow a pydantic error location through the YAML nodes as far as it goes."""
    node = root
    line = root.start_mark.line + 1 if root is not None else None
    walked: list[str] = []
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    line, node = key.start_mark.line + 1, value
                    walked.append(str(part))
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
            walked.append(str(part))
        else:
            break
    return line, ".".join(walked)


def _scenario_error(exc: ValidationError, root: yaml.Node | None, path: str) -> ScenarioError:
    problems: list[tuple[int | None, str, str]] = []
    seen: set[str] = set()
    for error in exc.errors():
        line, key = _line_of(root, error["loc"])
        if key in seen:
            continue  # one message per key: each member of a union reports its own failure
        seen.add(key)
        problems.append((line, key, error["msg"]))
    first_line, first_key, first_msg = problems[0]
    message = first_msg
    if len(problems) > 1:
        more = "; ".join(f"line {ln} ({key}): {msg}" for ln, key, msg in problems[1:6])
        message += f" (and {len(problems) - 1} more: {more})"
    return ScenarioError(
        message,
        path=path,
        line=first_line,
        key=first_key or None,
        hint="see orchestrator_nb.rehearsal.scenario for the scenario format",
    )
