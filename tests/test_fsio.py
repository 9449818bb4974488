"""The filesystem layer: atomic, redacted, and never through a symlink on a state path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator_nb import fsio


def test_write_text_is_atomic_and_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-1234567890abcdef")
    target = tmp_path / ".orchestrator" / "runs" / "r1" / "run.json"
    fsio.write_json(target, {"task": "use tok-1234567890abcdef please"})
    data = json.loads(target.read_text())
    assert "tok-1234567890abcdef" not in data["task"]
    assert [p.name for p in target.parent.iterdir()] == ["run.json"]  # no temp file left


def test_raw_bytes_are_kept_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-1234567890abcdef")
    target = tmp_path / ".orchestrator" / "objects" / "ab"
    fsio.write_bytes(target, b"tok-1234567890abcdef")
    assert target.read_bytes() == b"tok-1234567890abcdef"


@pytest.mark.parametrize(
    "link_at", [".orchestrator", ".orchestrator/logs", ".orchestrator/logs/a.jsonl"]
)
def test_a_symlink_on_the_state_path_is_refused(tmp_path: Path, link_at: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    ws = tmp_path / "ws"
    ws.mkdir()
    link = ws / link_at
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside if not link_at.endswith(".jsonl") else outside / "x.jsonl")
    with pytest.raises(fsio.StatePathError, match="symlink"):
        fsio.append_text(ws / ".orchestrator" / "logs" / "a.jsonl", "line\n")
    with pytest.raises(fsio.StatePathError):
        fsio.write_text(ws / ".orchestrator" / "logs" / "a.jsonl", "x")
    assert list(outside.iterdir()) == []


def test_the_anchor_itself_may_be_reached_through_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    fsio.write_text(tmp_path / "alias" / ".orchestrator" / "x.txt", "hi")
    assert (real / ".orchestrator" / "x.txt").read_text() == "hi"


def test_append_json_line_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / ".orchestrator" / "audit.jsonl"
    for i in range(3):
        fsio.append_json_line(path, {"seq": i})
    lines = fsio.read_text(path).splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [0, 1, 2]


def test_file_lock_is_exclusive_across_processes_and_released_by_death(tmp_path: Path) -> None:
    path = tmp_path / ".orchestrator" / "lock"
    lock = fsio.FileLock(path)
    assert lock.acquire(info="run-a")
    other = fsio.FileLock(path)
    assert not other.acquire(blocking=False)
    assert other.holder_info() == "run-a"
    lock.release()
    # A holder killed with SIGKILL leaves no stale lock behind.
    code = (
        "import os, signal, sys\n"
        "from orchestrator_nb.fsio import FileLock\n"
        f"FileLock({str(path)!r}).acquire(info='dead')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ}, check=False)
    assert proc.returncode == -9
    assert other.acquire(blocking=False)
    other.release()
