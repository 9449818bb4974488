"""Which agent processes each run started, and stopping what a dead run left behind.

While a run is active (:func:`track_run`, entered by the run's start in the workspace lock), every
agent :func:`orchestrator_nb.process.run_process` starts is appended to
``.orchestrator/runs/<run>/agents.jsonl`` with its pid, its start time (field 22 of
``/proc/<pid>/stat``) and its environment token, and ``owner.json`` names the process that runs
the run (pid and start time too). A run whose owner process is gone while ``owner.json`` still
says ``running`` died (a kernel killed by SIGKILL, a crashed process). :func:`stop_leftovers`,
called by the next run in the workspace, by ``resume`` and by the kernel's next start, stops what
such a run left: the recorded agent only when its pid *and* start time match (a reused pid is
never signalled), and every process carrying its token (which a reused pid cannot carry); then
the session turn of that run is marked ``interrupted``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import fsio

# ``proctree`` (asyncio, ctypes) is imported by the functions that use it: the kernel's start
# calls :func:`stop_leftovers`, which needs it only when a run folder exists.

OWNER_FILE = "owner.json"
AGENTS_FILE = "agents.jsonl"


@dataclass(frozen=True)
class _Tracked:
    run_dir: Path
    run_id: str


_current: contextvars.ContextVar[_Tracked | None] = contextvars.ContextVar(
    "orchestrator_nb_run_processes", default=None
)


@dataclass
class Leftover:
    """A dead run and what was stopped of it (``survivors``: what the OS would not let us stop)."""

    run_id: str
    stopped: list[int] = field(default_factory=list)
    survivors: list[int] = field(default_factory=list)
    turns: int = 0


def _owner(run_dir: Path, state: str) -> dict[str, Any]:
    from .proctree import proc_start

    pid = os.getpid()
    return {
        "run_id": run_dir.name,
        "pid": pid,
        "start": proc_start(pid),
        "host": socket.gethostname(),
        "state": state,
    }


@contextlib.contextmanager
def track_run(state_root: Path, run_id: str) -> Iterator[None]:
    """Record this process as the run's owner and its agents in its folder while the block runs."""
    from .workspace.state import safe_id

    run_dir = state_root / "runs" / safe_id(run_id)
    # No fsync for these records: they matter only while the machine stays up (an OS crash or
    # power loss ends the agents too, leaving no orphan to find), and a process crash keeps what
    # was written in the page cache. Four fsyncs per run saved on the run path.
    fsio.write_json(run_dir / OWNER_FILE, _owner(run_dir, "running"), fsync=False)
    token = _current.set(_Tracked(run_dir, run_id))
    try:
        yield
    finally:
        _current.reset(token)
        with contextlib.suppress(OSError):
            fsio.write_json(run_dir / OWNER_FILE, _owner(run_dir, "finished"), fsync=False)


def record_agent(pid: int, token: str, program: str) -> None:
    """Called by the runner for each agent it starts (nothing outside a tracked run)."""
    from .proctree import proc_start

    tracked = _current.get()
    if tracked is None:
        return
    entry = {"event": "start", "pid": pid, "start": proc_start(pid), "token": token}
    entry["program"] = os.path.basename(program)
    with contextlib.suppress(OSError):
        fsio.append_json_line(tracked.run_dir / AGENTS_FILE, entry)  # no fsync: see track_run


def forget_agent(pid: int) -> None:
    tracked = _current.get()
    if tracked is None:
        return
    with contextlib.suppress(OSError):
        fsio.append_json_line(tracked.run_dir / AGENTS_FILE, {"event": "exit", "pid": pid})


def _read_json(path: Path) -> Any:
    try:
        return json.loads(fsio.read_text(path))
    except (OSError, ValueError):
        return None


def _agents(run_dir: Path) -> list[dict[str, Any]]:
    """Agents started and not seen to exit (tokens of exited ones are kept: their children may
    still run)."""
    try:
        text = fsio.read_text(run_dir / AGENTS_FILE)
    except OSError:
        return []
    started: list[dict[str, Any]] = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == "start":
                started.append(entry)
    return started


def owner_alive(owner: dict[str, Any]) -> bool:
    """Whether the process that ran the run still runs (pid and start time), or may (another
    host: we cannot tell, so it counts as alive)."""
    from .proctree import proc_start

    if owner.get("host") != socket.gethostname():
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    return proc_start(pid) == owner.get("start") is not None


def dead_runs(state_root: Path) -> list[Path]:
    """Run folders whose owner file says running while the owner process is gone."""
    runs = state_root / "runs"
    if not runs.is_dir():
        return []
    found = []
    for run_dir in sorted(runs.iterdir()):
        owner = _read_json(run_dir / OWNER_FILE)
        if isinstance(owner, dict) and owner.get("state") == "running" and not owner_alive(owner):
            found.append(run_dir)
    return found


def stop_leftovers(workspace: str | os.PathLike[str]) -> list[Leftover]:
    """Stop every process a dead run of ``workspace`` left, and mark its turns interrupted."""
    state_root = Path(workspace) / fsio.STATE_DIR_NAME
    dead = dead_runs(state_root)
    if not dead:
        return []
    from .proctree import kill_now, proc_start, tree_members

    out: list[Leftover] = []
    for run_dir in dead:
        owner = _read_json(run_dir / OWNER_FILE) or {}
        left = Leftover(str(owner.get("run_id") or run_dir.name))
        for agent in _agents(run_dir):
            pid, start, token = agent.get("pid"), agent.get("start"), agent.get("token")
            verified = isinstance(pid, int) and start is not None and proc_start(pid) == start
            pgid = pid if verified and isinstance(pid, int) else None

            before = tree_members(pgid, token if isinstance(token, str) else None)
            survivors = kill_now(pgid, token if isinstance(token, str) else None)
            left.stopped += [p for p in before if p not in survivors]
            left.survivors += survivors
        left.turns = mark_interrupted(state_root, {left.run_id})
        fsio.write_json(run_dir / OWNER_FILE, {**owner, "state": "interrupted"})
        out.append(left)
    return out


def mark_interrupted(state_root: Path, run_ids: set[str]) -> int:
    """Turns of ``run_ids`` still ``running`` in the saved sessions become ``interrupted``."""
    from .sessions import Session

    folder = state_root / "sessions"
    if not folder.is_dir():
        return 0
    marked = 0
    for path in sorted(folder.glob("*.json")):
        try:
            session = Session.load(path)
        except Exception:  # someone else's broken file is not ours to judge here
            continue
        hit = [t for t in session.turns if t.outcome == "running" and t.run_id in run_ids]
        for turn in hit:
            session.finish_turn(
                turn, "interrupted", error="the process running this turn died", run_id=turn.run_id
            )
        if hit:
            session.save(path)
            marked += len(hit)
    return marked


__all__ = [
    "Leftover",
    "dead_runs",
    "forget_agent",
    "mark_interrupted",
    "owner_alive",
    "record_agent",
    "stop_leftovers",
    "track_run",
]
