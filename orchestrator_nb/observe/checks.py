"""Input checks at the edges: names, the task text, configured commands, workspace paths.

The threat model (see the README's security section): prompts are *data* handed to an agent CLI
as one argv element or on stdin, never through a shell, so ``;``, ``|`` or ``$(...)`` in a task
are harmless text and are allowed. What is checked here is what could change *which program
runs* or *where files go*: commands must be argv lists naming an executable, names become file
and branch names, and paths must stay inside the workspace. Every refusal is a ConfigError (or
an UnsafePathError for paths) that names the rule and says what to do instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from ..errors import ConfigError

NameKind = Literal["agent", "workflow", "session", "step", "run"]

MAX_TASK_CHARS = 100_000
# Linux refuses one argv element over 128 KiB (MAX_ARG_STRLEN) with E2BIG; a task must leave
# room for the workflow's prompt around it, so the limit is in bytes, not characters.
MAX_TASK_BYTES = 100_000
MAX_ARG_BYTES = 128 * 1024 - 1

# Names end up in file names, git branch names, metric labels and YAML keys.
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_IDENT_RULE = "a letter, then letters, digits, '-' or '_' (64 characters at most)"
_NAME_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "agent": (_IDENT, _IDENT_RULE),
    "workflow": (_IDENT, _IDENT_RULE),
    "step": (_IDENT, _IDENT_RULE),
    "run": (re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"), "letters, digits, '-' or '_'"),
    # Sessions are often named after dates ("2024-05-01.review"), so digits and dots may lead.
    "session": (
        re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"),
        "a letter or digit, then letters, digits, '.', '-' or '_' (128 characters at most)",
    ),
}

SHELLS = frozenset(
    {"sh", "bash", "zsh", "dash", "ksh", "mksh", "fish", "csh", "tcsh", "ash", "busybox"}
    | {"cmd", "cmd.exe", "powershell", "powershell.exe", "pwsh", "pwsh.exe"}
)
_SHELL_EXEC_FLAGS = frozenset({"/c", "/C", "-Command", "-command", "-EncodedCommand"})
# -c, and -c clustered with other short options: `bash -lc`, `sh -ec`.
_SHELL_C_CLUSTER = re.compile(r"-[A-Za-z]*c[A-Za-z]*")
_SHELL_META = re.compile(r"[;|&`$<>]|\$\(|\|\||&&")


def check_name(kind: NameKind, value: object) -> str:
    """``value`` if it is a valid ``kind`` name; a ConfigError naming the rule otherwise."""
    pattern, rule = _NAME_RULES[kind]
    if not isinstance(value, str):
        raise ConfigError(f"{kind} name must be a string, not {type(value).__name__}", key=kind)
    if not pattern.fullmatch(value) or ".." in value:
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise ConfigError(
            f"invalid {kind} name {shown!r}",
            key=kind,
            hint=f"use {rule}",
        )
    return value


def check_task(
    text: object,
    *,
    limit: int = MAX_TASK_CHARS,
    limit_bytes: int = MAX_TASK_BYTES,
    what: str = "task",
) -> str:
    """The task if it is non-empty text within the limits, free of control characters.

    Newlines and tabs are fine; shell metacharacters are fine too (the task is never parsed by a
    shell). The byte limit keeps the prompt within what the OS passes as one argument; NUL,
    escape sequences and other control characters could rewrite a terminal or hide text from
    the person reviewing a prompt.
    """
    if not isinstance(text, str):
        raise ConfigError(f"the {what} must be a string, not {type(text).__name__}", key=what)
    if not text.strip():
        raise ConfigError(
            f"the {what} is empty", key=what, hint="describe what the agents should do"
        )
    size = len(text.encode("utf-8", "surrogatepass"))
    if len(text) > limit or size > limit_bytes:
        raise ConfigError(
            f"the {what} is {size:,} bytes (limit {limit_bytes:,})",
            key=what,
            hint="put long material in a file in the workspace and refer to it",
        )
    # C0 controls other than \t \n \r (ESC, NUL among them), DEL and the C1 block.
    bad = sorted(
        {
            f"U+{ord(c):04X}"
            for c in text
            if (ord(c) < 32 and c not in "\t\n\r") or 0x7F <= ord(c) <= 0x9F
        }
    )
    if bad:
        raise ConfigError(
            f"the {what} contains control characters ({', '.join(bad[:5])})",
            key=what,
            hint="remove them (terminal escape sequences included); newlines and tabs are fine",
        )
    return text


def _looks_like_shell(exe: str) -> bool:
    name = os.path.basename(exe)
    return name in SHELLS or name.lower() in SHELLS


def _runs_command_string(shell_args: list[str]) -> bool:
    # Only the shell's own options count: in `bash script.sh -c`, -c belongs to the script.
    for arg in shell_args:
        if arg in _SHELL_EXEC_FLAGS or _SHELL_C_CLUSTER.fullmatch(arg):
            return True
        if not arg.startswith("-"):
            return False
    return False


def check_command_argv(argv: object, *, key: str = "argv") -> list[str]:
    """``argv`` as a list if it names an executable with an argument list, not a shell string.

    Refused: a string instead of a list; an empty list or empty program; NUL bytes; a program
    holding shell syntax (``"python x.py | tee"``); a one-element list that is a whole command
    line; and a shell asked to run a command string (``["sh", "-c", ...]``), which would bring
    the quoting problems back.
    """
    hint = "give a list: the program, then one element per argument, e.g. ['python', 'tool.py']"
    if isinstance(argv, (str, bytes)):
        raise ConfigError("a command must be a list of arguments, not a string", key=key, hint=hint)
    if not isinstance(argv, Sequence) or not argv:
        raise ConfigError("a command must be a non-empty list of arguments", key=key, hint=hint)
    items: list[str] = []
    for i, item in enumerate(argv):
        if not isinstance(item, str):
            raise ConfigError(
                f"argument {i} is {type(item).__name__}, not a string", key=f"{key}[{i}]"
            )
        if "\0" in item:
            raise ConfigError(f"argument {i} contains a NUL byte", key=f"{key}[{i}]")
        items.append(item)
    exe = items[0]
    if not exe.strip():
        raise ConfigError("the program (first element) is empty", key=f"{key}[0]", hint=hint)
    if _SHELL_META.search(exe):
        raise ConfigError(
            f"the program {exe!r} contains shell syntax",
            key=f"{key}[0]",
            hint=hint + "; pipes and redirections need a small script instead",
        )
    if any(ch.isspace() for ch in exe) and not os.path.isfile(exe):
        raise ConfigError(
            f"the program {exe!r} looks like a whole command line", key=f"{key}[0]", hint=hint
        )
    for i, item in enumerate(items):
        if _looks_like_shell(item) and _runs_command_string(items[i + 1 :]):
            raise ConfigError(
                f"{os.path.basename(item)!r} with a command string runs through a shell",
                key=key,
                hint="call the program directly with its arguments as list elements",
            )
    return items


# Folders no workspace may be: an agent there could rewrite the system, and a snapshot of them
# would copy every file the user has (keys included) into the state folder.
_SYSTEM = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/System",
    "/Library",
)


def check_workspace(path: Path) -> Path:
    """``path`` (resolved) unless it is ``/``, the user's home, a folder holding the home, or a
    system folder; a WorkspaceError with a hint otherwise."""
    from ..errors import WorkspaceError

    real = Path(os.path.realpath(path))
    home = Path(os.path.realpath(os.path.expanduser("~")))
    why = None
    if real == Path(real.anchor):
        why = "the root folder"
    elif real == home:
        why = "your home folder"
    elif real in home.parents:
        why = "a folder that contains your home folder"
    elif any(real == Path(s) or Path(s) in real.parents for s in _SYSTEM) and not (
        real == home or home in real.parents
    ):
        why = "a system folder"
    if why is not None:
        raise WorkspaceError(
            f"refused workspace {str(real)!r}: it is {why}",
            hint="use a project folder, e.g. a subfolder of your home with the code to change",
        )
    return real


def existing_workspace(workspace: str | os.PathLike[str]) -> Path:
    """The one way an entry point turns a user's ``workspace`` into the folder it runs in:
    ``~`` and ``$VARS`` expanded, an existing folder, resolved and checked by
    :func:`check_workspace`; a WorkspaceError with a hint otherwise."""
    from ..errors import WorkspaceError

    path = Path(os.path.expandvars(os.fspath(workspace))).expanduser()
    if not path.is_dir():
        raise WorkspaceError(
            f"workspace {str(path)!r} is not an existing folder",
            hint="create it first, or pass the folder the agents should edit",
        )
    return check_workspace(path.resolve())


def check_path(path: str) -> str:
    """The workspace's path rules (relative, no '..', not under .git or .orchestrator)."""
    from ..workspace.paths import check_relpath

    return check_relpath(path)


__all__ = [
    "MAX_ARG_BYTES",
    "MAX_TASK_BYTES",
    "MAX_TASK_CHARS",
    "SHELLS",
    "NameKind",
    "check_command_argv",
    "check_name",
    "check_path",
    "check_task",
    "check_workspace",
    "existing_workspace",
]
