"""The Rehearsal object: isolated HOME, per-CLI environment and flags, lifecycle."""

from __future__ import annotations

import importlib
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator_nb.errors import RehearsalError
from orchestrator_nb.rehearsal import AGENTS, DROP_ENV, Rehearsal, parse_scenario, rehearsal

REAL_CREDENTIALS = {
    "ANTHROPIC_API_KEY": "real-anthropic",
    "ANTHROPIC_AUTH_TOKEN": "real-token",
    "OPENAI_API_KEY": "real-openai",
    "GH_TOKEN": "real-gh",
    "GITHUB_TOKEN": "real-github",
    "COPILOT_GITHUB_TOKEN": "real-copilot",
    "GOOGLE_API_KEY": "real-google",
    "GEMINI_API_KEY": "real-gemini",
    "GOOGLE_APPLICATION_CREDENTIALS": "/real/adc.json",
    "CODEX_HOME": "/real/.codex",
    "XDG_CONFIG_HOME": "/real/.config",
    "HTTPS_PROXY": "http://proxy:3128",
}


@pytest.fixture
def r() -> Iterator[Rehearsal]:
    with rehearsal("write-file", package_cache=None) as reh:
        yield reh


def test_home_is_isolated_and_prepared(r: Rehearsal) -> None:
    settings = json.loads((r.home / ".gemini" / "settings.json").read_text())
    assert settings["security"] == {"auth": {"selectedType": "gemini-api-key"}}
    assert "maxAttempts" not in settings["general"]  # write-file keeps the CLIs' own retries
    assert (r.home / ".gitconfig").read_text().startswith("[user]")
    assert r.home != Path.home()
    assert r.url.startswith("http://127.0.0.1:")


