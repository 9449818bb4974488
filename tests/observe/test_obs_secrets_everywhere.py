"""Secrets planted everywhere are found nowhere: files, exports, views, /metrics, the journal.

Secrets sit in the environment (an OpenAI key, a service token, a database password), are
registered (``orchestrator_nb.secrets.add``), come from the settings' ``secrets:`` list and from an
agent's ``env:``; they are typed into the task and printed by a real subprocess agent: whole, split
across writes (stream chunks), straddling the 1 MiB raw-log cut, in an error message, in a file it
writes (a diff) and in the model name. Everything the project wrote or showed is then searched for
each secret and for every 12-character window of it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

import orchestrator_nb
from orchestrator_nb.config import AgentConfig, Settings, load_settings
from orchestrator_nb.errors import WorkspaceError
from orchestrator_nb.lifecycle import LifecycleEvent
from orchestrator_nb.notebook.export import export_session
from orchestrator_nb.notebook.live import LiveDisplay
from orchestrator_nb.observe.metrics import get_metrics, metrics_table
from orchestrator_nb.observe.redact import Redactor, StreamRedactor
from orchestrator_nb.sessions import Session
from orchestrator_nb.workflow import WorkflowResult, arun
from orchestrator_nb.workflow.api import aresume
from orchestrator_nb.workflow.models import Workflow

# Fake values; none is a working credential.
OPENAI = "sk-proj-" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0UvWx"
TOKEN = "svc7f3a9b2c4d5e6f708192a3b4c5d6"  # no known format: caught by its name only
PASSWORD = 'hunter2-Correct&Horse"Staple'  # escapes differently in HTML and JSON
REGISTERED = "reg1stered-Value-9f8e7d6c5b"  # orchestrator_nb.secrets.add
LISTED = "listed-by-settings-41a2b3c4"  # named in settings.secrets
AGENT_ENV = "agent-env-value-77c6d5e4f3"  # an agent's env:
MODEL = "model-" + "Qz8Xw7Vu6Ts5Rq4Po3"  # the model name is a secret too
ENV = {"OPENAI_API_KEY": OPENAI, "MY_SERVICE_TOKEN": TOKEN, "DB_PASSWORD": PASSWORD}
SECRETS = (OPENAI, TOKEN, PASSWORD, REGISTERED, LISTED, AGENT_ENV, MODEL)

CLI = r"""
import os, sys, time
prompt, model = sys.argv[1], sys.argv[2]
env = os.environ
values = [env["OPENAI_API_KEY"], env["MY_SERVICE_TOKEN"], env["DB_PASSWORD"], env["INTERNAL_ID"],
          env["AGENT_SECRET"], sys.argv[3], model]
if "FAIL" in prompt:
    print("Error: upstream refused " + " ".join(values), file=sys.stderr)
    sys.exit(3)
out = sys.stdout.buffer
for v in values:
    out.write(("whole: " + v + "\n").encode()); out.flush()
    for piece in (v[:5], v[5:13], v[13:]):  # the secret in three writes
        out.write(piece.encode()); out.flush(); time.sleep(0.01)
    out.write(b"\n"); out.flush()
# A line longer than the 1 MiB cut, with a secret straddling it.
cut = (1 << 20) - 10
out.write(b"x" * cut + env["MY_SERVICE_TOKEN"].encode() + b" tail\n"); out.flush()
with open("notes.txt", "w") as f:
    f.write("the token is " + env["MY_SERVICE_TOKEN"] + "\n")
print("echo of the task: " + prompt)
"""

WORKFLOW = """
steps:
  - {id: leak, agent: leaky, prompt: "{{ task }}"}
  - {id: broken, agent: leaky, prompt: "FAIL now", optional: true}
