"""No agent outlives a cancelled Ray task, also when Ray killed the worker that started it.

Every agent CLI a Ray task starts inherits a marker in its environment
(``ORCHESTRATOR_NB_RAY_TASK=<batch>/<session>/<task>``), and so does everything the CLI starts
in turn. A graceful cancel lets the runner stop its agents' process groups itself
(:func:`orchestrator_nb.process.run_process`); ``ray.cancel(force=True)`` kills the worker
process instead, and its agents, each in a session of its own, would live on. So the driver
then runs :func:`reap` on every node of the cluster: it finds the processes carrying the
batch's marker in ``/proc/<pid>/environ`` and kills them with their process groups. The marker
is read from the environment the process was started with, so nothing can lose it, and no
file of process ids has to be written before the worker dies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

MARKER_ENV = "ORCHESTRATOR_NB_RAY_TASK"
_PROC = Path("/proc")


def marked_processes(prefix: str, *, keep: str | None = None) -> list[int]:
    """Live processes of this user whose start environment has a marker beginning with
    ``prefix`` (and not with ``keep``); never this process."""
    wanted = f"{MARKER_ENV}={prefix}".encode()
    spared = f"{MARKER_ENV}={keep}".encode() if keep else None
    found: list[int] = []
    if not _PROC.is_dir():  # pragma: no cover - Ray workers on Linux have /proc
        return found
    me = os.getpid()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text()
        except OSError:
            continue  # gone, or another user's process
        if state[state.rfind(")") + 2 :].startswith("Z"):
            continue
        for item in environ.split(b"\0"):
            if item.startswith(wanted) and not (spared and item.startswith(spared)):
                found.append(int(entry.name))
                break
    return found


def _signal(pids: list[int], sig: int) -> None:
    own_group = os.getpgrp()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
        # An agent CLI leads a process group of its own (run_process starts it in a new
        # session): take the whole group, whatever its members did to their environment.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid and pid != own_group:
                os.killpg(pid, sig)


def reap(prefix: str, *, keep: str | None = None, grace_s: float = 1.0) -> list[int]:
    """Stop every process marked with ``prefix`` on this machine: SIGTERM, then SIGKILL.

    Returns the process ids that were found. ``keep`` spares markers beginning with it (the
    tasks of the batch's current run, when leftovers of an earlier run are reaped).
    """
    found = marked_processes(prefix, keep=keep)
    if not found:
        return []
    _signal(found, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not marked_processes(prefix, keep=keep):
            return found
        time.sleep(0.05)
    for _ in range(3):  # processes forked while we were signalling are caught on the next pass
        left = marked_processes(prefix, keep=keep)
        if not left:
            break
        found += [pid for pid in left if pid not in found]
        _signal(left, signal.SIGKILL)
        time.sleep(0.1)
    return found


@contextlib.contextmanager
def marked(value: str) -> Iterator[None]:
    """Mark every process started inside the block; stop what is left of them at its end."""
    previous = os.environ.get(MARKER_ENV)
    os.environ[MARKER_ENV] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(MARKER_ENV, None)
        else:
            os.environ[MARKER_ENV] = previous
        reap(value, grace_s=0.5)


__all__ = ["MARKER_ENV", "marked", "marked_processes", "reap"]
