"""The rehearsal endpoint: plain picklable data, and any driver rehearsed through its own hook."""

from __future__ import annotations

import dataclasses
import pickle
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator_nb._sync import run_sync
from orchestrator_nb.agents.base import ProviderEnv
from orchestrator_nb.agents.command import CommandDriver
from orchestrator_nb.agents.registry import default_registry
from orchestrator_nb.api import arun_agent
from orchestrator_nb.config import AgentConfig, Settings
from orchestrator_nb.errors import RehearsalError
from orchestrator_nb.rehearsal import parse_scenario, rehearsal
from orchestrator_nb.rehearsal.endpoint import RehearsalEndpoint, provider_settings

SCENARIO = """
name: chat
turns:
  - words: hello
    usage: {input: 30, output: 4}
    say: Hello from the rehearsal server.
default:
  say: Nothing scripted for this prompt.
"""

# A CLI of nobody's: one OpenAI Chat Completions call to the URL and key its driver was given.
CHAT_CLI = textwrap.dedent(
    """
    import json, os, sys, urllib.request
    body = {"model": "any", "stream": True,
            "messages": [{"role": "user", "content": sys.argv[1]}]}
    request = urllib.request.Request(
        os.environ["CHAT_BASE_URL"] + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + os.environ["CHAT_API_KEY"],
                 "Content-Type": "application/json"},
    )
    text = []
    with urllib.request.urlopen(request, timeout=30) as response:
        for line in response:
            line = line.decode().strip()
            if line.startswith("data: {"):
                for choice in json.loads(line[6:]).get("choices", []):
                    text.append((choice.get("delta") or {}).get("content") or "")
    print("".join(text))
    """
)


class ChatDriver(CommandDriver):
    """A third party's driver: its CLI reads CHAT_BASE_URL and CHAT_API_KEY."""

    def provider_env(self, endpoint: RehearsalEndpoint, step: str | None) -> ProviderEnv:
        url, key = endpoint.base_url(self.name, step), endpoint.key(self.name)
        return ProviderEnv({"CHAT_BASE_URL": url, "CHAT_API_KEY": key})


class NoHookDriver(CommandDriver):
    provider_env = None  # type: ignore[assignment]  # written before the hook existed


def test_the_endpoint_is_frozen_picklable_data(tmp_path: Path) -> None:
    with rehearsal(parse_scenario(SCENARIO), package_cache=None) as r:
        endpoint = r.endpoint
        copy = pickle.loads(pickle.dumps(endpoint))
        assert copy == endpoint
        assert copy.url == r.url and copy.home == str(r.home)
        assert copy.key("claude") == r.env("claude")["ANTHROPIC_API_KEY"]
        assert copy.drop_env == r.drop_env
        with pytest.raises(dataclasses.FrozenInstanceError):
            endpoint.url = "http://elsewhere"  # type: ignore[misc]
        # The same variables from the copy as from the running rehearsal: nothing is lost.
        from orchestrator_nb.agents.claude import ClaudeDriver

        assert dict(provider_settings(copy, ClaudeDriver(), "s").env) == r.env("claude", "s")
    with pytest.raises(RehearsalError, match="closed"):
        _ = r.endpoint


def test_a_third_party_driver_is_rehearsed_through_its_own_provider_env(tmp_path: Path) -> None:
    script = tmp_path / "chat_cli.py"
    script.write_text(CHAT_CLI)
    registry = default_registry(plugins=False)
    argv = [sys.executable, str(script), "{prompt}"]
    registry.register("chat", lambda name, config: ChatDriver(name=name, argv=argv))
    settings = Settings.model_validate(
        {"agents": {"mychat": {"driver": "chat", "argv": ["unused"], "retries": 0}}}
    )
    ws = tmp_path / "ws"
    ws.mkdir()
    with rehearsal(parse_scenario(SCENARIO), package_cache=None) as r:
        call = arun_agent(
            "mychat",
            "say hello",
            workspace=ws,
            config=settings,
            rehearsal=r.endpoint,
            registry=registry,
            step="greet",
        )
        result = run_sync(lambda: call)
        assert result.ok, result.error
        assert result.text.strip() == "Hello from the rehearsal server."
        turns = [q for q in r.requests if q.kind == "turn"]
        assert len(turns) == 1 and turns[0].step == "greet"
        # The key the driver sent is a throwaway one, and it never reaches the recording.
        assert r.endpoint.key("mychat") not in str(turns[0])


def test_a_driver_without_the_hook_gets_a_clear_error(tmp_path: Path) -> None:
    registry = default_registry(plugins=False)
    argv = ["true", "{prompt}"]
    registry.register("old", lambda name, config: NoHookDriver(name=name, argv=argv))
    driver = registry.create("legacy", AgentConfig(driver="old"))
    with rehearsal(parse_scenario(SCENARIO), package_cache=None) as r:
        with pytest.raises(RehearsalError, match="cannot be rehearsed") as info:
            provider_settings(r.endpoint, driver)
        assert "provider_env" in (info.value.hint or "")
