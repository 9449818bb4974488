"""Benchmark: a batch of many tasks of a fake 1 s agent, against the ideal wall time.

Not a test. Run ``.venv/bin/python bench/batch_scale.py``; it prints Markdown rows and writes
``build/bench/batch_scale.json``. Each task is a one-step workflow whose agent (the fake CLI,
a real executable) sleeps ``--work`` seconds, then replays a real claude transcript, in a small
git workspace: every task gets its own worktree and branch (``isolation="auto"``), the batch
journal is on. The ideal is ``ceil(tasks / max_concurrency) × work`` (waves of agents that do
nothing but their own work).

Reported per batch size: wall time against the ideal (target issue 22: ≤ 1.3× at 100 × 10),
orchestration CPU per task (this process's CPU plus its children's, less the agents' own CPU,
measured by running the same fake agent bare; target ≤ 60 ms) and this process's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import (  # noqa: E402
    TRANSCRIPTS,
    Row,
    apply_env,
    fake_env,
    git_init,
    make_fake_agent,
    peak_rss_mb,
    row,
    write_rows,
)

from orchestrator_nb.agents.base import AgentRequest  # noqa: E402
from orchestrator_nb.agents.registry import default_registry  # noqa: E402
from orchestrator_nb.batching.api import abatch  # noqa: E402
from orchestrator_nb.config import AgentConfig, Settings  # noqa: E402
from orchestrator_nb.process import base_env  # noqa: E402
from orchestrator_nb.workflow.models import Limits, Workflow  # noqa: E402

NAME = "batch"
PROMPT = "Create hello.txt containing hi"
TRANSCRIPT = TRANSCRIPTS / "claude_tool_write_acceptEdits.jsonl"
RATIO_TARGET = 1.3
CPU_TARGET_S = 0.060


def settings_for(exe: Path, concurrency: int) -> Settings:
    agent = AgentConfig(driver="claude", path=str(exe), retries=0)
    one = Workflow.model_validate({"steps": [{"id": "work", "agent": "fake", "prompt": PROMPT}]})
    return Settings(
        agents={"fake": agent},
        workflows={"one": one},
        limits=Limits(max_concurrency=concurrency),
    )


def cpu_s() -> float:
    return self_cpu_s() + children_cpu_s()


def self_cpu_s() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def children_cpu_s() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def agent_cpu_s(exe: Path, ws: Path, samples: int = 10) -> float:
    """The fake agent's own CPU per run, run bare (what the orchestration figure leaves out)."""
    driver = default_registry().create("fake", AgentConfig(driver="claude", path=str(exe)))
    request = AgentRequest(PROMPT, ws, str(exe))
    argv, env = driver.build_argv(request), base_env(driver.env(request))
    per_run = []
    for _ in range(samples):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, cwd=ws, env=env, stdin=subprocess.DEVNULL, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        per_run.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(per_run)


async def one_batch(root: Path, exe: Path, tasks: int, concurrency: int) -> dict[str, float]:
    ws = root / f"ws-{tasks}x{concurrency}"
    ws.mkdir()
    git_init(ws)
    start_cpu, start_self, start = cpu_s(), self_cpu_s(), time.perf_counter()
    result = await abatch(
        [f"task {i}: {PROMPT}" for i in range(tasks)],
        "one",
        workspace=ws,
        max_concurrency=concurrency,
        config=settings_for(exe, concurrency),
        progress=False,
        journal=root / f"journal-{tasks}x{concurrency}.jsonl",
    )
    wall, cpu = time.perf_counter() - start, cpu_s() - start_cpu
    own = self_cpu_s() - start_self
    failed = [r for r in result.rows if r.outcome != "completed"]
    if failed:
        raise RuntimeError(f"{len(failed)} task(s) did not complete: {failed[0]}")
    return {"wall": wall, "cpu": cpu, "python_cpu": own}


async def measure(sizes: list[tuple[int, int]], work: float) -> tuple[list[Row], dict[str, object]]:
    rows: list[Row] = []
    info: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="orch-bench-batch-") as tmp:
        root = Path(tmp)
        exe = make_fake_agent(root / "bin")
        apply_env(fake_env(mode="replay", script=TRANSCRIPT, sleep=work))
        scratch = root / "scratch"
        scratch.mkdir()
        agent_cpu = agent_cpu_s(exe, scratch)
        info["agent_cpu_ms"] = round(agent_cpu * 1000, 1)
        for tasks, concurrency in sizes:
            got = await one_batch(root, exe, tasks, concurrency)
            ideal = math.ceil(tasks / concurrency) * work
            orchestration = max(0.0, got["cpu"] / tasks - agent_cpu)
            peak = peak_rss_mb()
            info[f"{tasks}x{concurrency}"] = {**got, "ideal": ideal, "cpu_per_task": orchestration}
            is_main = (tasks, concurrency) == (100, 10)
            ratio = got["wall"] / ideal
            rows.append(
                row(
                    NAME,
                    f"{tasks} tasks × fake {work:g} s agent, max_concurrency={concurrency}, "
                    "worktree per task, journal on",
                    baseline_label="ideal (waves of agents)",
                    baseline=[ideal],
                    subject_label="batch",
                    subject=[got["wall"]],
                    target=f"≤ {RATIO_TARGET:g}× ideal" if is_main else None,
                    passed=ratio <= RATIO_TARGET if is_main else None,
                    note=(
                        f"orchestration CPU {orchestration * 1000:.0f} ms/task "
                        f"(agent's own {agent_cpu * 1000:.0f} ms left out; this process's "
                        f"Python {got['python_cpu'] / tasks * 1000:.0f} ms/task, one core); "
                        f"peak RSS {peak:.0f} MB"
                    ),
                )
            )
            rows.append(
                row(
                    NAME,
                    f"orchestration CPU per task, {tasks} × {concurrency}",
                    baseline_label="target",
                    baseline=[CPU_TARGET_S],
                    subject_label="CPU per task",
                    subject=[orchestration],
                    target=f"≤ {CPU_TARGET_S * 1000:g} ms" if is_main else None,
                    passed=orchestration <= CPU_TARGET_S if is_main else None,
                )
            )
    return rows, info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100x10,500x50", help="TASKSxCONCURRENCY,...")
    parser.add_argument("--work", type=float, default=1.0, help="seconds each agent works")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    sizes = [tuple(int(n) for n in s.split("x")) for s in args.sizes.split(",")]
    rows, info = asyncio.run(measure(sizes, args.work))  # type: ignore[arg-type]
    write_rows("batch_scale", rows, args.out, **info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
