"""Benchmark: the `default` workflow on warm ACP agents against today's per-step CLIs.

Not a test. Run ``.venv/bin/python bench/acp_warm.py``; it prints Markdown rows and writes
``build/bench/acp_warm.json``. Both sides run the shipped ``default`` workflow (codex implements,
gemini reviews, claude refines, until the review is satisfied) on the ``calculator`` scenario
under rehearsal, in fresh workspaces, interleaved. Baseline: the workflow as shipped (a fresh
CLI per step). Subject: the same workflow with each agent replaced by its ``-acp`` entry
(codex-acp, gemini-acp, claude-acp): one warm process and session per agent for the run, all
started at its beginning, in the order of need, one per core at a time (agents/acp/prestart.py).
Target (issue 20): ≤ 0.6× the per-step CLIs' wall time, and ≤ 0.6× the same CLI invocations
replayed one after another by a bare ``subprocess.run`` (bench/end_to_end.py's baseline, recorded
from one per-step run): the steps run by hand. Then a notebook session's next cell: a new task
in the same workspace after a first run (not timed) on the kernel's loop, where the session
keeps its ACP agents and its rehearsal server warm between cells, against the same two runs on
the per-step CLIs. Also reported: the warm agent's own
step (the second review, on a live gemini-acp session) against the same step as a fresh CLI,
and the time from an agent's ``session/request_permission`` (stamped by the fake ACP agent as
it sends it) to the question's widget added to the cell's box (target ≤ 100 ms; the browser's
own render after the comm message is not included).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import Row, apaired, row, write_rows  # noqa: E402
from end_to_end import Recorder, timed_replay  # noqa: E402

from orchestrator_nb.config import Settings, load_settings  # noqa: E402
from orchestrator_nb.rehearsal import rehearsal  # noqa: E402
from orchestrator_nb.workflow.api import arun  # noqa: E402

NAME = "ACP warm agents"
TASK = "Write a small calculator module with tests."
NEXT = "Write a small calculator module with tests, again."
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


async def one(workflow: str, cfg: Settings, tmp: Path, last: list[float]) -> float:
    ws = Path(tempfile.mkdtemp(dir=tmp))
    with rehearsal("calculator") as r:
        start = time.perf_counter()
        result = await arun(TASK, workflow, workspace=ws, config=cfg, rehearsal=r)
        elapsed = time.perf_counter() - start
    if not result.ok:
        errors = [str(s.error) for s in result.steps if s.error]
        raise RuntimeError(f"{workflow} did not complete: {result.outcome} {errors}")
    last.append(result.steps[-1].duration_s)  # the second review: warm on the ACP side
    return elapsed


async def by_hand(cfg: Settings, tmp: Path, repeats: int) -> tuple[list[float], list[float]]:
    """The per-step CLIs' own invocations (argv, environment, stdin, folder: recorded from one
    run) replayed one after another by a bare ``subprocess.run``, against the warm ACP run."""
    with rehearsal("calculator") as r:
        first = Path(tempfile.mkdtemp(dir=tmp))
        with Recorder() as rec:
            result = await arun(TASK, "default", workspace=first, config=cfg, rehearsal=r)
        if not result.ok:
            raise RuntimeError(f"default did not complete: {result.outcome}")
        recorded = str(first.resolve())

        def bare() -> Awaitable[float]:
            return timed_replay(rec.calls, recorded, Path(tempfile.mkdtemp(dir=tmp)).resolve())

        return await apaired(bare, lambda: one("default-acp", cfg, tmp, []), repeats)


async def next_cell(workflow: str, cfg: Settings, tmp: Path) -> float:
    """A notebook session's second cell: a new task in the same workspace, after a first run
    (not timed) has left the session's agents and rehearsal server warm. On the kernel's loop,
    as a cell's run is (``run_sync`` from a running loop)."""
    from orchestrator_nb._sync import run_sync
    from orchestrator_nb.sessions import Session

    ws = Path(tempfile.mkdtemp(dir=tmp))
    session = Session.create(f"bench-{ws.name}")
    opts: dict[str, Any] = {"workspace": ws, "config": cfg, "rehearsal": "calculator"}
    try:
        first = run_sync(lambda: arun(TASK, workflow, session=session, **opts))
        start = time.perf_counter()
        result = run_sync(lambda: arun(NEXT, workflow, session=session, **opts))
        elapsed = time.perf_counter() - start
    finally:
        session.close_agents()
    if not (first.ok and result.ok):
        raise RuntimeError(f"{workflow} did not complete: {first.outcome}, {result.outcome}")
    return elapsed


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


