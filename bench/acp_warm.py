"""Benchmark: the `default` workflow on warm ACP agents against today's per-step CLIs.

Not a test. Run ``.venv/bin/python bench/acp_warm.py``; it prints Markdown rows and writes
``build/bench/acp_warm.json``. Both sides run the shipped ``default`` workflow (codex implements,
gemini reviews, claude refines, until the review is satisfied) on the ``calculator`` scenario
under rehearsal, in fresh workspaces, interleaved. Baseline: the workflow as shipped (a fresh
CLI per step). Subject: the same workflow with each agent replaced by its ``-acp`` entry
(codex-acp, gemini-acp, claude-acp): one warm process and session per agent for the run.
Target (issue 20): ≤ 0.6× the per-step CLIs' wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import Row, apaired, row, write_rows  # noqa: E402

from orchestrator_nb.config import Settings, load_settings  # noqa: E402
from orchestrator_nb.rehearsal import rehearsal  # noqa: E402
from orchestrator_nb.workflow.api import arun  # noqa: E402

NAME = "ACP warm agents"
TASK = "Write a small calculator module with tests."
ACP = {"codex": "codex-acp", "gemini": "gemini-acp", "claude": "claude-acp"}
TARGET = 0.6


def _swap(steps: list[dict[str, Any]]) -> None:
    for step in steps:
        if step.get("agent") in ACP:
            step["agent"] = ACP[step["agent"]]
        _swap(step.get("steps") or [])


def settings() -> Settings:
    shipped = load_settings()
    workflow = shipped.workflows["default"].model_dump(exclude_none=True)
    _swap(workflow["steps"])
    return load_settings(workflows={"default-acp": workflow})


async def one(workflow: str, cfg: Settings, tmp: Path) -> float:
    ws = Path(tempfile.mkdtemp(dir=tmp))
    with rehearsal("calculator") as r:
        start = time.perf_counter()
        result = await arun(TASK, workflow, workspace=ws, config=cfg, rehearsal=r)
        elapsed = time.perf_counter() - start
    if not result.ok:
        errors = [str(s.error) for s in result.steps if s.error]
        raise RuntimeError(f"{workflow} did not complete: {result.outcome} {errors}")
    return elapsed


async def measure(repeats: int) -> list[Row]:
    cfg = settings()
    with tempfile.TemporaryDirectory(prefix="orch-bench-acp-") as tmp:
        root = Path(tmp)
        base, subj = await apaired(
            lambda: one("default", cfg, root), lambda: one("default-acp", cfg, root), repeats
        )
    ratio = sorted(subj)[len(subj) // 2] / sorted(base)[len(base) // 2]
    return [
        row(
            NAME,
            "default workflow, calculator (4 steps: implement, review, refine, review)",
            baseline_label="per-step CLIs",
            baseline=base,
            subject_label="warm ACP agents",
            subject=subj,
            target=f"≤ {TARGET:g}× the per-step CLIs",
            passed=ratio <= TARGET,
            note="rehearsal, 127.0.0.1",
        )
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = asyncio.run(measure(args.repeats))
    write_rows("acp_warm", rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
