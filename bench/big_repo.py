"""Benchmark: a step's git worktree in a 50,000-file repository, against `git worktree add`.

Not a test. Run ``.venv/bin/python bench/big_repo.py``; it prints Markdown rows and writes
``build/bench/big_repo.json``. The bench builds a committed repository of ``--files`` small
files (100 per folder) with one uncommitted change. Baseline: ``git worktree add -b BRANCH PATH
HEAD`` by a bare ``subprocess.run`` (a checkout of every file). Subject:
``WorktreeManager.create`` (a commit of the workspace as it is, uncommitted change included,
through a temporary index, then the same checkout). Removal is outside both timings. Target
(issue 22): ≤ 1.2×. Snapshot + diff against ``git status`` at the same size is the workspace
bench with ``--files 50000``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import Row, git, git_commit_all, paired, row, write_rows  # noqa: E402

from orchestrator_nb.workspace import Workspace  # noqa: E402

NAME = "big repository"
TARGET = 1.2


def build_repo(root: Path, files: int) -> None:
    for i in range(files):
        folder = root / f"pkg{i // 100:03d}"
        if i % 100 == 0:
            folder.mkdir(parents=True)
        (folder / f"mod{i % 100:02d}.py").write_text(f"VALUE = {i}\n")
    git_commit_all(root)
    (root / "pkg000" / "mod00.py").write_text("VALUE = -1\n")  # one uncommitted change
    git(root, "status", "--porcelain")  # the index's stat data is fresh for both sides


def measure(files: int, repeats: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="orch-bench-big-") as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        start = time.perf_counter()
        build_repo(root, files)
        print(f"built {files:,} files in {time.perf_counter() - start:.1f} s", flush=True)
        outside = Path(tmp) / "bare-worktrees"
        outside.mkdir()
        counter = [0]

        def bare() -> float:
            counter[0] += 1
            path, branch = outside / f"wt{counter[0]}", f"bench/wt{counter[0]}"
            begin = time.perf_counter()
            git(root, "worktree", "add", "--quiet", "-b", branch, str(path), "HEAD")
            elapsed = time.perf_counter() - begin
            git(root, "worktree", "remove", "--force", str(path))
            git(root, "branch", "-D", "--quiet", branch)
            return elapsed

        def ours() -> float:
            counter[0] += 1
            ws = Workspace(root, run_id=f"bench-{counter[0]}")
            manager = ws.worktrees
            begin = time.perf_counter()
            path = manager.create("step")
            elapsed = time.perf_counter() - begin
            assert (path / "pkg000" / "mod00.py").read_text() == "VALUE = -1\n"
            manager.cleanup()
            return elapsed

        base, subj = paired(bare, ours, repeats)
        shutil.rmtree(outside, ignore_errors=True)
    return [
        row(
            NAME,
            f"a step's worktree, {files:,} files, one uncommitted change",
            baseline_label="git worktree add",
            baseline=base,
            subject_label="WorktreeManager.create",
            subject=subj,
            target=f"≤ {TARGET:g}× git worktree add",
            max_ratio=TARGET,
            note="the subject also commits the workspace's current state (temporary index)",
        )
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = measure(args.files, args.repeats)
    write_rows("big_repo", rows, args.out, files=args.files)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
