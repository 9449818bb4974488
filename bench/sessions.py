"""Benchmark: export and import of a 1,000-turn session, and the autosave each step pays.

Not a test. Run ``.venv/bin/python bench/sessions.py``; it prints Markdown rows and writes
``build/bench/sessions.json``. The session is built through its own API (``begin_turn``,
``record_step``, ``finish_turn``): each turn one step with a 1.5 KB answer, a 2 KB diff, two
changed files and usage. Baselines, in the same run: ``json.dumps`` + write of the same data for
the exports, ``json.loads`` of the same file for the import. The ``.ipynb`` export is measured
against the JSON export of the same session (target ≤ 3×), once warm and once as the first
export of a fresh process (two turns: what a user waits for, imports included). The last row is
the autosave that ``record_step`` does (one appended, fsync'd record) on a 1,000-turn session
against the same step on a 1-turn one (target: the same cost, ≤ 1.25×).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import Row, paired, row, write_rows  # noqa: E402

from orchestrator_nb.events import FileChange, StepResult, Usage  # noqa: E402
from orchestrator_nb.sessions import Session, SessionStore  # noqa: E402

NAME = "sessions"
TURNS = 1000
ANSWER = ("I changed the parser so that tool results are matched by id. " * 25)[:1500]
DIFF = "".join(f"-old line {i}\n+new line {i}\n" for i in range(80))[:2000]


def step_result(i: int) -> StepResult:
    return StepResult(
        agent="codex",
        ok=True,
        text=f"turn {i}: {ANSWER}",
        session_id=f"thread-{i:06d}",
        model="gpt-5",
        usage=Usage(1200 + i, 340, 800, 0.0123),
        changes=[FileChange("src/parser.py", "modified"), FileChange(f"tests/t{i}.py", "added")],
        diff=DIFF,
        step_id="implement",
    )


def build(turns: int, workspace: Path | None = None) -> Session:
    """``turns`` finished turns; with ``workspace``, run there (so its autosave holds them)."""
    session = Session.create("bench")
    if workspace is not None:
        workspace.mkdir(parents=True, exist_ok=True)
    for i in range(turns):
        turn = session.begin_turn(
            f"task number {i}: make the parser faster", workflow="quick", workspace=workspace
        )
        session.record_step(turn, step_result(i))
        session.finish_turn(turn, "completed", run_id=f"run-{i}")
    return session


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def measure(repeats: int, turns: int) -> tuple[list[Row], dict[str, object]]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="orch-bench-sessions-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        session = build(turns)
        build_s = time.perf_counter() - start
        plain = session.to_json_dict()
        exported = root / "session.json"

        def bare_export() -> float:
            return timed(lambda: (root / "plain.json").write_text(json.dumps(plain, indent=1)))

        def export() -> float:
            return timed(lambda: session.save(exported))

        base, subj = paired(bare_export, export, repeats)
        size_mb = exported.stat().st_size / 1e6
        rows.append(
            row(
                NAME,
                f"export {turns:,} turns to JSON ({size_mb:.1f} MB)",
                baseline_label="json.dumps + write",
                baseline=base,
                subject_label="Session.save",
                subject=subj,
                note="model_dump, atomic write, fsync",
            )
        )

        def bare_import() -> float:
            return timed(lambda: json.loads(exported.read_text(encoding="utf-8")))

        def import_() -> float:
            return timed(lambda: SessionStore().import_file(exported))

        base, subj = paired(bare_import, import_, repeats)
        loaded = SessionStore().import_file(exported)
        assert len(loaded.turns) == turns
        rows.append(
            row(
                NAME,
                f"import {turns:,} turns from JSON",
                baseline_label="json.loads",
                baseline=base,
                subject_label="SessionStore.import_file",
                subject=subj,
                note="validated by the pydantic models",
            )
        )
        notebook_row = _notebook_row(session, root, export, repeats)
        if notebook_row is not None:
            rows.append(notebook_row)
        rows.append(_first_export_row(repeats))

        small = build(1, root / "small")
        large = build(turns, root / "large")  # autosaving as it grows: its file holds them all

        def autosave(s: Session) -> float:
            turn = s.turns[-1]
            return timed(lambda: s.record_step(turn, step_result(0)))

        base, subj = paired(lambda: autosave(small), lambda: autosave(large), repeats)
        rows.append(
            row(
                NAME,
                f"record_step with autosave: 1-turn vs {turns:,}-turn session",
                baseline_label="1 turn",
                baseline=base,
                subject_label=f"{turns:,} turns",
                subject=subj,
                max_ratio=1.25,
                note="one record appended (fsync'd) to the session's log",
            )
        )
    return rows, {"turns": turns, "build_s": build_s, "json_mb": size_mb}


def _notebook_row(session: Session, root: Path, json_export: object, repeats: int) -> Row | None:
    try:
        from orchestrator_nb.notebook.export import export_session
    except ImportError:  # the notebook layer without its export: leave the row out
        return None

    def to_ipynb() -> float:
        return timed(lambda: export_session(session, root / "session.ipynb"))

    base, subj = paired(json_export, to_ipynb, max(3, repeats // 2))  # type: ignore[arg-type]
    return row(
        NAME,
        f"export {len(session.turns):,} turns to .ipynb vs to JSON",
        baseline_label="Session.save (JSON)",
        baseline=base,
        subject_label="export_session(.ipynb)",
        subject=subj,
        max_ratio=3,
        note="plain nbformat-4.5 JSON, no nbformat import or per-cell validation",
    )


_FIRST_EXPORT = """
import sys, tempfile, time
from pathlib import Path
sys.path.insert(0, {bench!r})
from sessions import build
from orchestrator_nb.notebook.export import export_session
session = build(2)
target = Path(tempfile.mkdtemp()) / "session.{suffix}"
start = time.perf_counter()
export_session(session, target)
print(time.perf_counter() - start)
"""


def _first_export_row(repeats: int) -> Row:
    """The first export of a fresh process, as a user's first `session export` pays it."""

    def first(suffix: str) -> float:
        code = _FIRST_EXPORT.format(bench=str(Path(__file__).parent), suffix=suffix)
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
        )
        return float(done.stdout.strip().splitlines()[-1])

    base, subj = paired(lambda: first("json"), lambda: first("ipynb"), max(3, repeats // 2), 0)
    return row(
        NAME,
        "first export of 2 turns in a fresh process: .ipynb vs JSON",
        baseline_label="JSON",
        baseline=base,
        subject_label=".ipynb",
        subject=subj,
        max_ratio=3,
        note="imports included (nbformat's import alone took ~1 s)",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--turns", type=int, default=TURNS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows, extra = measure(args.repeats, args.turns)
    write_rows("sessions", rows, args.out, **extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
