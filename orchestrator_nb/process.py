"""The subprocess runner every driver uses.

Why it is written this way (each point is a behaviour observed in the real CLIs):

* argv only, never a shell; stdin is /dev/null or the prompt, written then closed (``codex exec``
  reads an open stdin to EOF and hangs; claude waits 3 s on it).
* The child gets its own session, so the whole process group can be signalled: copilot runs a
  native child behind a loader (and gemini, unless told not to, relaunches itself as a child
  node process), and a signal to the top process alone leaves those running. It also carries a
  per-call token in its environment, which finds descendants that left the group (``setsid``
  and a double fork), and ``PR_SET_PDEATHSIG`` makes it die with the process that started it,
  also under SIGKILL (see :mod:`orchestrator_nb.proctree` for why this and not a subreaper or a
  cgroup).
* stdout and stderr are drained continuously and separately, so a full pipe never blocks the
  child; stdout is split into lines of any length (bounded by ``max_line_bytes``), decoded with
  replacement; stderr keeps only a tail in memory, and both raw streams go to log files.
* **Stop means stop.** The child's exit is awaited on its pid (a pidfd, or ``waitpid`` in a
  thread), never on its pipes: a descendant that keeps stdout open cannot hold a timeout, a
  cancel or a budget stop. After the escalation (SIGINT → SIGTERM → SIGKILL to the group and every
  token carrier) our ends of the pipes are closed and the readers end with them, so the call
  returns within about a second of SIGKILL whatever the descendants do. A CLI that exits by
  itself is judged by its own exit and the events read in a short drain, even while a
  background child still holds the pipe (that child is stopped, not waited for).
* Idle and total timeouts are reported as such; nothing the agent started is left when
  :func:`run_process` returns or raises, except what the OS would not let us stop, which the
  result names (``survivors``).
* Each started agent is recorded (pid, start time, token) in the current run's folder when a run
  is active (:mod:`orchestrator_nb.orphans`), so a crashed run's leftovers can be stopped later.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from . import fsio
from .observe.redact import StreamRedactor, redact
from .procio import PipeReader, PipeWriter, exit_future
from .proctree import (
    TOKEN_ENV,
    Grace,
    group_members,
    new_token,
    pdeathsig_preexec,
    stop_group,
    stop_tree,
    tree_members,
)

log = logging.getLogger("orchestrator_nb.process")

TimeoutKind = Literal["idle", "total"]


@dataclass
class ProcessResult:
    """How a process ended. ``exit_code`` is None when it was stopped by us or by a signal."""

    argv: list[str]
    exit_code: int | None
    returncode: int | None
    stderr_tail: str
    timed_out: TimeoutKind | None = None
    cancelled: bool = False
    duration_s: float = 0.0
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    lines: int = 0
    truncated_lines: int = 0
    log_paths: list[Path] = field(default_factory=list)
    # Processes of the agent's tree the OS did not let us stop (another user's, stuck in the
    # kernel); empty when nothing is left.
    survivors: list[int] = field(default_factory=list)


class _Tail:
    """The last ``limit`` bytes of a stream, without holding the whole stream."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()

    def add(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > 2 * self.limit:
            del self._buf[: len(self._buf) - self.limit]

    def text(self) -> str:
        kept = bytes(self._buf[-self.limit :])
        if len(self._buf) > self.limit:
            # The cut may go through a secret, and a piece of one matches nothing any more:
            # start at the next whole line.
            kept = kept[kept.find(b"\n") + 1 :] if b"\n" in kept else b""
        return kept.decode("utf-8", errors="replace")


class _LineSplitter:
    """Splits a byte stream into lines of any length, capping what one line may hold."""

    def __init__(self, on_line: Callable[[str], None], max_line_bytes: int) -> None:
        self._on_line = on_line
        self._max = max_line_bytes
        self._buf = bytearray()
        self._overflow = False  # the current line already exceeded the cap: drop the rest of it
        self.lines = 0
        self.truncated = 0

    def feed(self, data: bytes) -> None:
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                self._append(data[start:])
                return
            self._append(data[start:nl])
            self._emit()
            start = nl + 1

    def _append(self, piece: bytes) -> None:
        if self._overflow or not piece:
            return
        room = self._max - len(self._buf)
        if len(piece) > room:
            self._buf += piece[:room]
            self._overflow = True
        else:
            self._buf += piece

    def _emit(self) -> None:
        if self._overflow:
            self.truncated += 1
        raw = bytes(self._buf)
        self._buf.clear()
        self._overflow = False
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        self.lines += 1
        self._on_line(raw.decode("utf-8", errors="replace"))

    def close(self) -> None:
        if self._buf or self._overflow:
            self._emit()


class _RedactedLog:
    """A raw stream log with secrets masked as it is written.

    Bytes are decoded incrementally and pass through one :class:`StreamRedactor`, which holds back
    a tail that could still grow into a secret: a key split across reads (or across the 1 MiB
    line cut) is masked whole, never written in two halves.
    """

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._stream = StreamRedactor(fragments=True)

    def write(self, data: bytes) -> None:
        self._emit(self._stream.feed(self._decoder.decode(data)))

    def _emit(self, text: str) -> None:
        if text:
            self._file.write(text.encode("utf-8"))

    def close(self) -> None:
        try:
            self._emit(self._stream.feed(self._decoder.decode(b"", final=True)))
            self._emit(self._stream.flush())
        finally:
            self._file.close()


async def _uninterruptible(awaitable: Awaitable[object]) -> None:
    """Await to the end even if the awaiting task is cancelled again meanwhile (bounded work)."""
    task = asyncio.ensure_future(awaitable)
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)
    task.result()


