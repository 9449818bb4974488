"""The safe writer: path rules (adversarial paths included), backups, atomic writes, registry."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ws_helpers import listing, write

from orchestrator_nb.errors import UnsafePathError, WorkspaceError
from orchestrator_nb.workspace import SafeWriter, Workspace, check_relpath


@pytest.fixture
def box(tmp_path: Path) -> tuple[Path, Path]:
    """(workspace, outside): a workspace beside a folder it must never write into."""
    outside = tmp_path / "outside"
    write(outside / "secret.txt", "do not touch\n")
    ws = tmp_path / "ws"
    write(ws / "src" / "app.py", "old\n")
    write(ws / ".git" / "hooks" / "README", "hooks\n")
    os.symlink(outside, ws / "out_dir")
    os.symlink(outside / "secret.txt", ws / "out_file")
    os.symlink("/etc", ws / "etc")
    os.symlink(".git", ws / "gitlink")
    os.symlink("src", ws / "lib")
    return ws, outside


def test_write_new_and_existing_file(box: tuple[Path, Path]) -> None:
    root, _ = box
    w = SafeWriter(root, step_id="s1", backup_dir=root.parent / "bk")
    rec = w.write("docs/guide.md", "hello\n")
    assert (root / "docs" / "guide.md").read_text() == "hello\n"
    assert rec.kind == "added" and rec.before is None and rec.backup is None
    rec2 = w.write("src/app.py", b"new\n")
    assert rec2.kind == "modified" and rec2.changed
    assert (root.parent / "bk" / "src" / "app.py").read_text() == "old\n"
    assert rec2.backup == str(root.parent / "bk" / "src" / "app.py")
    w.write("src/app.py", "newer\n")
    # the backup keeps the version from before the step
    assert (root.parent / "bk" / "src" / "app.py").read_text() == "old\n"
    assert [r.path for r in w.writes] == ["docs/guide.md", "src/app.py", "src/app.py"]
    cs = w.changeset()
    assert {c.path: c.kind for c in cs} == {"docs/guide.md": "added", "src/app.py": "modified"}
    assert "-old\n+newer\n" in cs["src/app.py"].diff
    # no temporary files left behind
    assert sorted(os.listdir(root / "src")) == ["app.py"]


def test_unchanged_write_is_registered_but_not_a_change(box: tuple[Path, Path]) -> None:
    root, _ = box
    w = SafeWriter(root)
    rec = w.write("src/app.py", "old\n")
    assert not rec.changed and len(w.writes) == 1 and not w.changeset()


def test_write_keeps_mode_and_sets_executable(box: tuple[Path, Path]) -> None:
    root, _ = box
    os.chmod(root / "src" / "app.py", 0o750)
    w = SafeWriter(root)
    w.write("src/app.py", "x\n")
    assert stat.S_IMODE((root / "src" / "app.py").stat().st_mode) == 0o750
    w.write("run.sh", "#!/bin/sh\n", executable=True)
    assert os.access(root / "run.sh", os.X_OK)


def test_symlinked_folder_inside_the_workspace_is_followed(box: tuple[Path, Path]) -> None:
    root, _ = box
    rec = SafeWriter(root).write("lib/util.py", "u\n")
    assert rec.path == "src/util.py" and rec.requested == "lib/util.py"
    assert (root / "src" / "util.py").read_text() == "u\n"


ADVERSARIAL = {
    "../escape.txt": "'..'",
    "src/../../escape.txt": "'..'",
    "/etc/passwd": "absolute",
    "/tmp/x": "absolute",
    "C:/Windows/x": "absolute",
    "~/.bashrc": "'~'",
    ".git/hooks/pre-commit": ".git/",
    "sub/.git/config": ".git/",
    ".GIT/config": ".git/",
    ".git./config": ".git/",
    ".orchestrator/runs/x": ".orchestrator/",
    "..\u2215..\u2215etc": "DIVISION SLASH",
    "a\u2044b": "FRACTION SLASH",
    "a\uff0fb": "FULLWIDTH SOLIDUS",
    "a\u29f8b": "BIG SOLIDUS",
    "a\uff3cb": "FULLWIDTH REVERSE SOLIDUS",
    "\u2025/x": "look-alike of '.' or '..'",
    "a\0b": "NUL",
    "a\nb": "line break",
    "a\rb": "line break",
    "a\u2028b": "line break",
    "a\x1bb": "control character",
    "a\u202eb.txt": "invisible formatting",
    "a\u200bb": "invisible formatting",
    "a\\b": "backslash",
    "": "empty",
    ".": "workspace folder itself",
    "src/": "folder",
    "x" * 256: "longer than 255",
    "a/" * 2100 + "b": "longer than 4096",
    "out_dir/new.txt": "outside the workspace",
    "out_file": "outside the workspace",
    "etc/passwd": "outside the workspace",
    "gitlink/hooks/pre-commit": ".git/",
    "src": "existing folder",
}


@pytest.mark.parametrize("path", list(ADVERSARIAL), ids=lambda p: repr(p)[:40])
def test_adversarial_paths_are_refused(box: tuple[Path, Path], path: str) -> None:
    root, outside = box
    before = listing(root.parent)
    w = SafeWriter(root, backup_dir=root.parent / "bk")
    with pytest.raises(UnsafePathError) as info:
        w.write(path, "pwned\n")
    err = info.value
    assert err.path == path
    assert ADVERSARIAL[path] in err.rule
    assert err.hint
    assert repr(path) in str(err) and err.rule in str(err)
    assert listing(root.parent) == before
    assert (outside / "secret.txt").read_text() == "do not touch\n"
    assert w.writes == []


def test_special_files_are_refused(box: tuple[Path, Path]) -> None:
    root, _ = box
    os.mkfifo(root / "pipe")
    with pytest.raises(UnsafePathError, match="FIFO"):
        SafeWriter(root).write("pipe", "x")
    assert stat.S_ISFIFO(os.lstat(root / "pipe").st_mode)
    with pytest.raises(UnsafePathError, match="character device"):
        SafeWriter(Path("/dev")).write("null", "x")


def test_file_in_the_way_of_a_folder_is_refused(box: tuple[Path, Path]) -> None:
    root, _ = box
    with pytest.raises(UnsafePathError, match="not a folder"):
        SafeWriter(root).write("src/app.py/inner.txt", "x")


def test_check_relpath_normalizes_harmless_forms() -> None:
    assert check_relpath("./src//app.py") == "src/app.py"
    assert check_relpath("docs/./a b.md") == "docs/a b.md"
    assert check_relpath("ünïcode/файл.txt") == "ünïcode/файл.txt"
    assert check_relpath("x" * 255) == "x" * 255


def test_longest_allowed_name_is_written(box: tuple[Path, Path]) -> None:
    root, _ = box
    SafeWriter(root).write("n" * 255, "ok")
    assert (root / ("n" * 255)).read_text() == "ok"


def test_delete_backs_up_and_prunes_empty_folders(box: tuple[Path, Path]) -> None:
    root, _ = box
    w = SafeWriter(root, backup_dir=root.parent / "bk")
    w.write("a/b/c.txt", "c\n")
    rec = w.delete("a/b/c.txt")
    assert rec is not None and rec.kind == "deleted"
    assert not (root / "a").exists()
    assert w.delete("a/b/c.txt") is None
    w.delete("src/app.py")
    assert (root.parent / "bk" / "src" / "app.py").read_text() == "old\n"
    # deleting a symlink removes the link, never its target
    w.delete("out_file")
    assert not (root / "out_file").is_symlink()
    assert (root.parent / "outside" / "secret.txt").read_text() == "do not touch\n"


def test_workspace_writer_backs_up_under_run_and_step(tmp_path: Path) -> None:
    write(tmp_path / "w" / "f.txt", "v1\n")
    ws = Workspace(tmp_path / "w", run_id="run1")
    ws.writer("step one").write("f.txt", "v2\n")
    backups = list((tmp_path / "w" / ".orchestrator" / "backups" / "run1").rglob("f.txt"))
    assert len(backups) == 1 and backups[0].read_text() == "v1\n"


def test_writer_refuses_a_missing_workspace(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError):
        SafeWriter(tmp_path / "nope")


_PIECES = st.sampled_from(
    [
        "a",
        "b.txt",
        "..",
        ".",
        "",
        "/",
        "\\",
        "~",
        ":",
        "C:",
        ".git",
        ".orchestrator",
        "out_dir",
        "out_file",
        "etc",
        "gitlink",
        "lib",
        "\u2215",
        "\u2044",
        "\uff0f",
        "\u29f8",
        "\u2025",
        "\0",
        "\n",
        "é",
        " ",
        "\u202e",
        "x" * 200,
    ]
)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    path=st.one_of(
        st.lists(_PIECES, min_size=1, max_size=6).map("".join),
        st.lists(_PIECES, min_size=1, max_size=6).map("/".join),
        st.text(min_size=1, max_size=40),
    )
)
def test_no_generated_path_escapes_the_workspace(box: tuple[Path, Path], path: str) -> None:
    root, outside = box
    parent_before = {k: v for k, v in listing(root.parent).items() if not k.startswith("ws")}
    git_before = listing(root / ".git")
    try:
        rec = SafeWriter(root).write(path, "generated\n")
    except UnsafePathError:
        pass
    else:
        target = Path(os.path.realpath(root / rec.path))
        assert target.is_relative_to(root) and target.read_text() == "generated\n"
        assert rec.path.split("/")[0] not in (".git", ".orchestrator")
    parent_after = {k: v for k, v in listing(root.parent).items() if not k.startswith("ws")}
    assert parent_after == parent_before
    assert listing(outside) == {"secret.txt": b"do not touch\n"}
    assert listing(root / ".git") == git_before


def test_symlink_planted_in_the_backup_folder_is_not_followed(box: tuple[Path, Path]) -> None:
    root, outside = box
    backups = root.parent / "bk"
    backups.mkdir()
    os.symlink(outside, backups / "src")
    with pytest.raises(WorkspaceError, match="cannot back up"):
        SafeWriter(root, backup_dir=backups).write("src/app.py", "new\n")
    assert (root / "src" / "app.py").read_text() == "old\n"
    assert listing(outside) == {"secret.txt": b"do not touch\n"}


def test_public_names() -> None:
    import orchestrator_nb.workspace as pkg

    assert len(set(pkg.__all__)) == len(pkg.__all__)
    for name in pkg.__all__:
        assert hasattr(pkg, name), name
