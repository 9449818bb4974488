"""Configuration loading: layers, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator_nb.config import agent_config, load_settings
from orchestrator_nb.errors import ConfigError


def test_shipped_agents_are_the_four_clis_and_their_acp_forms() -> None:
    settings = load_settings(cwd="/nonexistent-folder")
    cli = ["claude", "codex", "copilot", "gemini"]
    assert sorted(settings.agents) == sorted(cli + [f"{name}-acp" for name in cli])
    assert settings.agents["claude"].permission_mode == "acceptEdits"
    for name in cli:
        acp = settings.agents[f"{name}-acp"]
        assert (acp.driver, acp.provider) == ("acp", name) and acp.argv


def test_user_file_overrides_and_adds_agents(tmp_path: Path) -> None:
    (tmp_path / "orchestrator.yaml").write_text(
        "agents:\n"
        "  claude:\n"
        "    model: claude-opus-4-1\n"
        "  echo:\n"
        "    driver: command\n"
        "    argv: [echo, '{prompt}']\n"
    )
    settings = load_settings(cwd=tmp_path, trust=True)
    assert settings.agents["claude"].model == "claude-opus-4-1"
    assert settings.agents["claude"].permission_mode == "acceptEdits"  # kept from the defaults
    assert settings.agents["echo"].argv == ["echo", "{prompt}"]
    assert settings.sources[-1].endswith("orchestrator.yaml")


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "custom.yaml"
    path.write_text("agents:\n  claude:\n    driver: claude\n    timeuot: 5\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    err = info.value
    assert err.path == str(path) and err.line == 4 and err.key == "agents.claude.timeuot"
    assert "unknown key" in str(err) and f"{path}:4" in str(err)


def test_bad_value_lists_accepted_values(tmp_path: Path) -> None:
    path = tmp_path / "custom.yaml"
    path.write_text("agents:\n  mine:\n    driver: command\n    prompt_via: pipe\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.line == 4
    assert "'arg' or 'stdin'" in str(info.value)


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "custom.yaml"
    path.write_text("agents:\n  claude: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.path == str(path) and info.value.line is not None


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")


def test_unknown_agent_lists_known_ones() -> None:
    settings = load_settings(cwd="/nonexistent-folder")
    with pytest.raises(ConfigError, match=r"known: claude, claude-acp, codex, codex-acp, copilot"):
        agent_config(settings, "clade")


def test_a_workflow_naming_an_unknown_agent_is_refused_when_loaded(tmp_path: Path) -> None:
    (tmp_path / "orchestrator.yaml").write_text(
        "workflows:\n"
        "  fix:\n"
        "    steps:\n"
        "      - {id: write, agent: codex}\n"
        "      - id: again\n"
        "        kind: loop\n"
        "        steps:\n"
        "          - id: check\n"
        "            agent: claud\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(cwd=tmp_path, trust=True)
    err = info.value
    assert str(err).startswith(f"{tmp_path / 'orchestrator.yaml'}:9")
    assert "workflow 'fix', step 'check': unknown agent 'claud' (known: claude, claude-acp" in str(
        err
    )
    assert err.key == "workflows.fix.steps.1.steps.0.agent"
    assert "add 'claud' under `agents:`" in str(err)
    # The same workflow with the agent defined beside it loads.
    (tmp_path / "orchestrator.yaml").write_text(
        "agents:\n  claud: {driver: command, argv: [echo, '{prompt}']}\n"
        "workflows:\n  fix:\n    steps:\n      - {id: check, agent: claud}\n"
    )
    assert "fix" in load_settings(cwd=tmp_path, trust=True).workflows
