"""Benchmark: from an interrupt to the last agent process gone, with eight agents running.

Not a test. Run ``.venv/bin/python bench/cancel.py``; it prints Markdown rows and writes
``build/bench/cancel.json``. Each of the eight fake agents forks a grandchild that ignores
SIGINT (as a CLI's helper process might), so only the runner's escalation to SIGTERM ends it.

Subject: a workflow with one parallel step of eight agents runs as an asyncio task; once all
sixteen processes are up the task is cancelled (what the kernel's Interrupt button does through
``run_sync``), and a thread watching /proc notes when the last of them is gone. Baseline, in the
same run: the same sixteen processes started bare and stopped with the runner's own policy done
by hand (SIGINT to each group, wait up to ``Grace.after_sigint`` polling every 5 ms, SIGTERM),
which is the floor that policy allows. The note counts the agent processes still running at the
moment the cancelled workflow task returned (``run_sync`` closes its event loop right then). A
second row runs the same with ``process.stop_group`` replaced by the suggested form (signal
first, /proc only while the group exists, escalate exactly at the grace deadline).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import (  # noqa: E402
    Row,
    apply_env,
    fake_env,
    make_fake_agent,
    row,
    write_rows,
)

from orchestrator_nb import process  # noqa: E402
from orchestrator_nb.agents.base import AgentRequest  # noqa: E402
from orchestrator_nb.agents.registry import default_registry  # noqa: E402
from orchestrator_nb.config import AgentConfig, Settings  # noqa: E402
from orchestrator_nb.process import Grace, base_env  # noqa: E402
from orchestrator_nb.workflow.api import arun  # noqa: E402
from orchestrator_nb.workflow.models import Limits, Workflow  # noqa: E402

NAME = "cancel"
WIDTH = 8
PROMPT = "Create hello.txt containing hi"
POLL_S = 0.002
SCAN_GROUP = process.group_members
STOP_GROUP = process.stop_group
LEFT_AT_RETURN: list[int] = []  # agent processes still running when the workflow task returned


def alive(pid: int) -> bool:
    """Running and not a zombie (a reaped-later zombie holds no resources and no pipe)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def become_subreaper() -> bool:
    """Adopt orphaned grandchildren (Linux), so they are reaped here as a real init would.

    Without it they are re-parented to PID 1, which in some containers never reaps: their
    zombies would stay in the process group and slow every later group check.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(36, 1, 0, 0, 0) == 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap(pids: list[int]) -> list[int]:
    """Reap those of ``pids`` that are our zombie children; returns the ones not reaped."""
    left = []
    for pid in pids:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = 0 if alive(pid) else pid
        if not done:
            left.append(pid)
    return left


def wait_pids(piddir: Path, count: int, timeout: float = 30.0) -> tuple[list[int], list[int]]:
    """The leaders' and the grandchildren's pids, once ``count`` of each have started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = [p.name for p in piddir.iterdir()]
        leaders = [int(n.split("-")[1]) for n in names if n.startswith("leader-")]
        children = [int(n.split("-")[1]) for n in names if n.startswith("child-")]
        if len(leaders) >= count and len(children) >= count:
            return leaders, children
        time.sleep(0.01)
    raise RuntimeError(f"only {len(list(piddir.iterdir()))} of {2 * count} processes started")


class LastGone(threading.Thread):
    """Polls the pids from its start; ``gone_at`` is when none of them was left running.

    Grandchildren that died are reaped at once (we are their subreaper), as init would.
    """

    def __init__(self, leaders: list[int], children: list[int]) -> None:
        super().__init__(daemon=True)
        self.leaders = leaders
        self.children = children
        self.gone_at: float | None = None

    def run(self) -> None:
        leaders, children = list(self.leaders), list(self.children)
        deadline = time.perf_counter() + 30
        while (leaders or children) and time.perf_counter() < deadline:
            leaders = [p for p in leaders if alive(p)]
            children = reap(children)
            if leaders or children:
                time.sleep(POLL_S)
        self.gone_at = time.perf_counter()


