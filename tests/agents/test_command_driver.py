"""The generic command driver: argv templates, stdin prompts, plain-text verdicts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator_nb.agents.base import AgentRequest, Driver, Verdict
from orchestrator_nb.agents.command import CommandDriver
from orchestrator_nb.errors import AgentConfigError, ConfigError
from orchestrator_nb.events import TextEvent

WS = Path("/work/space")


def request(prompt: str = "hello", **kw: Any) -> AgentRequest:
    return AgentRequest(prompt=prompt, workspace=WS, executable="/opt/bin/mytool", **kw)


def run(driver: CommandDriver, req: AgentRequest) -> Verdict:
    """Run the built argv for real (never through a shell) and parse its output."""
    proc = subprocess.run(
        driver.build_argv(req),
        input=req.prompt if driver.prompt_via == "stdin" else "",
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    parser = driver.new_parser()
    for line in proc.stdout.splitlines():
        parser.feed(line)
    return parser.finish(proc.returncode, proc.stderr)


def test_is_a_driver() -> None:
    driver = CommandDriver(name="mine", argv=["mytool", "{prompt}"])
    assert isinstance(driver, Driver)
    assert driver.name == "mine"
    assert driver.executable == "mytool"
    assert driver.npm_package is None
    assert driver.prompt_via == "arg"


def test_placeholders_are_filled_inside_elements() -> None:
    driver = CommandDriver(
        name="mine",
        argv=["mytool", "--ask={prompt}", "--cwd", "{workspace}", "-m", "{model}", '{"k": 1}'],
    )
    argv = driver.build_argv(request("fix it", model="big", extra_args=["--fast"]))
    assert argv == [
        "/opt/bin/mytool",
        "--ask=fix it",
        "--cwd",
        str(WS),
        "-m",
        "big",
        '{"k": 1}',  # other braces are left alone
        "--fast",
    ]


def test_substitution_is_a_single_pass() -> None:
    driver = CommandDriver(argv=["t", "{prompt}", "{workspace}"])
    argv = driver.build_argv(request("say {workspace} and {model}; rm -rf $HOME"))
    assert argv[1] == "say {workspace} and {model}; rm -rf $HOME"
    assert argv[2] == str(WS)


def test_model_placeholder_needs_a_model() -> None:
    driver = CommandDriver(name="mine", argv=["t", "{prompt}", "--model", "{model}"])
    with pytest.raises(AgentConfigError) as info:
        driver.build_argv(request())
    assert info.value.kind == "config"
    assert info.value.hint is not None and "{model}" in info.value.hint


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"argv": []}, "agents.x.argv"),
        ({"argv": "mytool {prompt}"}, "agents.x.argv"),
        ({"argv": ["mytool"]}, "agents.x.argv"),  # prompt_via arg, but nowhere to put the prompt
        ({"argv": ["mytool", "{prompt}"], "prompt_via": "pipe"}, "agents.x.prompt_via"),
        ({"argv": ["t", "{prompt}"], "version_pattern": "("}, "agents.x.version_pattern"),
    ],
)
def test_bad_config(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        CommandDriver(name="x", **kwargs)
    assert info.value.key == key


def test_real_process_gets_the_prompt_as_one_argument() -> None:
    code = "import sys; print(sys.argv[1]); print('second line')"
    driver = CommandDriver(argv=["python", "-c", code, "{prompt}"])
    prompt = "$(echo injected) `id` ; | && 'quoted' \"double\""
    req = AgentRequest(prompt=prompt, workspace=WS, executable=sys.executable)
    verdict = run(driver, req)
    assert verdict.ok
    assert verdict.text == f"{prompt}\nsecond line"


def test_real_process_reads_the_prompt_from_stdin() -> None:
    code = "import sys; print(sys.stdin.read().upper())"
    driver = CommandDriver(name="upper", argv=["python", "-c", code], prompt_via="stdin")
    req = AgentRequest(prompt="shout this", workspace=WS, executable=sys.executable)
    verdict = run(driver, req)
    assert verdict.ok
    assert verdict.text == "SHOUT THIS"


def test_real_process_failure_has_the_stderr_tail() -> None:
    code = "import sys; print('partial'); sys.stderr.write('boom: disk full\\n'); sys.exit(3)"
    driver = CommandDriver(name="bad", argv=["python", "-c", code, "{prompt}"])
    req = AgentRequest(prompt="x", workspace=WS, executable=sys.executable)
    verdict = run(driver, req)
    assert not verdict.ok
    assert verdict.error_kind == "failed"
    assert verdict.error_message == "bad exited with code 3: boom: disk full"
    assert verdict.text == "partial"


def test_parser_text_and_events() -> None:
    parser = CommandDriver(argv=["t", "{prompt}"]).new_parser()
    assert parser.feed("\x1b[32mgreen\x1b[0m answer") == [TextEvent("green answer\n", delta=True)]
    assert parser.feed("") == [TextEvent("\n", delta=True)]
    parser.feed("more\r")
    verdict = parser.finish(0, "")
    assert verdict.ok
    assert verdict.text == "green answer\n\nmore"


def test_empty_output() -> None:
    strict = CommandDriver(name="quiet", argv=["t", "{prompt}"]).new_parser()
    verdict = strict.finish(0, "")
    assert not verdict.ok
    assert verdict.error_kind == "failed"
    assert verdict.hint is not None and "allow_empty" in verdict.hint
    lenient = CommandDriver(argv=["t", "{prompt}"], allow_empty=True).new_parser()
    assert lenient.finish(0, "").ok


@pytest.mark.parametrize(
    ("exit_code", "kind"), [(None, "crashed"), (127, "not_installed"), (1, "failed")]
)
def test_failure_kinds(exit_code: int | None, kind: str) -> None:
    parser = CommandDriver(argv=["t", "{prompt}"]).new_parser()
    parser.feed("something")
    verdict = parser.finish(exit_code, "oops\n")
    assert not verdict.ok
    assert verdict.error_kind == kind
    assert verdict.hint


def test_env_version_and_install_hint() -> None:
    plain = CommandDriver(name="t", argv=["mytool", "{prompt}"])
    assert plain.env(request()) == {"NO_COLOR": "1"}
    assert plain.is_genuine("anything at all")
    assert plain.install_hint() == "install `mytool` and make sure it is on PATH"
    custom = CommandDriver(
        name="t",
        argv=["mytool", "{prompt}"],
        env={"MYTOOL_QUIET": "1"},
        install="pipx install mytool",
        version_pattern=r"^mytool \d+",
    )
    assert custom.env(request()) == {"NO_COLOR": "1", "MYTOOL_QUIET": "1"}
    assert custom.is_genuine("mytool 2.1\n")
    assert not custom.is_genuine("othertool 2.1\n")
    assert custom.install_hint() == "pipx install mytool"
