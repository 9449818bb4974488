"""The reaper: processes marked by a task are found by their start environment and stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from orchestrator_nb.scaleout.cancel import MARKER_ENV, marked, marked_processes, reap

# A "CLI" with a child in a session of its own (found by the marker it inherited) and a child
# in its own group with an emptied environment (taken with the group), then waits.
TREE = """
import os, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env={})
open(sys.argv[1], "w").write("ready")
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not state[state.rfind(")") + 2 :].startswith("Z")


def _start(tmp_path: Path, marker: str, name: str) -> subprocess.Popen[bytes]:
    ready = tmp_path / f"{name}.ready"
    env = {**os.environ, MARKER_ENV: marker}
    proc = subprocess.Popen(
        [sys.executable, "-c", TREE, str(ready)], env=env, start_new_session=True
    )
    _wait_for(ready)
    return proc


def _wait_for(ready: Path, seconds: float = 60) -> None:
    """Until the started process wrote ``ready`` (a loaded machine is slow, never endless)."""
    deadline = time.monotonic() + seconds
    while not ready.exists():
        assert time.monotonic() < deadline, f"the process never wrote {ready.name}"
        time.sleep(0.05)


def _group(pgid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                out.append(int(entry.name))
    return out


def test_reap_stops_the_marked_tree_and_spares_the_kept(tmp_path: Path) -> None:
    old = _start(tmp_path, "b1/old/t1/", "old")
    new = _start(tmp_path, "b1/new/t1/", "new")
    other = _start(tmp_path, "b2/old/t1/", "other")
    procs = (old, new, other)
    try:
        group = _group(old.pid)
        assert len(group) == 2  # the leader and its child without the marker
        marked_old = marked_processes("b1/old/")
        assert len(marked_old) == 2 and old.pid in marked_old  # leader and session child
        assert len(marked_processes("b1/")) == 4
        found = reap("b1/", keep="b1/new/")
        assert sorted(found) == sorted(marked_old)
        old.wait(timeout=10)
        gone = [*group, *marked_old]
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in gone) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in gone)  # the unmarked group member went with it
        assert _alive(new.pid) and _alive(other.pid)
    finally:
        for marker in ("b1/", "b2/"):
            reap(marker, grace_s=0)
        for proc in procs:
            proc.kill()
            proc.wait()


def test_reap_escalates_to_sigkill(tmp_path: Path) -> None:
    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "open(sys.argv[1], 'w').write('ready'); time.sleep(120)"
    )
    ready = tmp_path / "stubborn.ready"
    env = {**os.environ, MARKER_ENV: "b3/s/t/"}
    proc = subprocess.Popen([sys.executable, "-c", code, str(ready)], env=env)
    try:
        _wait_for(ready)
        assert reap("b3/", grace_s=0.3) == [proc.pid]
        assert proc.wait(timeout=10) == -9
    finally:
        proc.kill()
        proc.wait()


def test_marked_block_marks_children_and_stops_what_is_left(tmp_path: Path) -> None:
    assert MARKER_ENV not in os.environ
    with marked("b4/s/t/"):
        assert os.environ[MARKER_ENV] == "b4/s/t/"
        proc = _start_inheriting(tmp_path)
        assert marked_processes("b4/") == [proc.pid]
    assert MARKER_ENV not in os.environ
    assert proc.wait(timeout=10) != 0
    assert marked_processes("b4/") == []


def _start_inheriting(tmp_path: Path) -> subprocess.Popen[bytes]:
    ready = tmp_path / "child.ready"
    code = "import sys, time; open(sys.argv[1], 'w').write('ready'); time.sleep(120)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(ready)], start_new_session=True)
    _wait_for(ready)
    return proc
