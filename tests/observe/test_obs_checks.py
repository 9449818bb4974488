"""Input checks: names, the task, commands as argv lists, workspace paths."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from orchestrator_nb.errors import ConfigError, UnsafePathError
from orchestrator_nb.observe.checks import (
    MAX_TASK_CHARS,
    check_command_argv,
    check_name,
    check_path,
    check_task,
)


@pytest.mark.parametrize("kind", ["agent", "workflow", "step"])
@pytest.mark.parametrize("value", ["claude", "my-agent_2", "A", "x" * 64])
def test_good_names(kind: str, value: str) -> None:
    assert check_name(kind, value) == value  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["agent", "workflow", "step", "session"])
@pytest.mark.parametrize(
    "value", ["", "-x", "a b", "a/b", "../x", "a;rm", "é", "a\nb", "x" * 200, ".hidden"]
)
def test_bad_names(kind: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_name(kind, value)  # type: ignore[arg-type]
    assert kind in str(err.value) and err.value.hint


def test_session_names_may_start_with_digits_and_hold_dots() -> None:
    assert check_name("session", "2024-05-01.review") == "2024-05-01.review"
    with pytest.raises(ConfigError):
        check_name("session", "a..b")
    with pytest.raises(ConfigError):
        check_name("agent", 3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "task",
    [
        "add a calculator",
        "run `ls; rm -rf /` | tee $(whoami) && echo > out",  # data, not a command line
        "line one\nline two\ttabbed\r\n",
        "ünïcödé ✓ 中文",
    ],
)
def test_tasks_allowed(task: str) -> None:
    assert check_task(task) == task


@pytest.mark.parametrize("task", ["", "   \n", "a\x00b", "a\x1b[2Jb", "a\x7fb", "a\x85b"])
def test_tasks_refused(task: str) -> None:
    with pytest.raises(ConfigError):
        check_task(task)


def test_task_size_limit() -> None:
    assert check_task("x" * MAX_TASK_CHARS)
    with pytest.raises(ConfigError, match="limit"):
        check_task("x" * (MAX_TASK_CHARS + 1))
    with pytest.raises(ConfigError):
        check_task(b"bytes")


@pytest.mark.parametrize(
    "argv",
    [
        ["claude"],
        [sys.executable, "tool.py", "{prompt}"],
        ["node", "cli.js", "--flag", "a value with spaces; and | pipes"],
        ["/usr/bin/env", "python3", "x.py"],
        ["bash", "script.sh", "{prompt}"],  # a script file is fine; a command string is not
        ["bash", "-e", "script.sh", "-c", "x"],  # that -c is the script's
    ],
)
def test_commands_allowed(argv: list[str]) -> None:
    assert check_command_argv(argv) == argv


@pytest.mark.parametrize(
    "argv",
    [
        "python tool.py",
        b"python",
        [],
        [""],
        ["python tool.py --x"],
        ["python; rm -rf /"],
        ["tool|tee"],
        ["sh", "-c", "echo hi"],
        ["/bin/bash", "-c", "x"],
        ["/bin/bash", "-lc", "x"],
        ["busybox", "sh", "-ec", "x"],
        ["env", "FOO=1", "zsh", "-c", "x"],
        ["cmd.exe", "/c", "dir"],
        ["pwsh", "-Command", "ls"],
        ["python", 3],
        ["python", "a\x00b"],
        None,
    ],
)
def test_commands_refused(argv: object) -> None:
    with pytest.raises(ConfigError):
        check_command_argv(argv)


def test_existing_program_path_with_spaces_is_fine(tmp_path: Path) -> None:
    exe = tmp_path / "My Tools" / "agent"
    exe.parent.mkdir()
    exe.write_text("")
    assert check_command_argv([str(exe), "x"]) == [str(exe), "x"]


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", ".git/config", ".orchestrator/a", "a\\b"])
def test_path_rules(path: str) -> None:
    with pytest.raises(UnsafePathError):
        check_path(path)
    assert check_path("src//./app.py") == "src/app.py"
