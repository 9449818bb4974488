"""The real, unmodified CLIs from .agents/ run whole tasks against the rehearsal server.

Each CLI is spawned the way a driver spawns it (argv list, stdin /dev/null, its own process
group, the flags of the reference transcripts, ``os.environ - r.drop_env + r.env(agent)``) and
the tests check what the CLIs themselves do: tool calls writing exact bytes, a whole workflow
passed by hand from CLI to CLI, and their own retries of transient 429s. What the project's
drivers make of the CLIs (429 storms, hangs, cancels, resume) is in test_cli_drivers_real.py.
Process groups are always killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator_nb.agents._npm import node_env
from orchestrator_nb.agents.registry import agents_bin_dirs
from orchestrator_nb.rehearsal import Rehearsal, parse_scenario, rehearsal

pytestmark = pytest.mark.real_cli

REPO = Path(__file__).resolve().parents[2]
BIN = agents_bin_dirs()[0]  # .agents/, or ORCHESTRATOR_NB_AGENTS_DIR (make test-latest)
AGENTS = ("claude", "codex", "gemini", "copilot")
# Budget for one rate-limited run: start-up (gemini ~3-5 s on 2 cores) plus one bounded retry.
RATE_LIMIT_BUDGET_S = 30.0


def binary(agent: str) -> Path:
    """The pinned CLI, or a skip (a failure under CI) saying what is missing."""
    path = BIN / agent
    reason = None
    if shutil.which("node") is None:
        reason = "node is not installed: the agent CLIs need Node.js 20+ (and npm to install them)"
    elif not path.exists():
        reason = f"{agent} is not installed in {BIN}: run `make agents` (needs npm)"
    if reason is not None:
        pytest.skip(reason)  # a failure under CI=true (tests/conftest.py)
    return path


def argv(agent: str, prompt: str, r: Rehearsal, step: str | None, resume: str | None) -> list[str]:
    exe = str(binary(agent))
    if agent == "claude":
        flags = ["--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits"]
        return [exe, "-p", prompt, *flags, *(["--resume", resume] if resume else [])]
    if agent == "codex":
        head = [exe, "exec", "--json", "--skip-git-repo-check", "--sandbox", "workspace-write"]
        head += r.args("codex", step)
        return [*head, "resume", resume, prompt] if resume else [*head, prompt]
    if agent == "gemini":
        flags = ["-o", "stream-json", "--approval-mode", "auto_edit", "--skip-trust"]
        return [exe, "-p", prompt, *flags, *(["--resume", resume] if resume else [])]
    flags = ["--output-format", "json", "--allow-all-tools", "--no-auto-update", "--no-ask-user"]
    return [exe, "-p", prompt, *flags, *(["--resume", resume] if resume else [])]


@dataclass
class Run:
    agent: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def events(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for line in self.stdout.splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                found.append(value)
        return found

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    def explain(self) -> str:
        return (
            f"{self.agent} exit {self.returncode} after {self.seconds:.1f}s\n"
            f"--- stdout (tail)\n{self.stdout[-3000:]}\n--- stderr (tail)\n{self.stderr[-2000:]}"
        )


def kill_group(proc: subprocess.Popen[str]) -> None:
    # copilot runs a native child (and the agents' tools run theirs): signal the whole group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def spawn(
    r: Rehearsal, agent: str, prompt: str, cwd: Path, step: str | None, resume: str | None = None
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in r.drop_env} | r.env(agent, step)
    env |= node_env(str(binary(agent)))  # the Node that `make agents` put beside the CLIs, if any
    return subprocess.Popen(
        argv(agent, prompt, r, step, resume),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def run_cli(
    r: Rehearsal,
    agent: str,
    prompt: str,
    cwd: Path,
    *,
    step: str | None = None,
    resume: str | None = None,
    timeout: float = 90.0,
) -> Run:
    started = time.monotonic()
    proc = spawn(r, agent, prompt, cwd, step, resume)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        run = Run(agent, proc.returncode, out, err, time.monotonic() - started)
        pytest.fail(f"{agent} did not finish within {timeout}s\n{run.explain()}")
    finally:
        kill_group(proc)
    return Run(agent, proc.returncode, out, err, time.monotonic() - started)


def workspace(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


# ----------------------------------------------------------------------------- verdicts


def succeeded(run: Run) -> bool:
    events = run.events
    if not events:
        return False
    last = events[-1]
    if run.agent == "claude":
        return last.get("type") == "result" and last.get("is_error") is False
    if run.agent == "codex":
        return last.get("type") == "turn.completed" and not run.of_type("turn.failed")
    if run.agent == "gemini":
        return last.get("type") == "result" and last.get("status") == "success"
    return (
        last.get("type") == "result"
        and last.get("exitCode") == 0
        and not run.of_type("session.error")
    )


def final_text(run: Run) -> str:
    if run.agent == "claude":
        return str(run.of_type("result")[-1].get("result", ""))
    if run.agent == "codex":
        items = [e["item"] for e in run.of_type("item.completed")]
        return str([i for i in items if i.get("type") == "agent_message"][-1]["text"])
    if run.agent == "gemini":
        parts: list[str] = []
        for event in run.of_type("message"):
            if event.get("role") == "user":
                parts = []
            else:
                parts.append(str(event.get("content", "")))
        return "".join(parts)
    messages = [e["data"] for e in run.of_type("assistant.message")]
    return str([m for m in messages if m.get("content")][-1]["content"])


def test_calculator_workflow_codex_gemini_claude(tmp_path: Path) -> None:
    for agent in ("codex", "gemini", "claude"):
        binary(agent)
    ws = workspace(tmp_path, "calc")
    with rehearsal("calculator") as r:
        implement = run_cli(
            r, "codex", "Write a small calculator module with tests.", ws, step="implement"
        )
        assert succeeded(implement), implement.explain()
        review = run_cli(r, "gemini", "Review calc.py and suggest improvements.", ws, step="review")
        assert succeeded(review), review.explain()
        apply = run_cli(r, "claude", "Apply the review suggestions.", ws, step="apply")
        assert succeeded(apply), apply.explain()
        steps = [(q.agent, q.step, q.turn) for q in r.requests if q.kind == "turn"]
    block = re.search(r"```json\s*(\{.*?\})\s*```", final_text(review), re.DOTALL)
    assert block, final_text(review)
    assert len(json.loads(block.group(1))["suggestions"]) == 3
    assert {(a, s) for a, s, _ in steps} == {
        ("codex", "implement"),
        ("gemini", "review"),
        ("claude", "apply"),
    }
    assert all(t and t.startswith("turn") for _, _, t in steps)
    calc = (ws / "calc.py").read_text()
    assert 'raise ZeroDivisionError("cannot divide by zero")' in calc and "__all__" in calc
    assert "test_div_by_zero" in (ws / "test_calc.py").read_text()
    tests = subprocess.run(
        [sys.executable, "-m", "unittest", "-q", "test_calc"],
        cwd=ws,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tests.returncode == 0 and "Ran 5 tests" in tests.stderr, tests.stderr


def test_codex_shell_tool_writes_exact_bytes(tmp_path: Path) -> None:
    # An older model name: codex then offers only exec_command, so writes go through its shell.
    binary("codex")
    content = 'it\'s "quoted" $HOME `date` \\n % 100%\nnaïve ✓\n'
    scenario = parse_scenario(
        "settings: {models: {codex: gpt-5.1-codex}}\n"
        "turns:\n"
        "  - actions:\n"
        f"      - write: {{path: deep/dir/f.txt, content: {json.dumps(content)}}}\n"
        "      - edit: {path: deep/dir/f.txt, old: naïve, new: plain}\n"
        "      - run: echo ran > ran.txt\n",
        default_name="codex-shell",
    )
    ws = workspace(tmp_path, "ws")
    with rehearsal(scenario) as r:
        run = run_cli(r, "codex", "write it", ws)
        calls = [c for q in r.requests_for(agent="codex") for c in q.reply_calls]
    assert succeeded(run), run.explain()
    assert calls == ["exec_command"] * 3
    assert (ws / "deep" / "dir" / "f.txt").read_text() == content.replace("naïve", "plain")
    assert (ws / "ran.txt").read_text() == "ran\n"


@pytest.mark.parametrize("agent", ["claude", "codex"])
def test_transient_429s_are_retried_by_the_cli(agent: str, tmp_path: Path) -> None:
    binary(agent)
    ws = workspace(tmp_path, "ws")
    with rehearsal("flaky") as r:
        run = run_cli(r, agent, "Create hello.txt containing hi", ws, timeout=60)
        statuses = [q.status for q in r.requests_for(agent=agent, kind="turn")]
    assert succeeded(run), run.explain()
    assert (ws / "hello.txt").read_text() == "hi\n"
    assert statuses[:3] == [429, 429, 200]
    if agent == "claude":
        retries = [e for e in run.of_type("system") if e.get("subtype") == "api_retry"]
    else:
        retries = [e for e in run.of_type("error") if "Reconnecting" in e.get("message", "")]
    assert len(retries) == 2, run.explain()


def test_a_missing_binary_skips_saying_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "BIN", tmp_path)
    with pytest.raises(pytest.skip.Exception, match="make agents"):
        binary("claude")
