"""Finding and stopping everything an agent started, also what escaped its process group.

How an agent's processes are found:

* **Its process group.** The agent CLI starts in its own session, so its group holds the CLI and
  every child that did not leave (copilot's native child, the tools an agent runs).
* **A token in the environment.** Each agent gets ``ORCHESTRATOR_NB_AGENT=<token>`` (random,
  per call). Children inherit the environment, so a process that left the group by ``setsid``
  and a double fork still carries it, and ``/proc/<pid>/environ`` names it even after the process
  that started the agent died. This is what finds escaped processes on cancel and timeout, and
  leftovers of a crashed kernel. The limit: a process that exec()s itself with a scrubbed
  environment, or runs as another user, cannot be found this way (nor by a subreaper once its
  ancestor is gone); where ``/proc`` is missing (macOS) only the group is reached.

Why not a cgroup: creating one needs a delegated cgroup v2 subtree, which a notebook kernel
almost never has (containers and CI runners give none). Why not making the orchestrator a child
subreaper (``PR_SET_CHILD_SUBREAPER``): the orchestrator usually *is* the Jupyter kernel, and a
subreaper kernel would adopt the orphans of every library and user subprocess, which it would
then have to reap with ``waitpid`` calls that steal other code's exit statuses.

How an agent dies with its starter, also under SIGKILL: ``PR_SET_PDEATHSIG(SIGKILL)`` is set in
the agent's own process right after fork (:func:`pdeathsig_preexec`), so the kernel sends it
SIGKILL the moment the starting thread dies (the kernel ties it to the thread that forked; a
run's event loop thread lives until its agents are reaped, so that is the run's own end or the
process's death). The signal reaches only that process, not its
descendants: those are stopped by the next run, ``resume`` or the kernel's next start, which find
them by the token (:mod:`orchestrator_nb.orphans`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

TOKEN_ENV = "ORCHESTRATOR_NB_AGENT"
_PR_SET_PDEATHSIG = 1
_PROC = Path("/proc")


@dataclass(frozen=True)
class Grace:
    """Seconds to wait after SIGINT and after SIGTERM before escalating."""

    after_sigint: float = 2.0
    after_sigterm: float = 2.0


def new_token() -> str:
    return secrets.token_hex(12)


def proc_start(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (start time in clock ticks): tells a reused pid apart."""
    try:
        data = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = data.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _stat(pid: str) -> tuple[str, int] | None:
    """(state, pgrp) of a process, None when gone."""
    try:
        data = (_PROC / pid / "stat").read_text()
    except OSError:
        return None
    rest = data[data.rfind(")") + 2 :].split()
    if len(rest) < 3:
        return None
    return rest[0], int(rest[2])


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc where there is one."""
    try:
        os.killpg(pgid, 0)  # cheap: most of the time the whole group is already gone
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    if not _PROC.is_dir():  # pragma: no cover - non-Linux: the group exists, that is all we know
        return [pgid]
    members: list[int] = []
    for entry in os.scandir(_PROC):
        if entry.name.isdigit():
            st = _stat(entry.name)
            if st is not None and st[0] != "Z" and st[1] == pgid:
                members.append(int(entry.name))
    return members


def token_members(token: str | None) -> list[int]:
    """Live processes whose environment carries ``TOKEN_ENV=token`` (ours: other users' are
    unreadable and skipped)."""
    if not token or not _PROC.is_dir():
        return []
    needle = f"\0{TOKEN_ENV}={token}\0".encode()
    me = os.getpid()
    found: list[int] = []
    for entry in os.scandir(_PROC):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in b"\0" + env + b"\0":
            st = _stat(entry.name)
            if st is not None and st[0] != "Z":
                found.append(int(entry.name))
    return found


def tree_members(pgid: int | None, token: str | None) -> list[int]:
    """The group's members and every process carrying the token, once each."""
    pids = set(group_members(pgid)) if pgid is not None else set()
    pids.update(token_members(token))
    return sorted(pids)


def _signal_all(pgid: int | None, pids: Iterable[int], sig: int) -> None:
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


async def _wait_gone(pgid: int | None, token: str | None, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        left = tree_members(pgid, token)
        if not left or time.monotonic() >= deadline:
            return left
        await asyncio.sleep(0.05)


async def stop_tree(pgid: int | None, token: str | None, grace: Grace) -> list[int]:
    """SIGINT, SIGTERM, then SIGKILL to the group and every token carrier, until none is left.

    Returns the processes still alive one second after SIGKILL (which the OS did not let us stop:
    another user's, or stuck in the kernel); empty when everything is gone.
    """
    for sig, wait in ((signal.SIGINT, grace.after_sigint), (signal.SIGTERM, grace.after_sigterm)):
        left = tree_members(pgid, token)
        if not left:
            return []
        _signal_all(pgid, left, sig)
        if not await _wait_gone(pgid, token, wait):
            return []
    _signal_all(pgid, tree_members(pgid, token), signal.SIGKILL)
    left = await _wait_gone(pgid, token, 1.0)
    if left:  # a process forked between the scan and the kill: once more
        _signal_all(pgid, left, signal.SIGKILL)
        left = await _wait_gone(pgid, token, 0.5)
    return left


async def stop_group(pgid: int, grace: Grace) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to the whole group, until none of it is left."""
    await stop_tree(pgid, None, grace)


def kill_now(pgid: int | None, token: str | None) -> list[int]:
    """SIGKILL the group and the token carriers at once (sync; for leftovers of a dead run)."""
    deadline = time.monotonic() + 2.0
    left = tree_members(pgid, token)
    while left and time.monotonic() < deadline:
        _signal_all(pgid, left, signal.SIGKILL)
        time.sleep(0.05)
        left = tree_members(pgid, token)
    return left


def pdeathsig_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die (SIGKILL) with the thread that starts it.

    Linux only (None elsewhere). ``prctl`` is looked up here, before the fork, so the child does
    no lookup and no import; the parent pid check closes the race where the parent died between
    fork and prctl (the child would have been reparented already).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    kill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(137)

    return preexec


__all__ = [
    "TOKEN_ENV",
    "Grace",
    "group_members",
    "kill_now",
    "new_token",
    "pdeathsig_preexec",
    "proc_start",
    "stop_group",
    "stop_tree",
    "token_members",
    "tree_members",
]
