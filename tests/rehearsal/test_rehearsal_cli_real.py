"""The real, unmodified CLIs from .agents/ run whole tasks against the rehearsal server.

Each CLI is spawned the way a driver spawns it (argv list, stdin /dev/null, its own process
group, the flags of the reference transcripts, ``os.environ - r.drop_env + r.env(agent)``) and
the tests check what really happened: files on disk, the CLI's own final JSON verdict, native
resume, the CLI's rate-limit failure (its retry loop bounded by the scenario's
``cli_max_retries``), and silence while the model hangs. Process groups are always killed.
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

from orchestrator_nb.rehearsal import Rehearsal, parse_scenario, rehearsal

pytestmark = pytest.mark.real_cli

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".agents" / "node_modules" / ".bin"
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
    # gemini relaunches itself and copilot runs a native child: signal the whole group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def spawn(
    r: Rehearsal, agent: str, prompt: str, cwd: Path, step: str | None, resume: str | None = None
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in r.drop_env} | r.env(agent, step)
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


def session_id(run: Run) -> str:
    if run.agent == "claude":
        return str(run.of_type("result")[-1]["session_id"])
    if run.agent == "codex":
        return str(run.of_type("thread.started")[0]["thread_id"])
    if run.agent == "gemini":
        return str(run.of_type("init")[0]["session_id"])
    return str(run.of_type("result")[-1]["sessionId"])


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


def rate_limited(run: Run) -> bool:
    if run.agent == "claude":
        result = run.of_type("result")
        return (
            bool(result)
            and result[-1]["is_error"] is True
            and result[-1]["api_error_status"] == 429
        )
    if run.agent == "codex":
        failed = run.of_type("turn.failed")
        return bool(failed) and "429" in failed[-1]["error"]["message"]
    if run.agent == "gemini":
        result = run.of_type("result")
        return (
            bool(result)
            and result[-1]["status"] == "error"
            and "Rate limit" in result[-1]["error"]["message"]
            and run.returncode == 173  # 429 mod 256, as the reference README says
        )
    errors = [e["data"] for e in run.of_type("session.error")]
    return bool(errors) and errors[-1].get("statusCode") == 429 and run.returncode == 1


def finished(run: Run) -> bool:
    """Did the CLI print any final verdict (success or failure)?"""
    kinds = {e.get("type") for e in run.events}
    return bool(kinds & {"result", "turn.completed", "turn.failed", "assistant.message"})


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("agent", AGENTS)
def test_write_file_then_resume(agent: str, tmp_path: Path) -> None:
    binary(agent)
    ws = workspace(tmp_path, "ws")
    with rehearsal("write-file") as r:
        first = run_cli(r, agent, "Create hello.txt containing hi", ws, step="write")
        assert succeeded(first), first.explain()
        assert (ws / "hello.txt").read_text() == "hi\n", first.explain()
        assert "Done. I created hello.txt" in final_text(first)
        turns = r.requests_for(agent=agent, kind="turn")
        assert [q.step for q in turns] == ["write", "write"]
        assert turns[0].reply_calls and turns[1].tool_results == 1
        assert turns[0].cwd and Path(turns[0].cwd).resolve() == ws.resolve()

        resumed = run_cli(
            r, agent, "Now say done again", ws, step="resume", resume=session_id(first)
        )
        assert succeeded(resumed), resumed.explain()
        assert session_id(resumed) == session_id(first) or agent == "codex"
        assert "Done again" in final_text(resumed)
        again = r.requests_for(agent=agent, step="resume", kind="turn")
        assert again and again[-1].prompt == "Now say done again"
        # The resumed request carries the earlier conversation: it is a real native resume.
        assert any("Done. I created hello.txt" in line for line in again[-1].messages)
        assert not [q for q in r.requests if q.kind == "unknown"]

    if agent == "claude":
        usage = first.of_type("result")[-1]["usage"]  # 2 responses of 1200 in (200 cached), 34 out
        assert (usage["input_tokens"], usage["cache_read_input_tokens"]) == (2000, 400)
        assert usage["output_tokens"] == 68
    if agent == "codex":
        usage = first.of_type("turn.completed")[-1]["usage"]
        assert (usage["input_tokens"], usage["cached_input_tokens"]) == (2400, 400)
        assert usage["output_tokens"] == 68


@pytest.mark.parametrize("agent", AGENTS)
def test_rate_limit_storm_fails_fast(agent: str, tmp_path: Path) -> None:
    binary(agent)
    ws = workspace(tmp_path, "ws")
    with rehearsal("rate-limit") as r:
        run = run_cli(r, agent, "Create hello.txt containing hi", ws, timeout=60)
        refused = [q for q in r.requests_for(agent=agent, kind="turn") if q.status == 429]
    assert rate_limited(run), run.explain()
    assert run.seconds < RATE_LIMIT_BUDGET_S, run.explain()
    assert len(refused) >= 2  # the CLI retried, within its bound
    assert not (ws / "hello.txt").exists()


@pytest.mark.parametrize("agent", AGENTS)
def test_hang_prints_no_answer_until_killed(agent: str, tmp_path: Path) -> None:
    binary(agent)
    ws = workspace(tmp_path, "ws")
    with rehearsal("hang") as r:
        started = time.monotonic()
        proc = spawn(r, agent, "Create hello.txt containing hi", ws, step="stuck")
        try:
            deadline = started + 60
            while not any(q.fault == "hang" for q in r.requests_for(agent=agent)):
                assert proc.poll() is None, f"{agent} exited early: {proc.communicate()}"
                assert time.monotonic() < deadline, f"{agent} never reached the model"
                time.sleep(0.1)
            time.sleep(1.5)  # the model is silent; so must the CLI be
            assert proc.poll() is None, f"{agent} gave up on a hung model by itself"
        finally:
            kill_group(proc)
            out, err = proc.communicate()
        run = Run(agent, proc.returncode, out, err, time.monotonic() - started)
    assert run.returncode == -signal.SIGKILL
    assert not finished(run), run.explain()
    assert not (ws / "hello.txt").exists()


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