def _open_log(log_dir: Path | None, name: str) -> _RedactedLog | None:
    if log_dir is None:
        return None
    # Folders and file opened without following a link a process could have planted there.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    return _RedactedLog(os.fdopen(fsio.open_nofollow(log_dir / name, flags, mode=0o600), "wb"))


async def run_process(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str],
    on_line: Callable[[str], None],
    stdin_data: bytes | None = None,
    idle_timeout: float | None = None,
    total_timeout: float | None = None,
    log_dir: Path | None = None,
    stderr_tail_bytes: int = 64 * 1024,
    max_line_bytes: int = 32 * 1024 * 1024,
    grace: Grace | None = None,
    cancel: asyncio.Event | None = None,
    drain_after_exit: float = 2.0,
) -> ProcessResult:
    """Run ``argv`` to the end, feeding each stdout line to ``on_line``.

    Raises ``FileNotFoundError``/``PermissionError`` when the executable cannot be started.
    Cancelling the awaiting task stops the process tree first, then re-raises.
    """
    grace = grace or Grace()
    args = [str(a) for a in argv]
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    token = new_token()
    child_env = {**env, TOKEN_ENV: token}
    out_log = _open_log(log_dir, "stdout.log")
    err_log = _open_log(log_dir, "stderr.log")
    tail = _Tail(stderr_tail_bytes)
    splitter = _LineSplitter(on_line, max_line_bytes)
    counts = {"stdout": 0, "stderr": 0}
    last_output = [time.monotonic()]
    try:
        proc = subprocess.Popen(
            args,
            cwd=os.fspath(cwd),
            env=child_env,
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            preexec_fn=pdeathsig_preexec(),  # prctl only: see proctree
        )
    except BaseException:
        for log_file in (out_log, err_log):
            if log_file is not None:
                log_file.close()
        raise
    pgid = proc.pid  # start_new_session makes the child its own group leader
    from .orphans import record_agent

    record_agent(proc.pid, token, args[0])

    def sink(name: str) -> Callable[[bytes], None]:
        log_file = out_log if name == "stdout" else err_log

        def on_data(data: bytes) -> None:
            last_output[0] = time.monotonic()
            counts[name] += len(data)
            if log_file is not None:
                log_file.write(data)
            if name == "stdout":
                splitter.feed(data)
            else:
                tail.add(data)

        return on_data

    assert proc.stdout is not None and proc.stderr is not None
    # Popen's file objects must not close the fds a second time: take the descriptors over.
    readers = [
        PipeReader(loop, _detach(proc.stdout), sink("stdout")),
        PipeReader(loop, _detach(proc.stderr), sink("stderr")),
    ]
    proc.stdout = proc.stderr = None
    writer = None
    if stdin_data is not None and proc.stdin is not None:
        writer = PipeWriter(loop, _detach(proc.stdin), stdin_data)
        proc.stdin = None
    exited = exit_future(loop, proc)
    cancel_waiter = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
    timed_out: TimeoutKind | None = None
    cancelled = False
    survivors: list[int] = []
    try:
        while not exited.done():
            now = time.monotonic()
            limits: list[float] = [0.25]
            if total_timeout is not None:
                limits.append(max(0.0, started + total_timeout - now))
            if idle_timeout is not None:
                limits.append(max(0.0, last_output[0] + idle_timeout - now))
            watch: set[asyncio.Future[Any]] = {exited}
            if cancel_waiter is not None:
                watch.add(cancel_waiter)
            await asyncio.wait(watch, timeout=min(limits), return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                break
            now = time.monotonic()
            if cancel_waiter is not None and cancel_waiter.done():
                cancelled = True
            elif total_timeout is not None and now >= started + total_timeout:
                timed_out = "total"
            elif idle_timeout is not None and now >= last_output[0] + idle_timeout:
                timed_out = "idle"
            if cancelled or timed_out:
                survivors = await stop_tree(pgid, token, grace)
                break
        if not exited.done():  # SIGKILL was sent: the leader is gone in a moment
            await asyncio.wait({exited}, timeout=2.0)
        if not (cancelled or timed_out):
            # The CLI ended on its own: read what is still in the pipes for a moment, judged by
            # its own exit; whatever of its tree still runs (a background child that may hold
            # the pipes) is stopped, not waited for.
            await asyncio.wait([r.done for r in readers], timeout=drain_after_exit)
            if tree_members(pgid, token):
                survivors = await stop_tree(pgid, token, Grace(0.2, 0.5))
        else:
            # Stopped: what the pipes still hold is read in a short bounded drain.
            await asyncio.wait([r.done for r in readers], timeout=0.2)
    except asyncio.CancelledError:
        # Clean up before letting the cancellation through: no orphaned agent processes. A
        # second cancel (a group of tasks being cancelled again) must not cut this short.
        await _uninterruptible(stop_tree(pgid, token, grace))
        with contextlib.suppress(BaseException):
            await _uninterruptible(asyncio.wait({exited}, timeout=2.0))
        raise
    finally:
        for reader in readers:
            reader.close()  # our ends: nothing a descendant holds can keep us waiting
        if writer is not None:
            writer.close()
        if cancel_waiter is not None and not cancel_waiter.done():
            cancel_waiter.cancel()
        try:
            splitter.close()  # the last line without a newline
        except Exception:  # a failing handler must not keep the logs open
            log.exception("output handler failed")
        for log_file in (out_log, err_log):
            if log_file is not None:
                log_file.close()
        if exited.done() or proc.poll() is not None:
            from .orphans import forget_agent

            forget_agent(proc.pid)
        elif not exited.done():
            exited.cancel()  # unregisters the pidfd; Popen reaps the child later
    returncode = exited.result() if exited.done() else proc.poll()
    stopped = cancelled or timed_out is not None
    exit_code = None if stopped or returncode is None or returncode < 0 else returncode
    return ProcessResult(
        argv=args,
        exit_code=exit_code,
        returncode=returncode,
        stderr_tail=redact(tail.text()),
        timed_out=timed_out,
        cancelled=cancelled,
        duration_s=time.monotonic() - started,
        stdout_bytes=counts["stdout"],
        stderr_bytes=counts["stderr"],
        lines=splitter.lines,
        truncated_lines=splitter.truncated,
        log_paths=[log_dir / "stdout.log", log_dir / "stderr.log"] if log_dir else [],
        survivors=survivors,
    )


def _detach(file: IO[bytes]) -> int:
    fd = os.dup(file.fileno())
    file.close()
    return fd


def base_env(
    extra: Mapping[str, str] | None = None, drop: frozenset[str] = frozenset()
) -> dict[str, str]:
    """The inherited environment with colour turned off, ``drop`` removed, ``extra`` applied."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["NO_COLOR"] = "1"
    env.setdefault("TERM", "dumb")
    env.pop("FORCE_COLOR", None)
    if extra:
        env.update(extra)
    return env


__all__ = [
    "Grace",
    "ProcessResult",
    "base_env",
    "group_members",
    "run_process",
    "stop_group",
]
