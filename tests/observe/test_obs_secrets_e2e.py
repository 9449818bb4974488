"""End to end: secrets planted in the environment and in agent output appear in no artifact.

A real workflow runs through :func:`orchestrator_nb.workflow.arun` with the ``command`` driver and
a small script that prints secrets (to stdout and stderr, and in an error message); the engine
attaches the logs, metrics and audit subscribers itself. Then every file under
``.orchestrator/`` and every rendered form of the result is searched.

Every artifact is checked: logs, audit trail, run journal, raw agent streams, the step cache,
rendered results and error messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import orchestrator_nb.audit
from orchestrator_nb.config import AgentConfig, Settings, load_settings
from orchestrator_nb.workflow import WorkflowResult, arun
from orchestrator_nb.workflow.models import Workflow

# Fake values in real formats; none of them is a working credential.
ENV_TOKEN = "ghp_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"  # env var named like a token
ENV_PASSWORD = "correct-horse-battery-staple-42"  # no known format: caught by its name only
ANT_KEY = "sk-ant-api03-" + "Zx9Yq8Wp7Vo6Un5Tm4Sl3Rk2Qj1Pi0OhAAAA"  # only in agent output
SECRETS = (ENV_TOKEN, ENV_PASSWORD, ANT_KEY)

LEAKY_CLI = f"""
import os, sys
prompt = sys.argv[1]
token, password = os.environ["MY_SERVICE_TOKEN"], os.environ["MY_DB_PASSWORD"]
if "FAIL" in prompt:
    print("Error: upstream refused token " + token, file=sys.stderr)
    sys.exit(1)
print("found a key in .env: " + {ANT_KEY!r})
print("the service token is " + token + " and the password " + password)
print("debug: using " + token, file=sys.stderr)
"""

WORKFLOW = """
steps:
  - {id: leak, agent: leaky, prompt: "LEAK {{ task }}", cache: true}
  - {id: relay, agent: leaky, prompt: "RELAY {{ steps.leak.text }}"}
  - {id: broken, agent: leaky, prompt: "FAIL now", optional: true}
"""


@dataclass
class Run:
    workspace: Path
    result: WorkflowResult
    console: str

    @property
    def state(self) -> Path:
        return self.workspace / ".orchestrator"

    def files(self, kind: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for path in sorted(self.state.rglob("*")):
            rel = path.relative_to(self.state).as_posix()
            if path.is_file() and _kind(rel) == kind:
                out[rel] = path.read_bytes().decode("utf-8", errors="replace")
        return out


def _kind(rel: str) -> str:
    """Which module wrote a file under .orchestrator/ (and so who fixes a leak in it)."""
    parts = rel.split("/")
    if parts[0] == "logs":
        return "logs"
    if parts[0].startswith("audit"):
        return "audit"
    if parts[0] == "runs" and "agents" in parts:
        return "agent-stream-logs"
    if parts[0] == "runs" and parts[-1] == "steps.jsonl":
        return "journal-steps"
    if parts[0] == "runs":
        return "journal-meta"
    if parts[0] == "cache":
        return "cache"
    return "other"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("secrets")
    workspace = root / "ws"
    workspace.mkdir()
    script = root / "leaky_cli.py"
    script.write_text(LEAKY_CLI)
    argv = [sys.executable, str(script), "{prompt}"]
    agent = AgentConfig(driver="command", argv=argv, retries=0, retry_wait=0, timeout=60)
    settings = Settings(
        agents={"leaky": agent},
        workflows={"flow": Workflow.model_validate(yaml.safe_load(WORKFLOW))},
        limits=load_settings(cwd=workspace).limits,
    )
    console = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(console):
        mp.setenv("MY_SERVICE_TOKEN", ENV_TOKEN)
        mp.setenv("MY_DB_PASSWORD", ENV_PASSWORD)
        # No subscribers passed: every run logs, counts and audits by itself.
        result = asyncio.run(arun("look around", "flow", workspace=workspace, config=settings))
        yield Run(workspace, result, console.getvalue())


def _leaked(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def test_the_secrets_really_went_through(run: Run) -> None:
    # Without this the other tests could pass for the wrong reason.
    assert run.result.ok, run.result.error
    assert set(_leaked(run.result.step("leak").text)) == set(SECRETS)
    assert not run.result.step("broken").ok
    assert "step_failed" in run.console


@pytest.mark.parametrize(
    "kind",
    [
        "logs",
        "audit",
        "journal-meta",
        "other",
        "journal-steps",
        "agent-stream-logs",
        "cache",
    ],
)
def test_no_secret_in_state_files(run: Run, kind: str) -> None:
    files = run.files(kind)
    if kind in ("logs", "audit"):
        assert files, f"no {kind} written"
    leaks = {name: _leaked(text) for name, text in files.items() if _leaked(text)}
    assert not leaks, leaks


def test_own_artifacts_show_the_redaction(run: Run) -> None:
    logs = "".join(run.files("logs").values())
    audit = "".join(run.files("audit").values())
    for text in (logs, audit):
        assert "[REDACTED:MY_SERVICE_TOKEN]" in text  # the failed step's error message
    assert '"task_executed"' in logs
    assert orchestrator_nb.audit.verify(run.state / "audit.jsonl").ok


def test_no_secret_on_the_console(run: Run) -> None:
    assert run.console and not _leaked(run.console)


@pytest.mark.parametrize(
    "form",
    [
        "workflow-str",
        "workflow-mimebundle",
        "step-str",
        "step-mimebundle",
        "error-message",
    ],
)
def test_no_secret_in_rendered_output(run: Run, form: str) -> None:
    result = run.result
    step = result.step("leak") if form.startswith("step") else result.step("broken")
    rendered = {
        "workflow-str": lambda: str(result),
        "workflow-mimebundle": lambda: "".join(result._repr_mimebundle_().values()),
        "step-str": lambda: str(step),
        "step-mimebundle": lambda: "".join(step._repr_mimebundle_().values()),
        "error-message": lambda: str(step.error),
    }[form]()
    assert not _leaked(rendered), form