def test_env_per_agent(r: Rehearsal) -> None:
    claude = r.env("claude", "implement")
    assert claude["HOME"] == str(r.home)
    assert claude["ANTHROPIC_BASE_URL"] == r.url + "/r/claude/implement"
    assert claude["ANTHROPIC_API_KEY"].startswith("rehearsal-claude-")
    assert claude["DISABLE_AUTOUPDATER"] == "1"
    assert claude["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    gemini = r.env("gemini")
    assert gemini["GOOGLE_GEMINI_BASE_URL"] == r.url + "/r/gemini/-"
    assert gemini["GEMINI_API_KEY"] and gemini["GEMINI_CLI_HOME"] == str(r.home)
    copilot = r.env("copilot", "review")
    assert copilot["COPILOT_OFFLINE"] == "true"
    assert copilot["COPILOT_PROVIDER_BASE_URL"] == r.url + "/r/copilot/review/v1"
    assert copilot["COPILOT_PROVIDER_TYPE"] == "openai"
    assert copilot["COPILOT_MODEL"] == "gpt-4.1"
    assert "COPILOT_PKG_CACHE_HOME" not in copilot  # package_cache=None keeps it in HOME
    codex = r.env("codex")
    assert codex["CODEX_HOME"] == str(r.home / ".codex")
    assert codex["ORCHESTRATOR_REHEARSAL_KEY"]
    for agent in AGENTS:
        assert r.env(agent)["NO_PROXY"].startswith("127.0.0.1")
        assert r.args(agent) == [] or agent == "codex"


def test_codex_args(r: Rehearsal) -> None:
    args = r.args("codex", "implement")
    flags = dict(a.split("=", 1) for a in args[1::2] if "=" in a)
    assert flags["model_provider"] == "rehearsal"
    assert flags["model_providers.rehearsal.base_url"] == r.url + "/r/codex/implement/v1"
    assert flags["model_providers.rehearsal.env_key"] == "ORCHESTRATOR_REHEARSAL_KEY"
    assert flags["model_providers.rehearsal.wire_api"] == "responses"
    assert args[-2:] == ["-m", "gpt-5.5"]
    assert not any("max_retries" in a for a in args)


def test_cli_max_retries_reaches_every_cli() -> None:
    with rehearsal("rate-limit", package_cache=None) as reh:
        assert reh.cli_max_retries == 1
        assert reh.env("claude")["CLAUDE_CODE_MAX_RETRIES"] == "1"
        args = reh.args("codex")
        assert "model_providers.rehearsal.request_max_retries=1" in args
        assert "model_providers.rehearsal.stream_max_retries=1" in args
        settings = json.loads((reh.home / ".gemini" / "settings.json").read_text())
        assert settings["general"]["maxAttempts"] == 2
    with rehearsal("rate-limit", cli_max_retries=0, package_cache=None) as reh:
        assert reh.env("claude")["CLAUDE_CODE_MAX_RETRIES"] == "0"


def test_drop_env_removes_real_credentials(r: Rehearsal) -> None:
    assert {
        "OPENAI_API_KEY",
        "GH_TOKEN",
        "GITHUB_TOKEN",
        "COPILOT_GITHUB_TOKEN",
        "GOOGLE_API_KEY",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "CODEX_HOME",
        "XDG_CONFIG_HOME",
        "ANTHROPIC_AUTH_TOKEN",
    } <= r.drop_env
    assert r.drop_env == DROP_ENV
    base = {**REAL_CREDENTIALS, "PATH": "/usr/bin", "LANG": "C.UTF-8"}
    for agent in AGENTS:
        env = r.subprocess_env(agent, base=base)
        assert env["PATH"] == "/usr/bin" and env["LANG"] == "C.UTF-8"
        leaked = {k: v for k, v in env.items() if v in REAL_CREDENTIALS.values()}
        assert leaked == {}, f"{agent} leaks {leaked}"
        # What the runner is told to drop really is absent unless the rehearsal sets it.
        for name in REAL_CREDENTIALS:
            assert name not in env or env[name] == r.env(agent)[name]


def test_subprocess_env_defaults_to_os_environ(
    r: Rehearsal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GH_TOKEN", "real-gh")
    monkeypatch.setenv("SOME_TOOL_SETTING", "kept")
    env = r.subprocess_env("copilot")
    assert "GH_TOKEN" not in env and env["SOME_TOOL_SETTING"] == "kept"


def test_unknown_agent_and_closed_rehearsal() -> None:
    reh = rehearsal("write-file", package_cache=None)
    with pytest.raises(RehearsalError, match="unknown agent 'cursor'"):
        reh.env("cursor")
    home = reh.home
    reh.close()
    assert not home.exists()
    with pytest.raises(RehearsalError, match="closed"):
        reh.args("codex")
    assert "closed" in repr(reh)


def test_the_real_home_is_refused() -> None:
    with pytest.raises(RehearsalError, match="HOME of its own"):
        rehearsal("write-file", home=Path.home(), package_cache=None)


def test_given_home_is_kept(tmp_path: Path) -> None:
    with rehearsal("write-file", home=tmp_path / "h", package_cache=None) as reh:
        assert reh.home == tmp_path / "h"
    assert (tmp_path / "h" / ".gemini" / "settings.json").exists()


def test_shared_package_cache(tmp_path: Path) -> None:
    with rehearsal("write-file", package_cache=tmp_path / "cache") as reh:
        assert reh.env("copilot")["COPILOT_PKG_CACHE_HOME"] == str(tmp_path / "cache" / "copilot")


def test_workspace_resolves_paths_when_the_request_names_no_cwd(tmp_path: Path) -> None:
    scenario = parse_scenario(
        "turns:\n  - actions:\n      - write: {path: out/a.txt, content: x}\n", default_name="ws"
    )
    with rehearsal(scenario, workspace=tmp_path, package_cache=None) as reh:
        assert reh.workspace == tmp_path.resolve()
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": "go"}],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "create",
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "path": {"type": "string"},
                                "file_text": {"type": "string"},
                            },
                        },
                    },
                }
            ],
        }
        req = urllib.request.Request(
            reh.base_url("copilot") + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            answer = json.loads(resp.read())
        call = answer["choices"][0]["message"]["tool_calls"][0]["function"]
        assert json.loads(call["arguments"])["path"] == str(tmp_path.resolve() / "out" / "a.txt")
        assert reh.requests[0].cwd == str(tmp_path.resolve())
        # A run can register its own working directory (parallel worktrees differ).
        run_ws = tmp_path / "worktree"
        reh.env("copilot", "branch-a", workspace=run_ws)
        req = urllib.request.Request(
            reh.base_url("copilot", "branch-a") + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            answer = json.loads(resp.read())
        call = answer["choices"][0]["message"]["tool_calls"][0]["function"]
        assert json.loads(call["arguments"])["path"] == str(run_ws.resolve() / "out" / "a.txt")


async def test_async_with() -> None:
    async with rehearsal("hang", package_cache=None) as reh:
        assert reh.url
        assert os.path.isdir(reh.home)
    assert reh.closed


def test_scenario_model_overrides(tmp_path: Path) -> None:
    scenario = parse_scenario(
        "settings:\n  models: {codex: gpt-x, claude: claude-y, gemini: gem-z, copilot: gpt-c}\n"
    )
    with rehearsal(scenario, package_cache=None) as reh:
        assert reh.args("codex")[-2:] == ["-m", "gpt-x"]
        assert reh.env("claude")["ANTHROPIC_MODEL"] == "claude-y"
        assert reh.env("gemini")["GEMINI_MODEL"] == "gem-z"
        assert reh.env("copilot")["COPILOT_MODEL"] == "gpt-c"


def test_forgotten_rehearsal_is_cleaned_up_when_collected() -> None:
    import gc

    reh = rehearsal("write-file", package_cache=None)
    home, url = reh.home, reh.url
    del reh
    gc.collect()
    assert not home.exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


def test_exported_names() -> None:
    # The package also exports a function named `rehearsal`: ask for the module itself.
    package = importlib.import_module("orchestrator_nb.rehearsal")

    assert all(hasattr(package, name) for name in package.__all__)
    assert {"rehearsal", "Rehearsal", "Scenario", "load_scenario", "RecordedRequest"} <= set(
        package.__all__
    )
