"""Benchmark: snapshot + diff of a 10,000-file workspace with one changed file vs. `git status`.

Not a test. Run ``.venv/bin/python bench/workspace_snapshot.py``; it prints a Markdown row and
writes ``build/bench/workspace.json``. The target is a ratio of about 2 or less in a git
workspace. Both sides see a freshly modified file on every repeat, so both must hash it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import git_commit_all  # noqa: E402

from orchestrator_nb.workspace import Workspace  # noqa: E402


def build_tree(root: Path, files: int) -> Path:
    per_dir = 100
    for i in range(files):
        folder = root / f"pkg{i // per_dir:03d}"
        if i % per_dir == 0:
            folder.mkdir(parents=True)
        body = "".join(f"line {j} of file {i}\n" for j in range(12))
        (folder / f"mod{i % per_dir:03d}.py").write_text(body)
    git_commit_all(root)
    return root / "pkg050" / "mod050.py"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "workspace.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        root = Path(tmp)
        target = build_tree(root, args.files)
        original = target.read_text()

        def git_status() -> None:
            subprocess.run(
                ["git", "status", "--porcelain"], cwd=root, check=True, capture_output=True
            )

        for _ in range(3):
            git_status()
        ws = Workspace(root, run_id="bench")
        before = ws.snapshot()
        counter = 0

        def touch() -> None:
            nonlocal counter
            counter += 1
            target.write_text(original + f"changed {counter}\n")

        def snapshot_and_diff() -> None:
            changes = ws.changes(before, ws.snapshot())
            assert len(changes) == 1 and changes.added == 1, changes

        git_times, ours, snap_only = [], [], []
        for _ in range(args.repeats):
            touch()
            git_times.append(timed(git_status))
            touch()
            ours.append(timed(snapshot_and_diff))
            touch()
            snap_only.append(timed(ws.snapshot))

        # A folder without git: the tree walk with its stat cache (informational).
        target.write_text(original)
        tree_ws = Workspace(root, run_id="bench-tree", use_git=False)
        cold = timed(tree_ws.snapshot)
        time.sleep(2.1)  # let the racy window pass, as it would between real steps
        tree_before = tree_ws.snapshot()
        tree_times = []
        for _ in range(args.repeats):
            touch()
            tree_times.append(timed(lambda: tree_ws.changes(tree_before, tree_ws.snapshot())))

    git_med = statistics.median(git_times)
    ours_med = statistics.median(ours)
    result = {
        "files": args.files,
        "repeats": args.repeats,
        "git_status_median_s": round(git_med, 5),
        "snapshot_diff_median_s": round(ours_med, 5),
        "snapshot_only_median_s": round(statistics.median(snap_only), 5),
        "ratio": round(ours_med / git_med, 3),
        "tree_mode_cold_snapshot_s": round(cold, 4),
        "tree_mode_snapshot_diff_median_s": round(statistics.median(tree_times), 5),
        "tree_mode_ratio": round(statistics.median(tree_times) / git_med, 3),
        # The samples, for the suite's spread (bench/run_all.py).
        "git_status_samples_s": [round(t, 5) for t in git_times],
        "snapshot_diff_samples_s": [round(t, 5) for t in ours],
        "tree_mode_samples_s": [round(t, 5) for t in tree_times],
        "git": subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| files | git status | snapshot+diff | ratio | tree walk (no git) | ratio |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {args.files} | {git_med * 1000:.1f} ms | {ours_med * 1000:.1f} ms | "
        f"{result['ratio']:.2f}x | {result['tree_mode_snapshot_diff_median_s'] * 1000:.1f} ms | "
        f"{result['tree_mode_ratio']:.2f}x |"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
