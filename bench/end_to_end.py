"""Benchmark: the shipped ``default`` workflow under rehearsal, against its own CLI calls.

Not a test. Run ``.venv/bin/python bench/end_to_end.py``; it prints Markdown rows and writes
``build/bench/end_to_end.json``. Subject: ``arun(TASK, "default", rehearsal=...)`` with the
shipped ``calculator`` scenario (codex implements, gemini reviews, claude refines, gemini
approves), in a fresh empty folder each time: what a user waits for. Baseline, interleaved: the
very CLI invocations that run made (argv, environment, stdin and working folder, recorded at the
runner's entry as the run made them), replayed one after another by a bare ``subprocess.run`` in
another fresh folder, with the workspace's path swapped. The difference is everything
orchestrator-nb adds between and around the agents: locating binaries, version probes, snapshots,
journal, audit, prompts. Target (issue 22): ≤ 1.05×.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import Row, apaired, row, run_bare, write_rows  # noqa: E402

from orchestrator_nb import api as api_module  # noqa: E402
from orchestrator_nb.rehearsal import rehearsal  # noqa: E402
from orchestrator_nb.workflow.api import arun  # noqa: E402

NAME = "end to end"
TASK = "Write a calculator module with tests"
SCENARIO = "calculator"
WORKFLOW = "default"
TARGET = 1.05


@dataclass(frozen=True)
class Call:
    argv: list[str]
    cwd: str
    env: dict[str, str]
    stdin: bytes | None


class Recorder:
    """Wraps the runner's entry point to note each CLI invocation, then runs it unchanged."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.original = api_module.run_process

    async def __call__(self, argv: Any, *, cwd: Any, env: Mapping[str, str], **kw: Any) -> Any:
        stdin = kw.get("stdin_data")
        self.calls.append(Call([str(a) for a in argv], str(cwd), dict(env), stdin))
        return await self.original(argv, cwd=cwd, env=env, **kw)

    def __enter__(self) -> Recorder:
        api_module.run_process = self  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        api_module.run_process = self.original


def swap(value: str, old: str, new: str) -> str:
    return value.replace(old, new)


def replay(calls: list[Call], old_ws: str, new_ws: Path) -> None:
    new = str(new_ws)
    for call in calls:
        run_bare(
            [swap(a, old_ws, new) for a in call.argv],
            cwd=swap(call.cwd, old_ws, new),
            env={k: swap(v, old_ws, new) for k, v in call.env.items()},
            stdin=call.stdin,
            timeout=600,
        )


async def timed_replay(calls: list[Call], old_ws: str, ws: Path) -> float:
    """Seconds to :func:`replay` ``calls`` in ``ws``, which must then hold the agents' work."""
    start = time.perf_counter()
    await asyncio.to_thread(replay, calls, old_ws, ws)
    elapsed = time.perf_counter() - start
    check(ws)
    return elapsed


def check(ws: Path) -> None:
    if not (ws / "calc.py").is_file():
        raise RuntimeError(f"no calc.py in {ws}: the agents did not do the work")


def fresh(root: Path, counter: list[int]) -> Path:
    counter[0] += 1
    ws = root / f"ws-{counter[0]}"
    ws.mkdir()
    return ws


async def measure(repeats: int) -> tuple[list[Row], dict[str, Any]]:
    info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="orch-bench-e2e-") as tmp, rehearsal(SCENARIO) as r:
        root = Path(tmp)
        counter = [0]
        # One recorded run fixes the invocations (and warms the disk cache for both sides).
        first = fresh(root, counter)
        with Recorder() as rec:
            result = await arun(TASK, WORKFLOW, workspace=first, rehearsal=r)
        if not result.ok:
            raise RuntimeError(f"the {WORKFLOW} workflow failed under rehearsal: {result.error}")
        calls, recorded_ws = rec.calls, str(first.resolve())
        info["invocations"] = [Path(c.argv[0]).name for c in calls]
        info["steps"] = [s.step_id for s in result.steps]

        async def bare() -> float:
            ws = fresh(root, counter).resolve()
            elapsed = await timed_replay(calls, recorded_ws, ws)
            shutil.rmtree(ws, ignore_errors=True)
            return elapsed

        async def orchestrated() -> float:
            ws = fresh(root, counter)
            start = time.perf_counter()
            res = await arun(TASK, WORKFLOW, workspace=ws, rehearsal=r)
            elapsed = time.perf_counter() - start
            if not res.ok or len(res.steps) != len(info["steps"]):
                raise RuntimeError(f"run differs from the recorded one: {res.error}")
            check(ws)
            shutil.rmtree(ws, ignore_errors=True)
            return elapsed

        run: Callable[[], Awaitable[float]] = orchestrated
        base, subj = await apaired(bare, run, repeats, warmup=0)

    names = ", ".join(info["invocations"])
    rows = [
        row(
            NAME,
            f"`{WORKFLOW}` workflow, `{SCENARIO}` rehearsal ({len(calls)} CLI runs: {names})",
            baseline_label="the same invocations in sequence, subprocess.run",
            baseline=base,
            subject_label="arun (engine)",
            subject=subj,
            target=f"≤ {TARGET:g}×",
            max_ratio=TARGET,
            note="real CLIs from .agents/, scripted model on 127.0.0.1",
        )
    ]
    return rows, info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows, info = asyncio.run(measure(args.repeats))
    write_rows("end_to_end", rows, args.out, **info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