def kill_left(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def settings_for(exe: Path) -> Settings:
    agent = AgentConfig(driver="claude", path=str(exe), retries=0, idle_timeout=None)
    children = [{"id": f"c{i}", "agent": "fake", "prompt": PROMPT} for i in range(WIDTH)]
    fan = {"id": "fan", "kind": "parallel", "isolation": "shared", "steps": children}
    return Settings(
        agents={"fake": agent},
        workflows={"fan": Workflow.model_validate({"steps": [fan]})},
        limits=Limits(max_concurrency=WIDTH),
    )


def fresh(piddir: Path) -> None:
    for p in piddir.iterdir():
        p.unlink()


async def engine_cancel(ws: Path, settings: Settings, piddir: Path) -> float:
    fresh(piddir)
    task = asyncio.ensure_future(arun("do it", "fan", workspace=ws, config=settings))
    leaders, children = await asyncio.to_thread(wait_pids, piddir, WIDTH)
    watcher = LastGone(leaders, children)
    start = time.perf_counter()
    task.cancel()
    watcher.start()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # run_sync closes its loop right here: whatever is still running now is left behind there.
    LEFT_AT_RETURN.append(sum(alive(p) for p in leaders + children))
    await asyncio.to_thread(watcher.join)
    kill_left(leaders + children)
    reap(children)
    # Let the clean-up tasks the workflow left behind finish before the next measurement.
    stragglers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if stragglers:
        await asyncio.wait(stragglers, timeout=10)
    assert watcher.gone_at is not None
    return watcher.gone_at - start


async def engine_cancel_suggested(ws: Path, settings: Settings, piddir: Path) -> float:
    """The same with the runner's stop as suggested (see :func:`suggested_stop_group`)."""
    process.stop_group = suggested_stop_group
    try:
        return await engine_cancel(ws, settings, piddir)
    finally:
        process.stop_group = STOP_GROUP


def probe_group_members(pgid: int) -> list[int]:
    """Ask the kernel first; read /proc only while the group exists (to leave zombies out)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    return SCAN_GROUP(pgid)


async def suggested_stop_group(pgid: int, grace: Grace) -> None:
    """process.stop_group as suggested: signal at once, no /proc scan before it, and escalate
    exactly at the grace deadline instead of up to one 50 ms poll later."""
    for sig, wait in ((signal.SIGINT, grace.after_sigint), (signal.SIGTERM, grace.after_sigterm)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        if await _gone_within(pgid, wait):
            return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    await _gone_within(pgid, 5.0)


async def _gone_within(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while probe_group_members(pgid):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(0.05, left))
    return True


def bare_cancel(argv: list[str], ws: Path, env: dict[str, str], piddir: Path) -> float:
    fresh(piddir)
    procs = [
        subprocess.Popen(
            argv,
            cwd=ws,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(WIDTH)
    ]
    leaders, children = wait_pids(piddir, WIDTH)
    pids = leaders + children
    watcher = LastGone(leaders, children)
    grace = Grace()
    start = time.perf_counter()
    watcher.start()
    groups = [p.pid for p in procs]
    for sig, wait in ((signal.SIGINT, grace.after_sigint), (signal.SIGTERM, grace.after_sigterm)):
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
        deadline = time.perf_counter() + wait
        while time.perf_counter() < deadline and any(alive(p) for p in pids):
            for proc in procs:
                proc.poll()  # reap the leaders, as the runner does
            time.sleep(0.005)
        if not any(alive(p) for p in pids):
            break
    watcher.join()
    for proc in procs:
        proc.wait()
    kill_left(pids)
    reap(children)
    assert watcher.gone_at is not None
    return watcher.gone_at - start


def proc_count() -> int:
    return sum(1 for p in Path("/proc").iterdir() if p.name.isdigit())


async def measure(repeats: int) -> list[Row]:
    become_subreaper()
    with tempfile.TemporaryDirectory(prefix="orch-bench-cancel-") as tmp:
        root = Path(tmp)
        exe = make_fake_agent(root / "bin")
        ws = root / "ws"
        ws.mkdir()
        piddir = root / "pids"
        piddir.mkdir()
        settings = settings_for(exe)
        apply_env(fake_env(mode="grandchild", piddir=piddir))
        driver = default_registry().create("fake", settings.agents["fake"])
        argv = driver.build_argv(AgentRequest(PROMPT, ws, str(exe)))
        env = base_env(driver.env(AgentRequest(PROMPT, ws, str(exe))))
        base: list[float] = []
        subj: list[float] = []
        fixed: list[float] = []
        left: list[int] = []
        for i in range(repeats):
            sides = [0, 1, 2] if i % 2 == 0 else [2, 1, 0]
            for side in sides:
                if side == 0:
                    base.append(await asyncio.to_thread(bare_cancel, argv, ws, env, piddir))
                elif side == 1:
                    subj.append(await engine_cancel(ws, settings, piddir))
                    left.append(LEFT_AT_RETURN[-1])
                else:
                    fixed.append(await engine_cancel_suggested(ws, settings, piddir))
    grace = Grace()
    return [
        row(
            NAME,
            "8 agents + 8 SIGINT-ignoring grandchildren: interrupt → last process gone",
            baseline_label=f"bare SIGINT, {grace.after_sigint:g} s grace, SIGTERM",
            baseline=base,
            subject_label="task.cancel() of the workflow",
            subject=subj,
            note=f"the floor is the {grace.after_sigint:g} s SIGINT grace of the runner's policy; "
            f"still running when the task returned: {left} of {2 * WIDTH} (kept alive here, "
            "orphaned under run_sync, which closes its loop then)",
        ),
        row(
            NAME,
            "the same, stop_group as is vs as suggested",
            baseline_label="signal first, exact grace deadline",
            baseline=fixed,
            subject_label="stop_group as is",
            subject=subj,
            note=f"as is: a /proc scan per group before each signal, escalation on a 50 ms poll; "
            f"{proc_count()} processes on the machine",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = asyncio.run(measure(args.repeats))
    write_rows("cancel", rows, args.out, width=WIDTH)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