"""


def windows(secret: str, size: int = 12) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)] or [secret]


def leaks(text: str) -> list[str]:
    return sorted({s for s in SECRETS for w in windows(s) if w in text})


class Sink:
    """A live display sink that keeps every message it was given, updates included."""

    live = True

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []

    def show(self, display_id: str, bundle: dict[str, str]) -> None:
        self.messages.append(dict(bundle))

    def update(self, display_id: str, bundle: dict[str, str]) -> None:
        self.messages.append(dict(bundle))


@dataclass
class World:
    root: Path
    workspace: Path
    settings: Settings
    result: WorkflowResult
    sink: Sink
    events: list[LifecycleEvent] = field(default_factory=list)


def _settings(root: Path, workspace: Path) -> Settings:
    script = root / "leaky_cli.py"
    script.write_text(CLI)
    argv = [sys.executable, str(script), "{prompt}", "{model}", REGISTERED]
    agent = AgentConfig(
        driver="command",
        argv=argv,
        model=MODEL,
        env={"AGENT_SECRET": AGENT_ENV},
        retries=0,
        retry_wait=0,
        timeout=120,
    )
    return Settings(
        agents={"leaky": agent},
        workflows={"flow": Workflow.model_validate(yaml.safe_load(WORKFLOW))},
        limits=load_settings(cwd=workspace).limits,
        secrets=["INTERNAL_ID"],
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("everywhere")
    workspace = root / "ws"
    workspace.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in ENV.items():
            mp.setenv(name, value)
        mp.setenv("INTERNAL_ID", LISTED)
        orchestrator_nb.secrets.add(REGISTERED, MODEL)  # a model name the user says is secret
        settings = _settings(root, workspace)
        sink = Sink()
        live = LiveDisplay(sink)
        task = f"use {TOKEN} and {OPENAI} to check the service"
        result = asyncio.run(
            arun(task, "flow", workspace=workspace, config=settings, subscribers=[live])
        )
        live.close()
        yield World(root, workspace, settings, result, sink)


def test_the_secrets_really_went_through(world: World) -> None:
    # Without this the searches below could pass for the wrong reason.
    assert world.result.ok, world.result.error
    raw = world.result.step("leak").text
    assert {OPENAI, TOKEN, PASSWORD, REGISTERED, LISTED, AGENT_ENV, MODEL} <= {
        s for s in SECRETS if s in raw
    }
    assert TOKEN in (world.workspace / "notes.txt").read_text()


def test_no_secret_in_any_state_file(world: World) -> None:
    state = world.workspace / ".orchestrator"
    found = {}
    for path in sorted(state.rglob("*")):
        if not path.is_file() or "objects" in path.relative_to(state).parts:
            continue  # the object store keeps exact copies of the user's own files
        hit = leaks(path.read_bytes().decode("utf-8", "replace"))
        if hit:
            found[path.relative_to(state).as_posix()] = hit
    assert not found, found
    streams = list(state.rglob("stdout.log"))
    assert streams and any("[REDACTED:MY_SERVICE_TOKEN]" in p.read_text() for p in streams)


def test_no_secret_in_any_live_display_message(world: World) -> None:
    assert len(world.sink.messages) > 1
    found = [leaks(json.dumps(m, ensure_ascii=False)) for m in world.sink.messages]
    assert not any(found), [f for f in found if f]


@pytest.mark.parametrize("fmt", ["json", "md", "ipynb"])
def test_no_secret_in_an_export(world: World, tmp_path: Path, fmt: str) -> None:
    session = Session.create("s")
    turn = session.begin_turn(f"use {TOKEN}", workflow="flow", workspace=world.workspace)
    for step in world.result.steps:
        session.record_step(turn, step)
    session.finish_turn(turn, "ok", error=f"failed with {PASSWORD}")
    target, _ = export_session(session, tmp_path / f"out.{fmt}")
    text = target.read_text(encoding="utf-8")
    assert "[REDACTED:" in text
    assert not leaks(text), fmt


def test_no_secret_in_rendered_result_or_metrics(world: World) -> None:
    result = world.result
    views = [str(result), json.dumps(result._repr_mimebundle_(), ensure_ascii=False)]
    views.append(result.summary())
    views.append(get_metrics().exposition().decode())
    views.append(str(metrics_table()))
    for view in views:
        assert not leaks(view)
    assert str(result.step("broken").error) and not leaks(str(result.step("broken").error))


def test_resume_expands_an_environment_secret_from_the_same_environment(world: World) -> None:
    run_dir = world.workspace / ".orchestrator" / "runs" / world.result.run_id
    meta = json.loads((run_dir / "run.json").read_text())
    assert "${MY_SERVICE_TOKEN}" in meta["task"] and "${OPENAI_API_KEY}" in meta["task"]
    with pytest.MonkeyPatch.context() as mp:
        for name, value in ENV.items():
            mp.setenv(name, value)
        mp.setenv("INTERNAL_ID", LISTED)
        again = asyncio.run(
            aresume(world.result.run_id, workspace=world.workspace, config=world.settings)
        )
        # The task came back whole (the journal's step texts are redacted, not the task).
        assert again.ok and again.task == world.result.task and TOKEN in again.task
        mp.delenv("MY_SERVICE_TOKEN")
        with pytest.raises(WorkspaceError, match=r"MY_SERVICE_TOKEN.*not set"):
            asyncio.run(
                aresume(world.result.run_id, workspace=world.workspace, config=world.settings)
            )


def test_a_typed_key_is_stored_redacted_and_resume_asks_for_the_task(tmp_path: Path) -> None:
    from orchestrator_nb.workflow.journal import RunJournal

    typed = "ghp_" + "TypedNotInEnv0123456789abcdefABCDEF"
    journal = RunJournal(tmp_path / ".orchestrator" / "runs", "r1")
    journal.start({"task": f"push with {typed}", "workflow": "flow"})
    assert typed[4:16] not in (journal.dir / "run.json").read_text()
    with pytest.raises(WorkspaceError, match="cannot resume") as info:
        journal.task()
    assert "task" in (info.value.hint or "")


@pytest.mark.parametrize("size", [1, 3, 7, 64, 4096])
def test_a_stream_split_anywhere_never_shows_a_piece(size: int) -> None:
    r = Redactor(ENV)
    r.add(REGISTERED)
    text = "".join(f"line {i}: {s} ok\n" for i, s in enumerate(SECRETS * 5))
    text += "ghp_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"  # a key format at the very end
    stream = StreamRedactor(r)
    out = "".join(stream.feed(text[i : i + size]) for i in range(0, len(text), size))
    out += stream.flush()
    assert out == r.redact(text)
    assert not [s for s in (OPENAI, TOKEN, PASSWORD, REGISTERED) for w in windows(s) if w in out]


def test_live_text_that_ends_in_part_of_a_secret_hides_that_part() -> None:
    r = Redactor(ENV)
    for cut in range(1, len(TOKEN)):
        shown = r.redact_live("the token is " + TOKEN[:cut])
        assert shown.startswith("the token is") and TOKEN[: max(cut, 1)] not in shown[12:]


def test_common_and_short_values_are_not_secrets() -> None:
    r = Redactor({"FEATURE_TOKEN": "true", "DEBUG_KEY": "1", "USE_TOKEN": "disabled"})
    assert r.redact("true 1 disabled") == "true 1 disabled"


def test_an_error_shows_no_secret_in_message_hint_note_or_repr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pickle

    from orchestrator_nb.errors import AgentFailed

    monkeypatch.setenv("MY_SERVICE_TOKEN", TOKEN)
    exc = AgentFailed(f"refused {TOKEN}", agent="x", hint=f"check {TOKEN}", argv=["cli", TOKEN])
    exc.hint = f"or set {TOKEN} again"
    if sys.version_info >= (3, 11):
        exc.add_note(f"while sending {TOKEN}")
        assert "[REDACTED:MY_SERVICE_TOKEN]" in exc.__notes__[0]
    again = pickle.loads(pickle.dumps(exc))
    notes = str(getattr(exc, "__notes__", ""))
    for shown in (str(exc), repr(exc), notes, str(exc.argv), str(again), repr(again)):
        assert not leaks(shown), shown


def test_the_settings_secrets_list_and_agent_env_are_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator_nb.observe.redact import redact

    listed, literal = "listed-in-yaml-0a1b2c3d4e", "agent-literal-9z8y7x6w5v"
    monkeypatch.setenv("SERVICE_URL_WITH_CREDS", listed)  # a name that does not look secret
    config = tmp_path / "settings.yaml"
    config.write_text(
        "secrets: [SERVICE_URL_WITH_CREDS]\n"
        f"agents:\n  mytool:\n    driver: command\n    argv: [mytool, '{{prompt}}']\n"
        f"    env: {{MYTOOL_SETTING: {literal}, MYTOOL_FLAG: 'true'}}\n"
    )
    settings = load_settings(config)
    assert settings.secrets == ["SERVICE_URL_WITH_CREDS"]
    shown = redact(f"url={listed} setting={literal} flag=true")
    assert shown == (
        "url=[REDACTED:SERVICE_URL_WITH_CREDS] setting=[REDACTED:MYTOOL_SETTING] flag=true"
    )


@pytest.mark.parametrize("size", [1, 5, 64, 65536])
def test_a_raw_log_masks_pieces_a_cli_wrote_as_separate_json_lines(size: int) -> None:
    # gemini and copilot write each delta as its own JSON line: the value is never whole there.
    r = Redactor(ENV)
    lines = "".join(
        json.dumps({"type": "delta", "content": piece}) + "\n"
        for secret in (OPENAI, TOKEN, PASSWORD)
        for piece in (secret[:14], secret[14:])
    )
    stream = r.stream(fragments=True)
    out = "".join(stream.feed(lines[i : i + size]) for i in range(0, len(lines), size))
    out += stream.flush()
    assert out.count("[REDACTED:") == 6 and out.count('"type": "delta"') == 6
    assert not [s for s in (OPENAI, TOKEN, PASSWORD) for w in windows(s, 10) if w in out]
