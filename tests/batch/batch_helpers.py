"""A workspace and a scripted agent ``a`` (the real `command` driver) for batch and CLI tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

SCRIPTED = Path(__file__).parents[1] / "fakes" / "scripted_cli.py"
ONE_STEP = {"w": {"description": "a alone", "steps": [{"id": "s", "agent": "a"}]}}


def git(ws: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ws, check=True, capture_output=True, text=True)
    return done.stdout


class Scripted:
    """``ws`` (optionally a git repository), ``config`` (agent ``a``), and the calls ``a`` got."""

    def __init__(self, tmp_path: Path, *, git_repo: bool) -> None:
        self.root = tmp_path
        self.ws = tmp_path / "ws"
        self.ws.mkdir()
        (self.ws / "README.md").write_text("# ws\n")
        self.rules = tmp_path / "rules.json"
        self.calls_log = tmp_path / "calls.jsonl"
        self.config = tmp_path / "orchestrator.yaml"
        if git_repo:
            git(self.ws, "init", "-q")
            git(self.ws, "config", "user.email", "t@e")
            git(self.ws, "config", "user.name", "t")
            git(self.ws, "add", "-A")
            git(self.ws, "commit", "-qm", "init")

    def setup(
        self,
        rules: list[dict[str, Any]],
        workflows: dict[str, Any] | None = None,
        limits: dict[str, Any] | None = None,
    ) -> Path:
        self.rules.write_text(json.dumps(rules))
        argv = [sys.executable, str(SCRIPTED), str(self.rules), "{prompt}"]
        data: dict[str, Any] = {
            "agents": {"a": {"driver": "command", "argv": argv, "retries": 0, "timeout": 120}},
            "workflows": workflows or ONE_STEP,
        }
        if limits:
            data["limits"] = limits
        self.config.write_text(yaml.safe_dump(data))
        return self.config

    def env(self) -> dict[str, str]:
        return {**os.environ, "CALLS_LOG": str(self.calls_log)}

    def log(self) -> list[dict[str, Any]]:
        if not self.calls_log.exists():
            return []
        return [json.loads(line) for line in self.calls_log.read_text().splitlines()]

    def prompts(self) -> list[str]:
        return [c["prompt"] for c in self.log() if c["rule"] >= 0]

    def peak(self) -> int:
        """The most calls of ``a`` that were running at the same moment."""
        marks = []
        for c in self.log():
            marks.append((c["start"], 1) if c["rule"] >= 0 else (c["end"], -1))
        running = peak = 0
        for _, step in sorted(marks, key=lambda m: (m[0], m[1])):
            running += step
            peak = max(peak, running)
        return peak


def processes_in(folder: Path) -> list[int]:
    """Processes working inside ``folder``: the agents of this test, not of other tests."""
    found = []
    for pid in Path("/proc").iterdir():
        if pid.name.isdigit():
            try:
                cwd = os.readlink(pid / "cwd")
            except OSError:
                continue
            if cwd == str(folder) or cwd.startswith(f"{folder}/"):
                found.append(int(pid.name))
    return found