async def question_latency(repeats: int) -> list[float]:
    """Seconds from the agent sending session/request_permission to the question shown."""
    import os

    from orchestrator_nb.api import arun_agent
    from orchestrator_nb.notebook.approvals import WidgetApprover, pending

    fake = ROOT / "tests" / "fakes" / "fake_acp_agent.py"
    agents = {"fake": {"driver": "acp", "argv": [sys.executable, str(fake)], "retries": 0}}
    found: list[float] = []
    with tempfile.TemporaryDirectory(prefix="orch-bench-ask-") as tmp:
        ws = Path(tmp)
        stamp = ws / "asked"
        os.environ["FAKE_ACP_ASK_STAMP"] = str(stamp)
        cfg = load_settings(cwd=ws, trust=True, agents=agents)
        try:
            for i in range(repeats):
                shown: list[float] = []

                def add(_widget: Any, shown: list[float] = shown) -> None:
                    shown.append(time.monotonic())
                    asyncio.get_running_loop().call_soon(lambda: pending()[0].allow_once())

                await arun_agent(
                    "fake",
                    f"write out{i}.txt hi",
                    workspace=ws,
                    config=cfg,
                    approvals=WidgetApprover(add),
                )
                asked = float(stamp.read_text().split()[-1])
                found.append(shown[0] - asked)
        finally:
            os.environ.pop("FAKE_ACP_ASK_STAMP", None)
    return found


async def measure(repeats: int) -> list[Row]:
    cfg = settings()
    cold: list[float] = []
    warm: list[float] = []
    with tempfile.TemporaryDirectory(prefix="orch-bench-acp-") as tmp:
        root = Path(tmp)
        base, subj = await apaired(
            lambda: one("default", cfg, root, cold),
            lambda: one("default-acp", cfg, root, warm),
            repeats,
        )
        hand, subj_hand = await by_hand(cfg, root, repeats)
        cell_base, cell_subj = await apaired(
            lambda: next_cell("default", cfg, root),
            lambda: next_cell("default-acp", cfg, root),
            repeats,
        )
    asks = await question_latency(max(repeats, 10))
    return [
        row(
            NAME,
            "default workflow, calculator (4 steps: implement, review, refine, review)",
            baseline_label="per-step CLIs",
            baseline=base,
            subject_label="warm ACP agents",
            subject=subj,
            target=f"≤ {TARGET:g}× the per-step CLIs",
            max_ratio=TARGET,
            note="rehearsal, 127.0.0.1; the ACP agents start at the run's beginning, one per core",
        ),
        row(
            NAME,
            "default workflow, calculator: against the same CLI calls run by hand in sequence",
            baseline_label="the per-step CLIs' invocations in sequence, subprocess.run",
            baseline=hand,
            subject_label="warm ACP agents",
            subject=subj_hand,
            target=f"≤ {TARGET:g}× the bare CLI calls",
            max_ratio=TARGET,
            note="rehearsal, 127.0.0.1; the same argv, environment and stdin a run gives each CLI",
        ),
        row(
            NAME,
            "default workflow, calculator: a notebook session's next cell (agents warm from the "
            "cell before)",
            baseline_label="per-step CLIs",
            baseline=cell_base,
            subject_label="warm ACP agents",
            subject=cell_subj,
            target=f"≤ {TARGET:g}× the per-step CLIs",
            max_ratio=TARGET,
            note="rehearsal, 127.0.0.1; a new task in the same workspace and session, on the "
            "kernel's loop; the first cell's run is not timed",
        ),
        row(
            NAME,
            "the warm agent's step (second review: gemini-acp live session vs fresh gemini CLI)",
            baseline_label="fresh CLI step",
            baseline=cold,
            subject_label="warm ACP step",
            subject=warm,
            target=f"≤ {TARGET:g}× the fresh CLI step",
            max_ratio=TARGET,
            note="rehearsal, 127.0.0.1",
        ),
        row(
            NAME,
            "session/request_permission sent → question widget shown (fake ACP agent)",
            baseline_label="target",
            baseline=0.1,
            subject_label="measured",
            subject=asks,
            target="≤ 0.1 s",
            passed=_median(asks) <= 0.1,
            note="kernel side: the browser's render of the comm message is not included",
            show_ratio=False,
        ),
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
