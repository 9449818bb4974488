"""Benchmark: eight parallel agent steps of 1 s each, through the engine.

Not a test. Run ``.venv/bin/python bench/fanout.py``; it prints Markdown rows and writes
``build/bench/fanout.json``. The fake agent sleeps ``--work`` seconds, then replays a real
claude transcript. Baselines measured in the same run: the same eight processes started at once
by bare asyncio (what fan-out costs without orchestrator-nb), and the engine running the eight
steps one after another. Target (issue 10): the eight finish within 1.3 s of wall time.

Variants: ``isolation: shared`` in a folder without git (orchestration only), the default
``auto`` in a git workspace (a git worktree per child, merged back), and the shipped default
``limits.max_concurrency: 4`` (which runs the eight in two waves, by design).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import (  # noqa: E402
    TRANSCRIPTS,
    Row,
    apaired,
    apply_env,
    counting,
    fake_env,
    git_init,
    make_fake_agent,
    row,
    write_rows,
)

from orchestrator_nb.agents.base import AgentRequest  # noqa: E402
from orchestrator_nb.agents.registry import default_registry  # noqa: E402
from orchestrator_nb.config import AgentConfig, Settings  # noqa: E402
from orchestrator_nb.process import base_env  # noqa: E402
from orchestrator_nb.workflow.api import arun  # noqa: E402
from orchestrator_nb.workflow.models import Limits, Workflow  # noqa: E402
from orchestrator_nb.workspace.worktree import WorktreeManager  # noqa: E402

NAME = "fan-out"
WIDTH = 8
TARGET_S = 1.3
PROMPT = "Create hello.txt containing hi"
TRANSCRIPT = TRANSCRIPTS / "claude_tool_write_acceptEdits.jsonl"


def settings_for(exe: Path, *, max_concurrency: int | None) -> Settings:
    agent = AgentConfig(driver="claude", path=str(exe), retries=0)
    children = [{"id": f"c{i}", "agent": "fake", "prompt": PROMPT} for i in range(WIDTH)]
    shared = {"id": "fan", "kind": "parallel", "isolation": "shared", "steps": children}
    workflows: dict[str, Any] = {
        "shared": {"steps": [shared]},
        "auto": {"steps": [{"id": "fan", "kind": "parallel", "steps": children}]},
        "sequence": {"steps": children},
    }
    limits = Limits() if max_concurrency is None else Limits(max_concurrency=max_concurrency)
    return Settings(
        agents={"fake": agent},
        workflows={k: Workflow.model_validate(v) for k, v in workflows.items()},
        limits=limits,
    )


async def measure(repeats: int, seq_repeats: int, work: float) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="orch-bench-fanout-") as tmp:
        root = Path(tmp)
        exe = make_fake_agent(root / "bin")
        plain = root / "plain"
        plain.mkdir()
        repo = root / "repo"
        repo.mkdir()
        git_init(repo)
        wide = settings_for(exe, max_concurrency=WIDTH)
        shipped = settings_for(exe, max_concurrency=None)
        driver = default_registry().create("fake", wide.agents["fake"])
        argv = driver.build_argv(AgentRequest(PROMPT, plain, str(exe)))
        apply_env(fake_env(mode="replay", script=TRANSCRIPT, sleep=work))
        env = base_env(driver.env(AgentRequest(PROMPT, plain, str(exe))))

        async def bare_parallel() -> float:
            async def one() -> None:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    cwd=plain,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    start_new_session=True,
                )
                await proc.communicate()
                assert proc.returncode == 0

            start = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(WIDTH)))
            return time.perf_counter() - start

        def engine(workflow: str, where: Path, settings: Settings) -> Any:
            async def go() -> float:
                start = time.perf_counter()
                result = await arun("do it", workflow, workspace=where, config=settings)
                elapsed = time.perf_counter() - start
                assert result.ok and len(result.steps) == WIDTH, result.error
                return elapsed

            return go

        cases = [
            ("8 × 1 s, isolation shared, no git", engine("shared", plain, wide), repeats),
            ("8 × 1 s, isolation auto = worktrees, git", engine("auto", repo, wide), repeats),
            (
                "8 × 1 s, shipped limits.max_concurrency 4",
                engine("shared", plain, shipped),
                2,
            ),
        ]
        for i, (measure_name, subject, n) in enumerate(cases):
            warmup = 1 if i < 2 else 0  # each workspace once; the machine is warm after that
            base, subj = await apaired(bare_parallel, subject, n, warmup=warmup)
            median = statistics.median(subj)
            capped = "max_concurrency 4" in measure_name
            rows.append(
                row(
                    NAME,
                    measure_name,
                    baseline_label="bare asyncio, 8 at once",
                    baseline=base,
                    subject_label="engine parallel step",
                    subject=subj,
                    target=None if capped else f"≤ {TARGET_S:g} s wall",
                    passed=None if capped else median <= TARGET_S,
                    note="two waves of 4, by configuration" if capped else "",
                )
            )
        phases = ("create", "diff", "apply", "cleanup", "cleanup_stale")
        targets = [(WorktreeManager, name, f"worktree {name}") for name in phases]
        with counting(targets) as totals:
            await engine("auto", repo, wide)()
        BREAKDOWN.update(totals)
        parts = [f"{v['calls']:g}× {k.split()[1]} Σ{v['ms']:.0f} ms" for k, v in totals.items()]
        for r in rows:
            if "worktrees" in r["measure"]:
                r["note"] = "one run: " + ", ".join(parts)
        sequence = engine("sequence", plain, wide)
        parallel = engine("shared", plain, wide)
        base, subj = await apaired(sequence, parallel, seq_repeats, warmup=0)
        rows.append(
            row(
                NAME,
                "parallel vs the same 8 steps in sequence",
                baseline_label="engine, 8 steps in sequence",
                baseline=base,
                subject_label="engine parallel step",
                subject=subj,
                note=f"ideal ratio {1 / WIDTH:.3f}",
            )
        )
    return rows


BREAKDOWN: dict[str, dict[str, float]] = {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--sequence-repeats", type=int, default=2)
    parser.add_argument("--work", type=float, default=1.0, help="seconds each agent works")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = asyncio.run(measure(args.repeats, args.sequence_repeats, args.work))
    write_rows(
        "fanout", rows, args.out, width=WIDTH, work_s=args.work, worktree_breakdown=BREAKDOWN
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
