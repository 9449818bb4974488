"""Versions are read once per binary and never block a run."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from orchestrator_nb import run_agent
from orchestrator_nb.agents import availability
from orchestrator_nb.agents.registry import default_registry
from orchestrator_nb.config import AgentConfig, load_settings

TRANSCRIPT = Path(__file__).parents[1] / "fixtures" / "transcripts" / "claude_resume.jsonl"


def _cli(path: Path, *, version_hangs: bool, calls: Path) -> Path:
    """A claude stand-in whose ``--version`` is counted, and hangs when asked to."""
    path.write_text(
        f"#!{sys.executable}\n"
        "import sys, time\n"
        "if sys.argv[1:] == ['--version']:\n"
        f"    open({str(calls)!r}, 'a').write('v\\n')\n"
        f"    if {version_hangs!r}: time.sleep(60)\n"
        "    print('2.1.197 (Claude Code)'); sys.exit(0)\n"
        f"sys.stdout.write(open({str(TRANSCRIPT)!r}).read())\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(availability, "_VERSION_CACHE", {})


def test_a_run_does_not_wait_for_a_slow_version_probe(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    exe = _cli(tmp_path / "claude", version_hangs=True, calls=calls)
    settings = load_settings(agents={"claude": {"driver": "claude", "path": str(exe)}})
    ws = tmp_path / "ws"
    ws.mkdir()
    # Before: the run path asked `--version` first and, with a 20 s probe timeout on a CLI that
    # hangs there, reported the agent as not installed.
    result = run_agent("claude", "hello", workspace=ws, config=settings)
    assert result.ok, result.error


def test_a_version_is_read_once_across_processes(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    exe = _cli(tmp_path / "claude", version_hangs=False, calls=calls)
    assert availability.read_version(str(exe)) == "2.1.197 (Claude Code)"
    availability._VERSION_CACHE.clear()  # a new process: only the disk cache is left
    driver = default_registry().create("claude", AgentConfig(driver="claude"))
    path, version = availability.locate(
        "claude", driver, AgentConfig(driver="claude", path=str(exe))
    )
    assert (path, version) == (str(exe), "2.1.197 (Claude Code)")
    assert calls.read_text().count("v") == 1
    # An upgraded binary (another size or mtime) is asked again.
    exe.write_text(exe.read_text() + "\n# upgraded\n")
    os.utime(exe, ns=(1, 1))
    availability.read_version(str(exe))
    assert calls.read_text().count("v") == 2
