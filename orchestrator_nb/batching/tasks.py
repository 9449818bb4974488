"""A batch's tasks: from a list of strings or mappings, or a ``.txt`` / ``.jsonl`` / ``.yaml`` file.

Every task gets an id (given, or ``task-<n>`` by position) that names its branch and folder, so
ids must be unique and safe in both. Problems are one :class:`ConfigError` naming the file, the
line and what to change.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import read_yaml
from ..errors import ConfigError

TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
ID_RULE = "letters, digits, '-' and '_', starting with a letter or digit, at most 64 characters"
TaskInput = str | Mapping[str, Any]
TasksArg = Sequence[TaskInput] | str | os.PathLike[str]
_YAML_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class BatchTask:
    """One task of a batch, checked."""

    id: str
    task: str
    workflow: str | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)


class _TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, description="Names the task's branch and folder.")
    task: str = Field(min_length=1, description="What the agents should do.")
    workflow: str | None = Field(default=None, description="Overrides the batch's workflow.")
    vars: dict[str, Any] = Field(default_factory=dict, description="Template variables.")


# (the raw item, the line it came from) — lines only for files
_Raw = tuple[Any, int | None]


def load_tasks(tasks: TasksArg) -> list[BatchTask]:
    """The checked tasks of ``tasks``; a ``str`` or path is a file of tasks."""
    path: str | None = None
    if isinstance(tasks, (str, os.PathLike)):
        path = os.fspath(tasks)
        raw = _read_file(Path(path))
    elif isinstance(tasks, Sequence):
        raw = [(item, None) for item in tasks]
    else:
        raise ConfigError(
            f"tasks must be a list or a file path, not {type(tasks).__name__}",
            key="tasks",
            hint="pass a list of task strings, or the path of a file with one task per line",
        )
    if not raw:
        raise ConfigError(
            "there are no tasks to run",
            path=path,
            key="tasks",
            hint="pass a list of task strings, or a file with one task per line",
        )
    specs = [_spec(item, i, path, line) for i, (item, line) in enumerate(raw)]
    return _with_ids(specs, [line for _, line in raw], path)


def _read_file(path: Path) -> list[_Raw]:
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(
            f"the tasks file {what}",
            path=str(path),
            hint="pass a .txt file with one task per line, or a .jsonl or .yaml file",
        )
    suffix = path.suffix.lower()
    if suffix in _YAML_SUFFIXES:
        return _read_yaml(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"cannot read the tasks file: {reason}", path=str(path), hint="check the file"
        ) from exc
    out: list[_Raw] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or (suffix != ".jsonl" and stripped.startswith("#")):
            continue
        if suffix != ".jsonl":
            out.append((stripped, number))
            continue
        try:
            out.append((json.loads(stripped), number))
        except ValueError as exc:
            raise ConfigError(
                f"not valid JSON: {exc}",
                path=str(path),
                line=number,
                hint='write one JSON string or object per line, e.g. {"id": "a", "task": "..."}',
            ) from None
    return out


def _read_yaml(path: Path) -> list[_Raw]:
    data, node = read_yaml(path)
    if isinstance(data, dict) and set(data) == {"tasks"} and isinstance(node, yaml.MappingNode):
        data, node = data["tasks"], node.value[0][1]
    if data is None:
        return []
    if not isinstance(data, list) or not isinstance(node, yaml.SequenceNode):
        raise ConfigError(
            "expected a list of tasks (or a mapping with only `tasks:`)",
            path=str(path),
            line=1,
            hint="write `- first task` lines, or `- {id: a, task: ...}` mappings",
        )
    return [(item, child.start_mark.line + 1) for item, child in zip(data, node.value, strict=True)]


def _spec(item: Any, index: int, path: str | None, line: int | None) -> _TaskSpec:
    label = f"task #{index + 1}"
    if isinstance(item, str):
        item = {"task": item}
    if not isinstance(item, Mapping):
        raise ConfigError(
            f"{label} is a {type(item).__name__}",
            path=path,
            line=line,
            hint="give a string, or a mapping with `task` (and optional id, workflow, vars)",
        )
    try:
        spec = _TaskSpec.model_validate(dict(item))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or None
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(
            f"{label}: {message}" if path is None else message,
            path=path,
            line=line,
            key=key,
            hint="a task mapping takes: task (required), id, workflow, vars",
        ) from None
    if not spec.task.strip():
        raise ConfigError(
            f"{label} is empty", path=path, line=line, key="task", hint="describe the work"
        )
    return spec


def _with_ids(specs: list[_TaskSpec], lines: list[int | None], path: str | None) -> list[BatchTask]:
    width = len(str(len(specs)))
    seen: dict[str, int] = {}
    out: list[BatchTask] = []
    for i, spec in enumerate(specs):
        task_id = spec.id if spec.id is not None else f"task-{i + 1:0{width}d}"
        where = f"task #{i + 1}" + (f" (line {lines[i]})" if lines[i] else "")
        if not TASK_ID.fullmatch(task_id):
            raise ConfigError(
                f"{where}: id {task_id!r} cannot name a branch and a folder",
                path=path,
                line=lines[i],
                key="id",
                hint=f"use {ID_RULE}",
            )
        if task_id in seen:
            first = seen[task_id]
            raise ConfigError(
                f"{where}: id {task_id!r} is already used by task #{first + 1}",
                path=path,
                line=lines[i],
                key="id",
                hint="give every task a unique `id`",
            )
        seen[task_id] = i
        out.append(BatchTask(task_id, spec.task, spec.workflow, dict(spec.vars)))
    return out


__all__ = ["ID_RULE", "BatchTask", "TaskInput", "TasksArg", "load_tasks"]
