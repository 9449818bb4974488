"""Turn a scripted action into a call of the requesting CLI's own tool.

Nothing here is keyed on the CLI: tools are chosen from the tool list in the request, first by
well-known names (claude ``Write``/``Edit``/``Read``/``Bash``; gemini ``write_file``/
``replace``/``read_file``/``run_shell_command``; copilot ``create``/``edit``/``view``/``bash``;
codex ``exec_command``/``shell_command``/``shell``) and then by what the parameter schema
offers, so a renamed tool in a new CLI version still works. Argument names come from the
schema too (``file_path`` vs ``path``, ``cmd`` string vs ``command`` array).

When a CLI has no tool for an action, the action becomes a shell command (codex has no
file-writing tool), and when it has no shell either, a short note in the assistant text.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .context import ToolSpec
from .scenario import Action

PATH_KEYS = ("file_path", "path", "absolute_path", "filename", "file")
CONTENT_KEYS = ("content", "file_text", "contents", "text")
OLD_KEYS = ("old_string", "old_str", "old_text")
NEW_KEYS = ("new_string", "new_str", "new_text")
COMMAND_KEYS = ("command", "cmd")

WRITE_NAMES = ("Write", "write_file", "create", "create_file", "write")
EDIT_NAMES = ("Edit", "replace", "edit", "str_replace", "edit_file")
READ_NAMES = ("Read", "read_file", "view", "read")
SHELL_NAMES = (
    "Bash",
    "run_shell_command",
    "bash",
    "exec_command",
    "shell_command",
    "shell",
    "run_command",
)
EDITOR_NAMES = ("str_replace_editor", "str_replace_based_edit_tool")

# Tool descriptions that say an existing file must be read in the conversation first
# (claude's Write and Edit). Checked on the text so a reworded version still matches.
_READ_FIRST = re.compile(
    r"must read|haven'?t read|have not read|read (?:it|the file) first|"
    r"read the file in this conversation",
    re.IGNORECASE,
)
_CREATE_ONLY = re.compile(r"must not (?:already )?exist|fails? if .{0,40}exists", re.IGNORECASE)
# Read and run tools that only look like matches by name.
_NOT_FILE_TOOLS = re.compile(r"image|bash_|_bash|stdin|agent|notebook", re.IGNORECASE)

# Larger single arguments approach the kernel's per-argument limit (128 KiB).
_SHELL_CHUNK = 60_000
_PY_EDIT = (
    "import sys,pathlib;p=pathlib.Path(sys.argv[1]);t=p.read_text();o,n=sys.argv[2],sys.argv[3];"
    "c=t.count(o);"
    "sys.exit('old text found %d times in %s, expected once'%(c,p)) if c!=1 else "
    "p.write_text(t.replace(o,n))"
)


@dataclass(frozen=True)
class Call:
    """A tool call to send: JSON ``arguments``, or raw ``text`` for a freeform tool."""

    name: str
    arguments: Mapping[str, Any] | None = None
    text: str | None = None


def resolve(path: str, cwd: str | None) -> str:
    """An absolute path when the working directory is known; the path as written otherwise."""
    if os.path.isabs(path) or not cwd:
        return path
    return os.path.normpath(os.path.join(cwd, path))


def plan_action(action: Action, tools: Sequence[ToolSpec], cwd: str | None) -> list[Call] | str:
    """The calls that perform ``action`` (any preparatory read first), or a note to say."""
    if action.write is not None:
        return _plan_write(action.write.path, action.write.content, tools, cwd)
    if action.edit is not None:
        return _plan_edit(action.edit.path, action.edit.old, action.edit.new, tools, cwd)
    if action.read is not None:
        call = _read_call(action.read, tools, cwd)
        return [call] if call else f"(rehearsal: this CLI offers no tool to read {action.read})"
    if action.run is not None:
        call = _shell_call(action.run, tools, f"Run {snip(action.run)}")
        return (
            [call] if call else f"(rehearsal: this CLI offers no shell tool to run: {action.run})"
        )
    raise ValueError("plan_action needs a tool action, not say")


def snip(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# ----------------------------------------------------------------------------- finders


def _key(spec: ToolSpec, keys: Sequence[str]) -> str | None:
    return next((k for k in keys if k in spec.properties), None)


def _find(
    tools: Sequence[ToolSpec],
    names: Sequence[str],
    needs: Sequence[Sequence[str]],
    hints: Sequence[str],
) -> ToolSpec | None:
    def fits(spec: ToolSpec) -> bool:
        return not spec.freeform and not _is_editor(spec) and all(_key(spec, k) for k in needs)

    by_name = {t.name: t for t in tools}
    by_folded = {t.name.casefold(): t for t in tools}
    for name in names:
        spec = by_name.get(name) or by_folded.get(name.casefold())
        if spec is not None and fits(spec):
            return spec
    for spec in tools:
        folded = spec.name.casefold()
        if any(h in folded for h in hints) and not _NOT_FILE_TOOLS.search(folded) and fits(spec):
            return spec
    return None


def _is_editor(spec: ToolSpec) -> bool:
    """An Anthropic-style multi-command editor: ``command`` picks view/create/str_replace."""
    if spec.name in EDITOR_NAMES:
        return True
    enum = spec.properties.get("command", {}).get("enum")
    return isinstance(enum, list) and "str_replace" in enum and _key(spec, PATH_KEYS) is not None


def _editor(tools: Sequence[ToolSpec], command: str) -> ToolSpec | None:
    for spec in tools:
        if _is_editor(spec):
            enum = spec.properties.get("command", {}).get("enum")
            if not isinstance(enum, list) or command in enum:
                return spec
    return None


def _fill(spec: ToolSpec, args: dict[str, Any], description: str) -> dict[str, Any]:
    """Complete the arguments: a description where offered, and every required key."""
    for key in ("description", "instruction"):
        if key in spec.properties and key not in args:
            args[key] = description
    for key in spec.required:
        if key in args:
            continue
        schema = spec.properties.get(key, {})
        enum = schema.get("enum")
        kind = schema.get("type")
        if isinstance(enum, list) and enum:
            args[key] = enum[0]
        elif kind == "boolean":
            args[key] = False
        elif kind in ("integer", "number"):
            args[key] = schema.get("minimum", 0)
        elif kind == "array":
            args[key] = []
        elif kind == "object":
            args[key] = {}
        else:
            args[key] = description
    return args


def _reads_first(spec: ToolSpec) -> bool:
    return bool(_READ_FIRST.search(spec.description))


def _create_only(spec: ToolSpec) -> bool:
    texts = [spec.description, *(str(p.get("description", "")) for p in spec.properties.values())]
    return any(_CREATE_ONLY.search(t) for t in texts)


# ----------------------------------------------------------------------------- calls


def _read_call(path: str, tools: Sequence[ToolSpec], cwd: str | None) -> Call | None:
    spec = _find(tools, READ_NAMES, [PATH_KEYS], ("read", "view"))
    if spec is not None:
        key = _key(spec, PATH_KEYS)
        assert key is not None
        args = _fill(spec, {key: resolve(path, cwd)}, f"Read {path}")
        return Call(spec.name, args)
    editor = _editor(tools, "view")
    if editor is not None:
        return Call(editor.name, {"command": "view", "path": resolve(path, cwd)})
    return _shell_call(f"cat {shlex.quote(path)}", tools, f"Read {path}")


def _shell_call(command: str, tools: Sequence[ToolSpec], description: str) -> Call | None:
    hints = ("shell", "bash", "exec", "command", "terminal", "run")
    spec = _find(tools, SHELL_NAMES, [COMMAND_KEYS], hints)
    if spec is None:
        return None
    key = _key(spec, COMMAND_KEYS)
    assert key is not None
    value: Any = command
    if spec.properties[key].get("type") == "array":
        value = ["bash", "-lc", command]
    return Call(spec.name, _fill(spec, {key: value}, snip(description, 100)))


def _write_command(path: str, content: str) -> str:
    parts: list[str] = []
    folder = os.path.dirname(path)
    if folder:
        parts.append(f"mkdir -p {shlex.quote(folder)}")
    chunks = [content[i : i + _SHELL_CHUNK] for i in range(0, len(content), _SHELL_CHUNK)] or [""]
    for i, chunk in enumerate(chunks):
        redirect = ">" if i == 0 else ">>"
        parts.append(f"printf '%s' {shlex.quote(chunk)} {redirect} {shlex.quote(path)}")
    return " && ".join(parts)


def _edit_command(path: str, old: str, new: str) -> str:
    quoted = " ".join(shlex.quote(a) for a in (_PY_EDIT, path, old, new))
    return f"python3 -c {quoted}"


def _patch_call(path: str, content: str, tools: Sequence[ToolSpec]) -> Call | None:
    # apply_patch adds files line by line; only content that ends in a newline round-trips.
    spec = next((t for t in tools if t.name == "apply_patch"), None)
    if spec is None or not content.endswith("\n"):
        return None
    body = "".join(f"+{line}\n" for line in content[:-1].split("\n"))
    patch = f"*** Begin Patch\n*** Add File: {path}\n{body}*** End Patch\n"
    if spec.freeform:
        return Call(spec.name, text=patch)
    key = _key(spec, ("input", "patch"))
    return Call(spec.name, {key: patch}) if key else None


def _current_text(path: str | None) -> str | None:
    if not path or not os.path.isabs(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def _plan_write(
    path: str, content: str, tools: Sequence[ToolSpec], cwd: str | None
) -> list[Call] | str:
    target = resolve(path, cwd)
    current = _current_text(target)
    exists = current is not None or (os.path.isabs(target) and os.path.exists(target))
    spec = _find(tools, WRITE_NAMES, [PATH_KEYS, CONTENT_KEYS], ("write", "create"))
    if spec is not None and exists and _create_only(spec):
        # copilot's create refuses an existing file: replace its whole text instead.
        if current == content:
            return f"({path} already has the scripted content.)"
        if current:
            edited = _plan_edit(path, current, content, tools, cwd, read_first=False)
            if not isinstance(edited, str):
                return edited
        spec = None
    if spec is not None:
        path_key, content_key = _key(spec, PATH_KEYS), _key(spec, CONTENT_KEYS)
        assert path_key is not None and content_key is not None
        call = Call(
            spec.name, _fill(spec, {path_key: target, content_key: content}, f"Write {path}")
        )
        if exists and _reads_first(spec):
            read = _read_call(path, tools, cwd)
            return [read, call] if read else [call]
        return [call]
    editor = _editor(tools, "create")
    if editor is not None and not exists:
        return [Call(editor.name, {"command": "create", "path": target, "file_text": content})]
    patch = _patch_call(path, content, tools) if not exists else None
    if patch is not None:
        return [patch]
    shell = _shell_call(_write_command(path, content), tools, f"Write {path}")
    if shell is not None:
        return [shell]
    return f"(rehearsal: this CLI offers no tool to write {path})"


def _plan_edit(
    path: str,
    old: str,
    new: str,
    tools: Sequence[ToolSpec],
    cwd: str | None,
    *,
    read_first: bool = True,
) -> list[Call] | str:
    target = resolve(path, cwd)
    spec = _find(tools, EDIT_NAMES, [PATH_KEYS, OLD_KEYS, NEW_KEYS], ("edit", "replace"))
    if spec is not None:
        path_key, old_key, new_key = (
            _key(spec, PATH_KEYS),
            _key(spec, OLD_KEYS),
            _key(spec, NEW_KEYS),
        )
        assert path_key is not None and old_key is not None and new_key is not None
        args = {path_key: target, old_key: old, new_key: new}
        call = Call(spec.name, _fill(spec, args, f"Edit {path}: replace the scripted text"))
        if read_first and _reads_first(spec):
            read = _read_call(path, tools, cwd)
            return [read, call] if read else [call]
        return [call]
    editor = _editor(tools, "str_replace")
    if editor is not None:
        args = {"command": "str_replace", "path": target, "old_str": old, "new_str": new}
        return [Call(editor.name, args)]
    shell = _shell_call(_edit_command(path, old, new), tools, f"Edit {path}")
    if shell is not None:
        return [shell]
    return f"(rehearsal: this CLI offers no tool to edit {path})"
