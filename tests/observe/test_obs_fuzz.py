"""Fuzzing: loaders, parsers and validators raise only the project's typed errors.

Each target gets random text (anything at all) and random structured input shaped like what it
expects (YAML documents with the real keys, JSON lines with the CLIs' real field names), so the
search reaches past the first syntax check into validation and parsing.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator_nb import parse_transcript
from orchestrator_nb.config import Settings, load_settings
from orchestrator_nb.errors import OrchestratorError
from orchestrator_nb.rehearsal import load_scenario, parse_scenario
from orchestrator_nb.workspace import check_relpath

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)


def documents(keys: list[str]) -> st.SearchStrategy[Any]:
    """Nested JSON/YAML-like values whose mapping keys are mostly the real ones."""
    key = st.sampled_from(keys) | st.text(max_size=8)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(key, inner, max_size=5),
        max_leaves=25,
    )


SETTINGS_KEYS = [
    *Settings.model_fields,
    "claude",
    "codex",
    "default",
    "driver",
    "argv",
    "timeout",
    "retries",
    "env",
    "steps",
    "id",
    "agent",
    "kind",
    "prompt",
    "loop",
    "parallel",
    "max_iterations",
    "budget",
    "max_concurrency",
    "per_agent",
    "then",
    "else",
    "when",
]
SCENARIO_KEYS = [
    "name",
    "description",
    "settings",
    "turns",
    "reply",
    "text",
    "actions",
    "write",
    "edit",
    "path",
    "content",
    "fault",
    "status",
    "usage",
    "input_tokens",
    "output_tokens",
    "agent",
    "match",
    "tool",
    "times",
]
STREAM_KEYS = [
    "type",
    "subtype",
    "message",
    "content",
    "text",
    "delta",
    "usage",
    "session_id",
    "sessionId",
    "thread_id",
    "item",
    "result",
    "error",
    "is_error",
    "role",
    "id",
    "name",
    "input",
    "status",
    "total_cost_usd",
    "model",
    "stats",
    "data",
    "tool_use_id",
    "input_tokens",
    "output_tokens",
    "changes",
    "path",
    "kind",
]


def _yaml_text(value: Any) -> str:
    return yaml.safe_dump(value, allow_unicode=True)


def _only_typed_errors(call: Any, *args: Any, **kwargs: Any) -> None:
    # The contract: anything other than an OrchestratorError propagates and fails the test.
    with contextlib.suppress(OrchestratorError):
        call(*args, **kwargs)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(text=st.text(max_size=300) | documents(SETTINGS_KEYS).map(_yaml_text))
def test_load_settings_random_yaml(scratch: Path, text: str) -> None:
    path = scratch / "orchestrator.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _only_typed_errors(load_settings, path)


@FUZZ
@given(
    data=st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
    | st.sampled_from([b"{agents: [", b"agents: !!python/object:os.system x", b"- - -", b"\t:"])
)
def test_load_settings_random_bytes(scratch: Path, data: bytes) -> None:
    path = scratch / "bytes.yaml"
    path.write_bytes(data)
    _only_typed_errors(load_settings, path)


NOT_UTF8 = [b"\xff\xfe garbage", b"agents:\n  a: {driver: \xe9}\n"]


@pytest.mark.parametrize("data", NOT_UTF8)
def test_load_settings_not_utf8(scratch: Path, data: bytes) -> None:
    path = scratch / "latin1.yaml"
    path.write_bytes(data)
    _only_typed_errors(load_settings, path)


@pytest.mark.parametrize("data", NOT_UTF8)
def test_load_scenario_not_utf8(scratch: Path, data: bytes) -> None:
    path = scratch / "latin1-scenario.yaml"
    path.write_bytes(data)
    _only_typed_errors(load_scenario, path)


stream_lines = st.lists(
    st.text(max_size=80) | documents(STREAM_KEYS).map(lambda v: json.dumps(v, allow_nan=True)),
    max_size=12,
)


@pytest.mark.parametrize("agent", ["claude", "codex", "gemini", "copilot"])
@FUZZ
@given(
    lines=stream_lines,
    exit_code=st.none() | st.integers(-300, 300),
    stderr=st.text(max_size=100),
)
def test_parse_transcript_random_lines(
    agent: str, lines: list[str], exit_code: int | None, stderr: str
) -> None:
    _only_typed_errors(
        parse_transcript, agent, lines, exit_code=exit_code, stderr=stderr, config=Settings()
    )


PATH_PARTS = [".", "..", "", "a", ".git", ".GIT.", ".orchestrator", "~", "C:", "\\", "\x00"]
PATH_PARTS += ["\n", "\u2215", "\uff0e\uff0e", "\u202e", "\udc80", "x" * 300, "é", " "]
path_parts = st.sampled_from(PATH_PARTS)


@FUZZ
@given(path=st.text(max_size=120) | st.lists(path_parts, max_size=8).map("/".join))
def test_check_relpath_random_paths(path: str) -> None:
    _only_typed_errors(check_relpath, path)


@FUZZ
@given(text=st.text(max_size=300) | documents(SCENARIO_KEYS).map(_yaml_text))
def test_parse_scenario_random_yaml(text: str) -> None:
    _only_typed_errors(parse_scenario, text)
