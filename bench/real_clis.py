"""Benchmark: the real agent CLIs under rehearsal, through run_agent and invoked directly.

Not a test. Run ``.venv/bin/python bench/real_clis.py``; it prints Markdown rows and writes
``build/bench/real_clis.json``. Each pinned CLI in ``.agents/`` does the shipped ``write-file``
scenario (create hello.txt, say done) against the scripted model server on 127.0.0.1: no
network, no credentials. Baseline, interleaved: the same CLI with the same argv (the driver's
``build_argv`` with the rehearsal's flags), the same environment (the rehearsal's
``subprocess_env`` over the runner's base environment), stdin and cwd, by a bare
``subprocess.run``. Subject: ``arun_agent`` with the shipped agent settings. A CLI that is not
installed is left out with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import Row, apaired, row, run_bare, write_rows  # noqa: E402

from orchestrator_nb.agents.availability import locate  # noqa: E402
from orchestrator_nb.agents.base import AgentRequest  # noqa: E402
from orchestrator_nb.agents.registry import DriverRegistry, default_registry  # noqa: E402
from orchestrator_nb.api import arun_agent  # noqa: E402
from orchestrator_nb.config import Settings, load_settings  # noqa: E402
from orchestrator_nb.errors import AgentNotInstalled  # noqa: E402
from orchestrator_nb.process import base_env  # noqa: E402
from orchestrator_nb.rehearsal import Rehearsal, rehearsal  # noqa: E402

NAME = "real CLIs"
AGENTS = ("claude", "codex", "gemini", "copilot")
PROMPT = "Create hello.txt containing hi"
STEP = "bench"


def reset(ws: Path) -> None:
    for child in ws.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


class Pair:
    """One CLI's two ways of running, in the same workspace, each checked to have done the work."""

    def __init__(
        self, agent: str, settings: Settings, registry: DriverRegistry, r: Rehearsal, root: Path
    ) -> None:
        self.agent = agent
        self.settings = settings
        self.registry = registry
        self.r = r
        self.ws = root / f"ws-{agent}"
        self.ws.mkdir()
        cfg = settings.agents[agent]
        driver = registry.create(agent, cfg)
        executable, self.version = locate(agent, driver, cfg)
        request = AgentRequest(
            prompt=PROMPT,
            workspace=self.ws.resolve(),
            executable=executable,
            model=cfg.model,
            max_turns=cfg.max_turns,
            permission_mode=cfg.permission_mode,
            extra_args=list(r.args(agent, STEP)) + list(cfg.extra_args),
            rehearsal=True,  # as run_agent builds it under rehearsal (gemini: --skip-trust)
        )
        self.argv = driver.build_argv(request)
        runner_env = base_env({**driver.env(request), **cfg.env})
        self.env = r.subprocess_env(agent, STEP, base=runner_env, workspace=self.ws)
        self.stdin = PROMPT.encode() if driver.prompt_via == "stdin" else None

    def _done(self) -> None:
        hello = self.ws / "hello.txt"
        if not hello.is_file() or hello.read_text().strip() != "hi":
            raise RuntimeError(f"{self.agent} did not create hello.txt in {self.ws}")

    async def bare(self) -> float:
        reset(self.ws)
        start = time.perf_counter()
        await asyncio.to_thread(
            run_bare,
            self.argv,
            cwd=self.ws,
            env=self.env,
            stdin=self.stdin,
            timeout=300,
            name=self.agent,
        )
        elapsed = time.perf_counter() - start
        self._done()
        return elapsed

    async def orchestrated(self) -> float:
        reset(self.ws)
        start = time.perf_counter()
        result = await arun_agent(
            self.agent,
            PROMPT,
            workspace=self.ws,
            config=self.settings,
            rehearsal=self.r,
            step=STEP,
            registry=self.registry,
        )
        elapsed = time.perf_counter() - start
        if not result.ok:
            raise RuntimeError(f"{self.agent} through run_agent: {result.error}")
        self._done()
        return elapsed


async def measure(repeats: int, agents: tuple[str, ...]) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    skipped: list[str] = []
    settings = load_settings()
    registry = default_registry()
    with (
        tempfile.TemporaryDirectory(prefix="orch-bench-cli-") as tmp,
        rehearsal("write-file") as r,
    ):
        for agent in agents:
            try:
                pair = Pair(agent, settings, registry, r, Path(tmp))
            except AgentNotInstalled as exc:
                skipped.append(f"{agent}: {exc.message}")
                continue
            await pair.bare()  # one warm-up run fills the disk cache for both sides
            base, subj = await apaired(pair.bare, pair.orchestrated, repeats, warmup=0)
            version = re.search(r"\d+\.\d+\.\d+", pair.version or "")
            label = f"{agent} {version.group(0)}" if version else agent
            rows.append(
                row(
                    NAME,
                    f"{label}: write-file",
                    baseline_label="same argv + env, subprocess.run",
                    baseline=base,
                    subject_label="run_agent",
                    subject=subj,
                    note="rehearsal, 127.0.0.1",
                )
            )
    return rows, skipped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--agents", default=",".join(AGENTS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if shutil.which("node") is None and not os.environ.get("ORCHESTRATOR_NB_AGENTS_DIR"):
        print("node is not installed: the real CLIs cannot run; nothing measured")
    rows, skipped = asyncio.run(measure(args.repeats, tuple(args.agents.split(","))))
    write_rows("real_clis", rows, args.out, skipped=skipped)
    for line in skipped:
        print(f"skipped {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
