"""Every flag a driver emits exists in its CLI's --help (the pinned versions' texts in fixtures)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from orchestrator_nb.agents.base import AgentRequest, Driver
from orchestrator_nb.agents.builtin import BUILTIN_DRIVERS
from orchestrator_nb.agents.claude import PERMISSION_MODES, ClaudeDriver
from orchestrator_nb.agents.codex import SANDBOX_MODES, CodexDriver
from orchestrator_nb.agents.command import CommandDriver
from orchestrator_nb.agents.copilot import PERMISSION_FLAGS, CopilotDriver
from orchestrator_nb.agents.gemini import APPROVAL_MODES, GeminiDriver
from orchestrator_nb.errors import AgentConfigError
from orchestrator_nb.userdirs import user_cache_dir

HELP = Path(__file__).resolve().parent.parent / "fixtures" / "help"
PROMPT = "-v looks like a flag; also --help"
WS = Path("/work/space")


def help_section(file: str, command: str) -> str:
    """One ``$ command`` block of a help fixture."""
    text = (HELP / file).read_text(encoding="utf-8")
    for block in text.split("################ $ ")[1:]:
        head, _, body = block.partition("\n")
        if head.strip() == command:
            return body.replace("[exit code: 0]", "").strip()
    raise AssertionError(f"no `{command}` section in {file}")


# driver class, help file, the --help that documents the options it passes, its permission modes
CLIS: dict[str, tuple[type[Any], str, str, tuple[str, ...]]] = {
    "claude": (ClaudeDriver, "claude-2.1.332.txt", "claude --help", PERMISSION_MODES),
    "codex": (CodexDriver, "codex.txt", "codex exec --help", SANDBOX_MODES),
    "gemini": (GeminiDriver, "gemini.txt", "gemini --help", APPROVAL_MODES),
    "copilot": (CopilotDriver, "copilot.txt", "copilot --help", tuple(PERMISSION_FLAGS)),
}
ALL_MODES = [(cli, mode) for cli, spec in CLIS.items() for mode in spec[3]]


def full_request(mode: str | None = None, **overrides: Any) -> AgentRequest:
    fields: dict[str, Any] = {
        "prompt": PROMPT,
        "workspace": WS,
        "executable": "/opt/agents/bin/cli",
        "model": "some-model",
        "resume": "0c3695fd-5af4-4da2-911a-b49d57932613",
        "max_turns": 3,
        "permission_mode": mode,
    }
    return AgentRequest(**{**fields, **overrides})


def emitted_flags(argv: list[str]) -> list[str]:
    return [
        tok.split("=", 1)[0]
        for tok in argv[1:]
        if tok.startswith("-") and tok not in ("--", PROMPT)
    ]


def in_help(flag: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


@pytest.mark.parametrize(("cli", "mode"), ALL_MODES)
def test_every_flag_is_in_the_help(cli: str, mode: str) -> None:
    cls, file, command, _ = CLIS[cli]
    text = help_section(file, command)
    argv = cls().build_argv(full_request(mode))
    flags = emitted_flags(argv)
    assert flags, argv
    missing = [flag for flag in flags if not in_help(flag, text)]
    assert not missing, f"{cli} passes flags its --help does not list: {missing}"


@pytest.mark.parametrize(("cli", "mode"), ALL_MODES)
def test_permission_modes_are_the_clis_own(cli: str, mode: str) -> None:
    cls, file, command, _ = CLIS[cli]
    if (cli, mode) == ("claude", "default"):
        # Renamed "manual" in newer releases, which still accept the old name; the older
        # --help lists it.
        file = "claude-2.1.197.txt"
    text = help_section(file, command)
    argv = cls().build_argv(full_request(mode))
    if cli == "copilot":
        assert all(in_help(flag, text) for flag in PERMISSION_FLAGS[mode])
        return
    flag = argv[argv.index(mode) - 1]
    flat = " ".join(text.split())  # choices lists wrap across lines
    described = flat[flat.index(f"{flag} ") :][:600]
    choices = re.search(r"(?:choices|possible values): ([^)\]]*)", described)
    assert choices, described
    assert mode in re.findall(r"[\w-]+", choices.group(1))


@pytest.mark.parametrize("cli", list(CLIS))
def test_unknown_permission_mode_is_a_config_error(cli: str) -> None:
    with pytest.raises(AgentConfigError) as info:
        CLIS[cli][0]().build_argv(full_request("everything-goes"))
    assert info.value.kind == "config"
    assert info.value.hint is not None and info.value.hint.startswith("use one of:")


@pytest.mark.parametrize(
    ("cli", "expected"),
    [
        ("claude", ["--permission-mode", "acceptEdits"]),
        ("codex", ["--sandbox", "workspace-write"]),
        ("gemini", ["--approval-mode", "auto_edit"]),
        ("copilot", ["--allow-all-tools"]),
    ],
)
def test_default_permission_mode(cli: str, expected: list[str]) -> None:
    argv = CLIS[cli][0]().build_argv(full_request(None))
    start = argv.index(expected[0])
    assert argv[start : start + len(expected)] == expected


def test_claude_argv() -> None:
    argv = ClaudeDriver().build_argv(
        full_request("plan", extra_args=["--add-dir", "a", "b"], trusted=True)
    )
    assert argv == [
        "/opt/agents/bin/cli",
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "plan",
        "--model",
        "some-model",
        "--resume",
        "0c3695fd-5af4-4da2-911a-b49d57932613",
        "--add-dir",
        "a",
        "b",
        "--",
        PROMPT,
    ]


def test_claude_in_an_untrusted_workspace_loads_only_the_users_settings() -> None:
    trusted = ClaudeDriver().build_argv(full_request(trusted=True))
    untrusted = ClaudeDriver().build_argv(full_request(trusted=False))
    added = ["--setting-sources", "user", "--strict-mcp-config"]
    assert not set(added) & set(trusted)
    i = untrusted.index("--setting-sources")
    assert untrusted[i : i + 3] == added
    assert untrusted[:i] + untrusted[i + 3 :] == trusted
    text = help_section("claude-2.1.197.txt", "claude --help")
    assert in_help("--setting-sources", text) and in_help("--strict-mcp-config", text)


def test_gemini_skips_its_folder_trust_only_when_the_user_trusts_the_folder() -> None:
    assert "--skip-trust" in GeminiDriver().build_argv(full_request(trusted=True))
    assert "--skip-trust" not in GeminiDriver().build_argv(full_request(trusted=False))
    rehearsed = full_request(trusted=False, rehearsal=True)  # a throwaway HOME
    assert "--skip-trust" in GeminiDriver().build_argv(rehearsed)


def test_claude_max_turns_is_not_passed() -> None:
    # Not in the pinned --help (2.1.197 nor 2.1.332), so the driver does not pass it.
    for pinned in ("claude-2.1.197.txt", "claude-2.1.332.txt"):
        assert not in_help("--max-turns", help_section(pinned, "claude --help"))
    argv = ClaudeDriver().build_argv(full_request())
    assert argv == ClaudeDriver().build_argv(full_request(max_turns=None))
    assert "--max-turns" not in argv


def test_codex_options_all_come_before_resume() -> None:
    extra = ["-c", "model_provider=rehearsal", "-c", "model_providers.rehearsal.name=rehearsal"]
    argv = CodexDriver().build_argv(full_request(extra_args=extra))
    assert argv[:2] == ["/opt/agents/bin/cli", "exec"]
    resume = argv.index("resume")
    assert argv[resume:] == ["resume", "0c3695fd-5af4-4da2-911a-b49d57932613", "--", PROMPT]
    before = argv[:resume]
    assert before[-len(extra) :] == extra
    assert ["-C", str(WS)] == before[before.index("-C") : before.index("-C") + 2]
    assert in_help("resume", help_section("codex.txt", "codex exec --help"))


def test_codex_without_resume() -> None:
    argv = CodexDriver().build_argv(full_request(resume=None, model=None))
    assert "resume" not in argv and "-m" not in argv
    assert argv[-2:] == ["--", PROMPT]


def test_gemini_argv() -> None:
    argv = GeminiDriver().build_argv(full_request("yolo", extra_args=["--debug"], trusted=True))
    assert argv == [
        "/opt/agents/bin/cli",
        f"--prompt={PROMPT}",
        "-o",
        "stream-json",
        "--skip-trust",
        "--approval-mode",
        "yolo",
        "-m",
        "some-model",
        "--resume",
        "0c3695fd-5af4-4da2-911a-b49d57932613",
        "--debug",
    ]


def test_copilot_argv() -> None:
    argv = CopilotDriver().build_argv(full_request("allow-all", extra_args=["--plain-diff"]))
    assert argv == [
        "/opt/agents/bin/cli",
        f"--prompt={PROMPT}",
        "--output-format",
        "json",
        "--no-auto-update",
        "--no-ask-user",
        "--disable-client-telemetry",
        "-C",
        str(WS),
        "--allow-all",
        "--model",
        "some-model",
        "--resume=0c3695fd-5af4-4da2-911a-b49d57932613",
        "--plain-diff",
    ]


@pytest.mark.parametrize("cli", list(CLIS))
def test_minimal_argv_has_no_optional_flags(cli: str) -> None:
    argv = CLIS[cli][0]().build_argv(
        full_request(model=None, resume=None, max_turns=None, extra_args=[])
    )
    assert "some-model" not in argv
    assert not any("0c3695fd" in tok for tok in argv)


def test_environment() -> None:
    req = full_request()
    cache = {"NODE_COMPILE_CACHE": str(user_cache_dir() / "node-compile-cache")}
    assert ClaudeDriver().env(req) == {
        "NO_COLOR": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_ENABLE_PROMPT_SUGGESTION": "false",
        **cache,
    }
    assert CodexDriver().env(req) == {"NO_COLOR": "1", **cache}
    assert GeminiDriver().env(req) == {
        "NO_COLOR": "1",
        "GEMINI_TELEMETRY_ENABLED": "false",
        "GEMINI_CLI_NO_RELAUNCH": "true",
        **cache,
    }
    copilot_env = CopilotDriver().env(req)
    assert copilot_env == {"NO_COLOR": "1", "COPILOT_AUTO_UPDATE": "false", **cache}
    environment_help = help_section("copilot.txt", "copilot help environment")
    # Copilot's own variables are in its help; NODE_COMPILE_CACHE is Node's.
    assert all(f"`{name}`" in environment_help for name in ("NO_COLOR", "COPILOT_AUTO_UPDATE"))


def test_a_compile_cache_the_user_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_COMPILE_CACHE", "/somewhere/of/mine")
    assert "NODE_COMPILE_CACHE" not in GeminiDriver().env(full_request())


def version_output(file: str, cli: str) -> str:
    return help_section(file, f"{cli} --version")


VERSIONS = {
    "claude": [
        version_output("claude-2.1.197.txt", "claude"),
        version_output("claude-2.1.332.txt", "claude"),
        version_output("claude.txt", "claude"),
    ],
    "codex": [version_output("codex.txt", "codex")],
    "gemini": [version_output("gemini.txt", "gemini")],
    "copilot": [version_output("copilot.txt", "copilot")],
}


@pytest.mark.parametrize("cli", list(CLIS))
def test_is_genuine(cli: str) -> None:
    driver = CLIS[cli][0]()
    for other, outputs in VERSIONS.items():
        for output in outputs:
            assert driver.is_genuine(output) is (other == cli), (cli, output)
    assert not driver.is_genuine("copilot version: v1.32.0")  # AWS Copilot
    assert not driver.is_genuine("")


def test_version_texts_are_the_pinned_ones() -> None:
    assert VERSIONS["claude"][:2] == ["2.1.197 (Claude Code)", "2.1.332 (Claude Code)"]
    assert VERSIONS["codex"] == ["codex-cli 0.171.0"]
    assert VERSIONS["gemini"] == ["0.61.0"]
    assert VERSIONS["copilot"][0].startswith("GitHub Copilot CLI 1.0.102.")


def test_install_hints_and_registry() -> None:
    assert ClaudeDriver().install_hint() == "npm install -g @anthropic-ai/claude-code"
    assert CodexDriver().install_hint() == "npm install -g @openai/codex"
    assert GeminiDriver().install_hint() == "npm install -g @google/gemini-cli"
    assert CopilotDriver().install_hint() == "npm install -g @github/copilot"
    assert set(BUILTIN_DRIVERS) == {"claude", "codex", "gemini", "copilot", "command"}
    assert BUILTIN_DRIVERS["command"] is CommandDriver
    for name, (cls, *_rest) in CLIS.items():
        driver = cls()
        assert BUILTIN_DRIVERS[name] is cls
        assert isinstance(driver, Driver)
        assert (driver.name, driver.executable, driver.prompt_via) == (name, name, "arg")


def test_a_node_beside_the_clis_runs_them(tmp_path: Path) -> None:
    # `make agents` on Node 20 puts Node 22 from npm into node_modules/.bin: the CLIs, which are
    # `#!/usr/bin/env node` scripts, must find it first on PATH.
    bindir = tmp_path / "node_modules" / ".bin"
    bindir.mkdir(parents=True)
    claude = bindir / "claude"
    claude.write_text("#!/usr/bin/env node\n")
    request = full_request(executable=str(claude))
    assert "PATH" not in ClaudeDriver().env(request)  # no node there: the system's runs them
    node = bindir / "node"
    node.write_text("#!/bin/sh\n")
    node.chmod(0o755)
    for driver in (ClaudeDriver(), CodexDriver(), GeminiDriver(), CopilotDriver()):
        path = driver.env(request)["PATH"].split(os.pathsep)
        assert path[0] == str(bindir) and path[1:] == os.environ["PATH"].split(os.pathsep)
