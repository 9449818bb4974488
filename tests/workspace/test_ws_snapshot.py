"""Snapshots and change detection on real git repositories and plain folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ws_helpers import git, write

from orchestrator_nb.events import FileChange
from orchestrator_nb.workspace import STATE_DIR_NAME, Workspace


def kinds(changeset: object) -> dict[str, str]:
    return {c.path: c.kind for c in changeset}  # type: ignore[attr-defined]


# -- the state folder ---------------------------------------------------------------------------


def test_state_folder_is_created_and_excluded_from_git(repo: Path) -> None:
    Workspace(repo, run_id="r1")
    state = repo / STATE_DIR_NAME
    for sub in ("sessions", "runs", "backups", "logs", "cache", "audit"):
        assert (state / sub).is_dir()
    exclude = (repo / ".git" / "info" / "exclude").read_text()
    assert ".orchestrator/" in exclude.splitlines()
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    # and git never offers it for a commit, even with -A
    git(repo, "add", "-A")
    assert git(repo, "diff", "--cached", "--name-only") == ""


def test_exclude_line_is_added_once(repo: Path) -> None:
    Workspace(repo, run_id="a")
    Workspace(repo, run_id="b")
    exclude = (repo / ".git" / "info" / "exclude").read_text().splitlines()
    assert exclude.count(".orchestrator/") == 1


# -- git workspaces -----------------------------------------------------------------------------


def test_git_added_modified_deleted_with_line_counts(repo: Path) -> None:
    ws = Workspace(repo, run_id="r")
    before = ws.snapshot()
    write(repo / "README.md", "# demo\n\nline two\nline three\n")
    write(repo / "src" / "new.py", "a = 1\nb = 2\n")
    (repo / "src" / "app.py").unlink()
    after = ws.snapshot()
    cs = ws.changes(before, after)
    assert kinds(cs) == {"README.md": "modified", "src/new.py": "added", "src/app.py": "deleted"}
    readme = cs["README.md"]
    assert (readme.added, readme.removed, readme.binary) == (1, 0, False)
    assert "+line three\n" in readme.diff
    assert readme.diff.startswith("diff --git a/README.md b/README.md\n")
    assert cs["src/new.py"].added == 2
    assert "new file mode 100644" in cs["src/new.py"].diff
    assert cs["src/app.py"].removed == 2
    assert "+++ /dev/null" in cs["src/app.py"].diff
    assert cs.added == 3 and cs.removed == 2
    assert cs.diff == "".join(c.diff for c in cs)
    assert FileChange("src/new.py", "added") in cs.file_changes()


def test_unchanged_workspace_has_no_changes(repo: Path) -> None:
    ws = Workspace(repo)
    write(repo / "dirty.txt", "untracked before the step\n")
    before = ws.snapshot()
    after = ws.snapshot()
    cs = ws.changes(before, after)
    assert not cs and cs.summary() == "no changes"


def test_git_rename_is_reported_as_rename(repo: Path) -> None:
    ws = Workspace(repo)
    before = ws.snapshot()
    git(repo, "mv", "src/app.py", "src/main.py")
    cs = ws.changes(before, ws.snapshot())
    assert len(cs) == 1
    change = cs["src/main.py"]
    assert (change.kind, change.old_path) == ("renamed", "src/app.py")
    assert "rename from src/app.py\nrename to src/main.py\n" in change.diff


def test_git_rename_with_edit_keeps_the_diff(repo: Path) -> None:
    ws = Workspace(repo)
    write(repo / "src" / "app.py", "".join(f"line {i}\n" for i in range(30)))
    git(repo, "commit", "-qam", "longer")
    before = ws.snapshot()
    git(repo, "mv", "src/app.py", "src/main.py")
    write(repo / "src" / "main.py", "".join(f"line {i}\n" for i in range(31)))
    git(repo, "add", "src/main.py")
    cs = ws.changes(before, ws.snapshot())
    change = cs["src/main.py"]
    assert change.kind == "renamed" and change.old_path == "src/app.py"
    assert (change.added, change.removed) == (1, 0)


def test_plain_mv_with_same_content_is_a_rename(repo: Path) -> None:
    ws = Workspace(repo)
    before = ws.snapshot()
    os.rename(repo / "README.md", repo / "INTRO.md")
    cs = ws.changes(before, ws.snapshot())
    assert kinds(cs) == {"INTRO.md": "renamed"}


def test_binary_change(repo: Path) -> None:
    ws = Workspace(repo)
    before = ws.snapshot()
    write(repo / "data.bin", bytes(range(255, -1, -1)))
    change = ws.changes(before, ws.snapshot())["data.bin"]
    assert change.binary and (change.added, change.removed) == (0, 0)
    assert "Binary files a/data.bin and b/data.bin differ" in change.diff


def test_gitignore_is_respected(repo: Path) -> None:
    write(repo / ".gitignore", "*.log\nbuild/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", "ignore")
    ws = Workspace(repo)
    before = ws.snapshot()
    write(repo / "debug.log", "noise\n")
    write(repo / "build" / "out.o", b"\0\1")
    write(repo / "kept.txt", "kept\n")
    assert kinds(ws.changes(before, ws.snapshot())) == {"kept.txt": "added"}


def test_commit_by_the_agent_is_still_a_change(repo: Path) -> None:
    ws = Workspace(repo)
    before = ws.snapshot()
    write(repo / "src" / "app.py", "def main():\n    return 2\n")
    write(repo / "notes.txt", "n\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "agent commit")
    after = ws.snapshot()
    assert after.head != before.head and not after.files
    cs = ws.changes(before, after)
    assert kinds(cs) == {"src/app.py": "modified", "notes.txt": "added"}
    assert "+    return 2\n" in cs["src/app.py"].diff


def test_staged_then_reverted_in_worktree_is_no_change(repo: Path) -> None:
    ws = Workspace(repo)
    before = ws.snapshot()
    write(repo / "README.md", "changed\n")
    git(repo, "add", "README.md")
    write(repo / "README.md", "# demo\n\nline two\n")
    assert not ws.changes(before, ws.snapshot())


def test_repository_without_commits(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    git(root, "init", "-q")
    write(root / "a.txt", "a\n")
    ws = Workspace(root)
    before = ws.snapshot()
    assert before.head is None
    write(root / "a.txt", "a\nb\n")
    write(root / "b.txt", "b\n")
    cs = ws.changes(before, ws.snapshot())
    assert kinds(cs) == {"a.txt": "modified", "b.txt": "added"}


def test_workspace_in_a_subfolder_reports_only_its_files(repo: Path) -> None:
    ws = Workspace(repo / "src")
    assert ws.repo is not None and ws.repo.prefix == "src/"
    before = ws.snapshot()
    write(repo / "src" / "app.py", "changed\n")
    write(repo / "outside.txt", "not ours\n")
    cs = ws.changes(before, ws.snapshot())
    assert kinds(cs) == {"app.py": "modified"}
    assert (repo / "src" / STATE_DIR_NAME).is_dir()


def test_symlink_and_mode_changes(repo: Path) -> None:
    ws = Workspace(repo)
    before = ws.snapshot()
    os.symlink("src/app.py", repo / "link.py")
    os.chmod(repo / "src" / "app.py", 0o755)
    cs = ws.changes(before, ws.snapshot())
    assert kinds(cs) == {"link.py": "added", "src/app.py": "modified"}
    assert "new file mode 120000" in cs["link.py"].diff
    assert "old mode 100644\nnew mode 100755\n" in cs["src/app.py"].diff


def test_odd_file_names_round_trip(repo: Path) -> None:
    ws = Workspace(repo)
    before = ws.snapshot()
    names = ["with space.txt", "new\nline.txt", "ünïcode.txt", "star*.txt", "tab\there.txt"]
    for name in names:
        write(repo / name, name + "\n")
    assert sorted(kinds(ws.changes(before, ws.snapshot()))) == sorted(names)


def test_content_survives_in_the_store_after_the_file_changes(repo: Path) -> None:
    ws = Workspace(repo)
    write(repo / "scratch.txt", "first\n")
    before = ws.snapshot()
    write(repo / "scratch.txt", "second\n")
    middle = ws.snapshot()
    write(repo / "scratch.txt", "third\n")
    diff = ws.changes(before, middle)["scratch.txt"].diff
    assert "-first\n+second\n" in diff


# -- plain folders ------------------------------------------------------------------------------


def test_tree_snapshot_detects_changes(folder: Path) -> None:
    ws = Workspace(folder)
    assert ws.kind == "tree"
    before = ws.snapshot()
    assert set(before.files) == {"README.md", "src/app.py"}
    write(folder / "README.md", "# plain\nmore\n")
    write(folder / "src" / "extra.py", "x = 1\n")
    (folder / "src" / "app.py").unlink()
    cs = ws.changes(before, ws.snapshot())
    assert kinds(cs) == {
        "README.md": "modified",
        "src/extra.py": "added",
        "src/app.py": "deleted",
    }
    assert "+more\n" in cs["README.md"].diff


def test_tree_snapshot_honours_gitignore_and_skips_state(folder: Path) -> None:
    write(folder / ".gitignore", "*.log\n/build/\n!keep.log\ncache\n")
    write(folder / "sub" / ".gitignore", "local.txt\n")
    write(folder / ".git" / "config", "not a real repo, but never looked into\n")
    ws = Workspace(folder)
    assert ws.kind == "tree"
    before = ws.snapshot()
    write(folder / "a.log", "x")
    write(folder / "keep.log", "x")
    write(folder / "build" / "o", "x")
    write(folder / "sub" / "build" / "o", "x")  # '/build/' is anchored to the top
    write(folder / "deep" / "cache" / "x", "x")
    write(folder / "sub" / "local.txt", "x")
    write(folder / "local.txt", "x")  # sub/.gitignore does not reach up
    write(folder / ".git" / "HEAD", "x")
    write(folder / STATE_DIR_NAME / "logs" / "x.log", "x")
    assert kinds(ws.changes(before, ws.snapshot())) == {
        "keep.log": "added",
        "sub/build/o": "added",
        "local.txt": "added",
    }


def test_tree_snapshot_detects_rewrite_with_same_size_and_mtime(folder: Path) -> None:
    path = folder / "README.md"
    ws = Workspace(folder)
    before = ws.snapshot()
    st = path.stat()
    path.write_text("# PLAIN\n")  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # as `cp -p` would leave it
    assert kinds(ws.changes(before, ws.snapshot())) == {"README.md": "modified"}


def test_tree_snapshot_in_a_later_process_uses_the_same_store(folder: Path) -> None:
    ws = Workspace(folder, run_id="r")
    before = ws.snapshot()
    code = (
        "from orchestrator_nb.workspace import Workspace\n"
        f"Workspace({str(folder)!r}, run_id='r').snapshot()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (folder / STATE_DIR_NAME / "cache" / "stat-tree.json").is_file()
    write(folder / "README.md", "# other\n")
    assert "-# plain\n+# other\n" in ws.changes(before, ws.snapshot())["README.md"].diff


# -- display ------------------------------------------------------------------------------------


def test_mimebundle_has_plain_diff_and_inline_styled_html(repo: Path) -> None:
    ws = Workspace(repo)
    before = ws.snapshot()
    write(repo / "README.md", "# demo\n\nline two <b>\n")
    write(repo / "big.txt", "".join(f"{i}\n" for i in range(500)))
    cs = ws.changes(before, ws.snapshot(), step_id="s1")
    bundle = cs._repr_mimebundle_()
    assert bundle["text/plain"].startswith("step s1: 2 files changed")
    assert "+line two <b>" in bundle["text/plain"]
    page = bundle["text/html"]
    assert "<style" not in page and "<script" not in page
    assert "&lt;b&gt;" in page and "#e6ffec" in page
    assert "<details open" in page  # the short diff is open
    assert page.count("<details") == 2 and page.count("<details open") == 1  # the long one folded
    one = cs["README.md"]._repr_mimebundle_()
    assert one["text/plain"] == cs["README.md"].diff


def test_merge_conflict_left_by_the_agent_is_seen(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "other")
    write(repo / "README.md", "# other\n")
    git(repo, "commit", "-qam", "other")
    git(repo, "checkout", "-q", "main")
    write(repo / "README.md", "# main\n")
    git(repo, "commit", "-qam", "main")
    ws = Workspace(repo)
    before = ws.snapshot()
    proc = subprocess.run(["git", "merge", "-q", "other"], cwd=repo, capture_output=True)
    assert proc.returncode != 0  # a conflict
    cs = ws.changes(before, ws.snapshot())
    assert kinds(cs) == {"README.md": "modified"}
    assert "+<<<<<<< HEAD\n" in cs["README.md"].diff
