"""Undoing a step or a run: from the object store, the backups and git; conflicts and force."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ws_helpers import git, listing, write

from orchestrator_nb.errors import RevertConflict, WorkspaceError
from orchestrator_nb.workspace import STATE_DIR_NAME, Workspace


def user_files(root: Path) -> dict[str, bytes | str]:
    return {
        k: v
        for k, v in listing(root).items()
        if not k.startswith((STATE_DIR_NAME, ".git" + os.sep)) and k != ".git"
    }


def agent_step(root: Path) -> None:
    write(root / "README.md", "# rewritten\n")
    write(root / "src" / "new" / "mod.py", "x = 1\n")
    (root / "src" / "app.py").unlink()
    write(root / "data.bin", b"\0" * 10)


@pytest.mark.parametrize("kind", ["git", "tree"])
def test_revert_step_restores_everything(repo: Path, kind: str) -> None:
    ws = Workspace(repo, run_id="r", use_git=kind == "git")
    original = user_files(repo)
    with ws.step("impl") as step:
        agent_step(repo)
    assert len(step.changes) == 4
    result = ws.revert_step("impl")
    assert user_files(repo) == original
    assert sorted(result.restored) == ["README.md", "data.bin", "src/app.py"]
    assert result.deleted == ["src/new/mod.py"]
    assert not (repo / "src" / "new").exists()  # the folder the step made is gone too
    if kind == "git":
        assert git(repo, "status", "--porcelain") == ""


def test_revert_refuses_files_changed_since(repo: Path) -> None:
    ws = Workspace(repo, run_id="r")
    with ws.step("impl"):
        agent_step(repo)
    write(repo / "README.md", "# the user edited it afterwards\n")
    after_user = user_files(repo)
    with pytest.raises(RevertConflict) as info:
        ws.revert_step("impl")
    assert info.value.paths == ["README.md"]
    assert "README.md" in str(info.value) and "force=True" in str(info.value)
    assert user_files(repo) == after_user  # nothing was touched


def test_forced_revert_overwrites_and_backs_up(repo: Path) -> None:
    ws = Workspace(repo, run_id="r")
    with ws.step("impl"):
        agent_step(repo)
    write(repo / "README.md", "# the user edited it afterwards\n")
    result = ws.revert_step("impl", force=True)
    assert result.forced == ["README.md"]
    assert (repo / "README.md").read_text() == "# demo\n\nline two\n"
    saved = list((repo / STATE_DIR_NAME / "backups" / "r").rglob("README.md"))
    assert any(p.read_text() == "# the user edited it afterwards\n" for p in saved)


def test_revert_one_step_keeps_the_other(repo: Path) -> None:
    ws = Workspace(repo, run_id="r")
    with ws.step("one"):
        write(repo / "one.txt", "1\n")
    with ws.step("two"):
        write(repo / "two.txt", "2\n")
    ws.revert_step("one")
    assert not (repo / "one.txt").exists() and (repo / "two.txt").read_text() == "2\n"
    assert ws.steps() == ["one", "two"]


def test_revert_of_an_earlier_step_conflicts_with_a_later_one(repo: Path) -> None:
    ws = Workspace(repo, run_id="r")
    with ws.step("one"):
        write(repo / "README.md", "one\n")
    with ws.step("two"):
        write(repo / "README.md", "two\n")
    with pytest.raises(RevertConflict):
        ws.revert_step("one")
    ws.revert_step("two")
    ws.revert_step("one")
    assert (repo / "README.md").read_text() == "# demo\n\nline two\n"


def test_revert_run_returns_to_the_start(repo: Path) -> None:
    write(repo / "untracked.txt", "was here before the run\n")
    ws = Workspace(repo, run_id="r")
    original = user_files(repo)
    with ws.step("one"):
        agent_step(repo)
    with ws.step("two"):
        write(repo / "README.md", "# rewritten twice\n")
        (repo / "untracked.txt").unlink()
        git(repo, "mv", "data.bin", "moved.bin")
    ws.writer("three").write("generated.txt", "g\n")
    run = ws.run_changes()
    assert {"README.md", "generated.txt", "untracked.txt"} <= set(run.paths)
    ws.revert_run()
    assert user_files(repo) == original
    assert not ws.run_changes()


def test_revert_twice_is_harmless(repo: Path) -> None:
    ws = Workspace(repo, run_id="r")
    with ws.step("impl"):
        agent_step(repo)
    ws.revert_step("impl")
    second = ws.revert_step("impl")
    assert not second.restored and not second.deleted and len(second.already) == 4


def test_revert_from_a_later_process(repo: Path) -> None:
    code = (
        "import pathlib\n"
        "from orchestrator_nb.workspace import Workspace\n"
        f"root = pathlib.Path({str(repo)!r})\n"
        "ws = Workspace(root, run_id='persisted')\n"
        "with ws.step('impl'):\n"
        "    (root / 'README.md').write_text('changed elsewhere\\n')\n"
        "    (root / 'scratch.txt').write_text('s\\n')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    ws = Workspace(repo, run_id="persisted")
    assert ws.steps() == ["impl"]
    assert "+changed elsewhere\n" in ws.step_changes("impl")["README.md"].diff
    ws.revert_step("impl")
    assert (repo / "README.md").read_text() == "# demo\n\nline two\n"
    assert not (repo / "scratch.txt").exists()


def test_writer_only_step_reverts_from_its_backups(folder: Path) -> None:
    ws = Workspace(folder, run_id="r")
    w = ws.writer("gen")
    w.write("README.md", "# generated\n")
    w.write("README.md", "# generated again\n")
    w.write("src/extra.py", "e\n")
    # take the object store away: the backup copy must be enough
    for obj in (folder / STATE_DIR_NAME / "objects").rglob("*"):
        if obj.is_file():
            obj.unlink()
    ws.revert_step("gen")
    assert (folder / "README.md").read_text() == "# plain\n"
    assert not (folder / "src" / "extra.py").exists()


def test_git_workspace_restores_head_versions_from_git(repo: Path) -> None:
    ws = Workspace(repo, run_id="r")
    with ws.step("impl"):
        write(repo / "src" / "app.py", "replaced\n")
    for obj in (repo / STATE_DIR_NAME / "objects").rglob("*"):
        if obj.is_file():
            obj.unlink()  # HEAD's version still comes from git's own objects
    ws.revert_step("impl")
    assert (repo / "src" / "app.py").read_text() == "def main():\n    return 1\n"


def test_lost_old_version_is_a_clear_error(folder: Path) -> None:
    ws = Workspace(folder, run_id="r")
    with ws.step("impl"):
        write(folder / "README.md", "changed\n")
    for obj in (folder / STATE_DIR_NAME / "objects").rglob("*"):
        if obj.is_file():
            obj.unlink()
    with pytest.raises(WorkspaceError, match="no longer available"):
        ws.revert_step("impl")
    assert (folder / "README.md").read_text() == "changed\n"


def test_symlinks_and_modes_are_restored(repo: Path) -> None:
    os.symlink("src/app.py", repo / "link")
    os.chmod(repo / "src" / "app.py", 0o755)
    ws = Workspace(repo, run_id="r")
    with ws.step("impl"):
        (repo / "link").unlink()
        write(repo / "link", "now a file\n")
        os.chmod(repo / "src" / "app.py", 0o644)
    ws.revert_step("impl")
    assert os.readlink(repo / "link") == "src/app.py"
    assert os.access(repo / "src" / "app.py", os.X_OK)


def test_file_replaced_by_folder_is_reverted(folder: Path) -> None:
    ws = Workspace(folder, run_id="r")
    with ws.step("impl"):
        (folder / "README.md").unlink()
        write(folder / "README.md" / "inner.txt", "i\n")
    ws.revert_step("impl")
    assert (folder / "README.md").read_text() == "# plain\n"


def test_unknown_step_is_an_error(repo: Path) -> None:
    ws = Workspace(repo, run_id="r")
    with pytest.raises(WorkspaceError, match="no recorded changes"):
        ws.revert_step("never")


def test_revert_result_renders(repo: Path) -> None:
    ws = Workspace(repo, run_id="r")
    with ws.step("impl"):
        write(repo / "x.txt", "x\n")
    result = ws.revert_step("impl")
    bundle = result._repr_mimebundle_()
    assert "deleted  x.txt" in bundle["text/plain"]
    assert "<script" not in bundle["text/html"] and "x.txt" in bundle["text/html"]


def test_files_over_the_store_limit_are_tracked_but_not_kept(repo: Path) -> None:
    write(repo / "big.txt", "a" * 5000 + "\n")
    ws = Workspace(repo, run_id="r", max_blob_bytes=1000)
    with ws.step("impl") as step:
        write(repo / "big.txt", "b" * 5000 + "\n")
        write(repo / "src" / "app.py", "x" * 2000 + "\n")  # tracked: HEAD keeps the old one
    assert {c.path for c in step.changes} == {"big.txt", "src/app.py"}
    assert "content not available" in step.changes["big.txt"].diff
    with pytest.raises(WorkspaceError, match=r"big\.txt"):
        ws.revert_step("impl")
    (repo / "big.txt").write_text("a" * 5000 + "\n")  # the user restores it by hand
    ws.revert_step("impl")
    assert (repo / "src" / "app.py").read_text() == "def main():\n    return 1\n"
