"""Scripted actions become calls of each CLI's own tools, found by name and by schema."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from orchestrator_nb.rehearsal import Action, EditFile, WriteFile
from orchestrator_nb.rehearsal.context import ToolSpec
from orchestrator_nb.rehearsal.tools import Call, plan_action, resolve


def _spec(name: str, props: dict[str, Any], required: list[str], description: str = "") -> ToolSpec:
    schema = {"type": "object", "properties": props, "required": required}
    return ToolSpec.from_schema(name, schema, description)


S = {"type": "string"}
CLAUDE = [
    _spec("Bash", {"command": S, "description": S, "timeout": {"type": "number"}}, ["command"]),
    _spec(
        "Edit",
        {"file_path": S, "old_string": S, "new_string": S},
        ["file_path", "old_string", "new_string"],
        "- You must Read the file in this conversation before editing, or the call will fail.",
    ),
    _spec("Read", {"file_path": S, "offset": {"type": "number"}}, ["file_path"]),
    _spec(
        "Write",
        {"file_path": S, "content": S},
        ["file_path", "content"],
        "Overwriting an existing file you haven't Read will fail.",
    ),
]
GEMINI = [
    _spec("read_file", {"file_path": S}, ["file_path"]),
    _spec(
        "replace",
        {"file_path": S, "instruction": S, "old_string": S, "new_string": S},
        ["file_path", "instruction", "old_string", "new_string"],
    ),
    _spec("write_file", {"file_path": S, "content": S}, ["file_path", "content"]),
]
COPILOT = [
    _spec(
        "bash",
        {"command": S, "description": S, "mode": {"type": "string", "enum": ["sync", "async"]}},
        ["command", "description", "mode"],
    ),
    _spec("view", {"path": S}, ["path"]),
    _spec(
        "create",
        {"path": {"type": "string", "description": "File MUST not exist before creating."}},
        ["path", "file_text"],
    ),
    _spec("edit", {"path": S, "old_str": S, "new_str": S}, ["path"]),
]
COPILOT[2] = _spec(
    "create",
    {
        "path": {"type": "string", "description": "File MUST not exist before creating."},
        "file_text": S,
    },
    ["path", "file_text"],
)
CODEX = [
    _spec("exec_command", {"cmd": S, "workdir": S}, ["cmd"]),
    _spec("view_image", {"path": S}, ["path"]),
]
CODEX_PATCH = [*CODEX, ToolSpec("apply_patch", freeform=True)]
SHELL_ARRAY = [_spec("shell", {"command": {"type": "array", "items": S}}, ["command"])]


def _one(calls: list[Call] | str) -> Call:
    assert not isinstance(calls, str), calls
    assert len(calls) == 1, calls
    return calls[0]


def test_resolve() -> None:
    assert resolve("a/b.txt", "/w") == "/w/a/b.txt"
    assert resolve("../x", "/w/sub") == "/w/x"
    assert resolve("/abs", "/w") == "/abs"
    assert resolve("rel", None) == "rel"


def test_claude_write_new_file_uses_write(tmp_path: Path) -> None:
    call = _one(
        plan_action(Action(write=WriteFile(path="h.txt", content="hi\n")), CLAUDE, str(tmp_path))
    )
    assert call == Call("Write", {"file_path": str(tmp_path / "h.txt"), "content": "hi\n"})


def test_claude_reads_before_overwriting_or_editing(tmp_path: Path) -> None:
    (tmp_path / "h.txt").write_text("old\n")
    calls = plan_action(
        Action(write=WriteFile(path="h.txt", content="new\n")), CLAUDE, str(tmp_path)
    )
    assert not isinstance(calls, str)
    assert [c.name for c in calls] == ["Read", "Write"]
    edit = plan_action(
        Action(edit=EditFile(path="h.txt", old="old", new="new")), CLAUDE, str(tmp_path)
    )
    assert not isinstance(edit, str)
    assert [c.name for c in edit] == ["Read", "Edit"]
    assert edit[1].arguments == {
        "file_path": str(tmp_path / "h.txt"),
        "old_string": "old",
        "new_string": "new",
    }


def test_claude_run_and_read(tmp_path: Path) -> None:
    run = _one(plan_action(Action(run="make test"), CLAUDE, str(tmp_path)))
    assert run.name == "Bash"
    assert run.arguments is not None and run.arguments["command"] == "make test"
    assert "make test" in run.arguments["description"]
    read = _one(plan_action(Action(read="a.py"), CLAUDE, str(tmp_path)))
    assert read == Call("Read", {"file_path": str(tmp_path / "a.py")})


def test_gemini_tools_and_required_instruction(tmp_path: Path) -> None:
    write = _one(plan_action(Action(write=WriteFile(path="x.py", content="1")), GEMINI, "/w"))
    assert write == Call("write_file", {"file_path": "/w/x.py", "content": "1"})
    edit = _one(plan_action(Action(edit=EditFile(path="x.py", old="1", new="2")), GEMINI, "/w"))
    assert edit.name == "replace"
    assert edit.arguments is not None and edit.arguments["instruction"]
    note = plan_action(Action(run="ls"), GEMINI, "/w")
    assert isinstance(note, str) and "no shell tool" in note


def test_copilot_create_refuses_existing_files_so_edit_the_whole_text(tmp_path: Path) -> None:
    new = _one(
        plan_action(Action(write=WriteFile(path="n.txt", content="a")), COPILOT, str(tmp_path))
    )
    assert new == Call("create", {"path": str(tmp_path / "n.txt"), "file_text": "a"})
    (tmp_path / "e.txt").write_text("before\n")
    over = _one(
        plan_action(
            Action(write=WriteFile(path="e.txt", content="after\n")), COPILOT, str(tmp_path)
        )
    )
    assert over.name == "edit"
    assert over.arguments == {
        "path": str(tmp_path / "e.txt"),
        "old_str": "before\n",
        "new_str": "after\n",
    }
    same = plan_action(
        Action(write=WriteFile(path="e.txt", content="before\n")), COPILOT, str(tmp_path)
    )
    assert isinstance(same, str) and "already has" in same
    run = _one(plan_action(Action(run="ls"), COPILOT, str(tmp_path)))
    assert run.arguments == {"command": "ls", "description": "Run ls", "mode": "sync"}


def test_codex_writes_through_its_shell_with_exact_quoting(tmp_path: Path) -> None:
    content = 'it\'s "quoted" $HOME `x` \\n\nline2\n'
    call = _one(
        plan_action(Action(write=WriteFile(path="sub/f.txt", content=content)), CODEX, "/w")
    )
    assert call.name == "exec_command"
    assert call.arguments is not None
    words = shlex.split(call.arguments["cmd"])
    assert words[:3] == ["mkdir", "-p", "sub"]
    assert words[4:] == ["printf", "%s", content, ">", "sub/f.txt"]


def test_codex_edit_command_replaces_exactly_once(tmp_path: Path) -> None:
    target = tmp_path / "c.py"
    target.write_text("a = 1\nb = 'x'\n")
    call = _one(
        plan_action(
            Action(edit=EditFile(path=str(target), old="b = 'x'", new='b = "y"')), CODEX, None
        )
    )
    assert call.arguments is not None
    words = shlex.split(call.arguments["cmd"])
    assert words[:2] == ["python3", "-c"]
    # Run the same program the shell would, without a shell.
    subprocess.run([sys.executable, *words[1:]], check=True)
    assert target.read_text() == 'a = 1\nb = "y"\n'
    failed = subprocess.run([sys.executable, *words[1:]], capture_output=True, text=True)
    assert failed.returncode != 0 and "found 0 times" in failed.stderr


def test_codex_apply_patch_for_new_files() -> None:
    call = _one(
        plan_action(Action(write=WriteFile(path="h.txt", content="a\nb\n")), CODEX_PATCH, "/w")
    )
    assert call.name == "apply_patch" and call.arguments is None
    assert call.text == "*** Begin Patch\n*** Add File: h.txt\n+a\n+b\n*** End Patch\n"
    # No trailing newline cannot round-trip through apply_patch: the shell is used instead.
    shell = _one(plan_action(Action(write=WriteFile(path="h.txt", content="a")), CODEX_PATCH, "/w"))
    assert shell.name == "exec_command"


def test_shell_tool_with_command_array() -> None:
    call = _one(plan_action(Action(run="echo hi"), SHELL_ARRAY, "/w"))
    assert call.arguments == {"command": ["bash", "-lc", "echo hi"]}
    read = _one(plan_action(Action(read="my file.txt"), SHELL_ARRAY, "/w"))
    assert read.arguments == {"command": ["bash", "-lc", "cat 'my file.txt'"]}


def test_str_replace_editor_style_tool() -> None:
    editor = [
        _spec(
            "str_replace_editor",
            {
                "command": {"type": "string", "enum": ["view", "create", "str_replace"]},
                "path": S,
                "file_text": S,
                "old_str": S,
                "new_str": S,
            },
            ["command", "path"],
        )
    ]
    write = _one(plan_action(Action(write=WriteFile(path="a", content="1")), editor, "/w"))
    assert write.arguments == {"command": "create", "path": "/w/a", "file_text": "1"}
    edit = _one(plan_action(Action(edit=EditFile(path="a", old="1", new="2")), editor, "/w"))
    assert edit.arguments == {
        "command": "str_replace",
        "path": "/w/a",
        "old_str": "1",
        "new_str": "2",
    }
    read = _one(plan_action(Action(read="a"), editor, "/w"))
    assert read.arguments == {"command": "view", "path": "/w/a"}


def test_renamed_tools_are_found_by_schema() -> None:
    tools = [
        _spec("FileWriter_v2", {"filename": S, "contents": S}, ["filename", "contents"]),
        _spec("run_in_terminal", {"command": S}, ["command"]),
    ]
    write = _one(plan_action(Action(write=WriteFile(path="a", content="1")), tools, "/w"))
    assert write == Call("FileWriter_v2", {"filename": "/w/a", "contents": "1"})
    run = _one(plan_action(Action(run="ls"), tools, "/w"))
    assert run.name == "run_in_terminal"


def test_no_tools_at_all_gives_notes() -> None:
    for action in (
        Action(write=WriteFile(path="a", content="1")),
        Action(edit=EditFile(path="a", old="1", new="2")),
        Action(read="a"),
        Action(run="ls"),
    ):
        note = plan_action(action, [], None)
        assert isinstance(note, str) and note.startswith("(rehearsal:")
