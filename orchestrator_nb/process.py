"""The subprocess runner every driver uses.

Why it is written this way (each point is a behaviour observed in the real CLIs):

* argv only, never a shell; stdin is /dev/null or the prompt, written then closed (``codex exec``
  reads an open stdin to EOF and hangs; claude waits 3 s on it).
* The child gets its own session, so the whole process group can be signalled: gemini relaunches
  itself as a child node process and copilot runs a native child behind a loader, and a signal to
  the top process alone leaves those running.
* stdout and stderr are drained continuously and separately, so a full pipe never blocks the
  child; stdout is split into lines of any length (bounded by ``max_line_bytes``), decoded with
  replacement; stderr keeps only a tail in memory, and both raw streams go to log files.
* Idle and total timeouts are reported as such; cancel escalates SIGINT → SIGTERM → SIGKILL on the
  group, and nothing of the group is left when :func:`run_process` returns or raises.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from .observe.redact import StreamRedactor, redact

TimeoutKind = Literal["idle", "total"]

READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class Grace:
    """Seconds to wait after SIGINT and after SIGTERM before escalating."""

    after_sigint: float = 2.0
    after_sigterm: float = 2.0


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
        return bytes(self._buf[-self.limit :]).decode("utf-8", errors="replace")


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


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc where there is one."""
    try:
        os.killpg(pgid, 0)  # cheap: most of the time the whole group is already gone
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    proc = Path("/proc")
    if not proc.is_dir():  # pragma: no cover - non-Linux fallback
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid pgrp ...
        rest = stat[stat.rfind(")") + 2 :].split()
        if len(rest) >= 3 and rest[0] != "Z" and int(rest[2]) == pgid:
            members.append(int(entry.name))
    return members


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not group_members(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)


async def stop_group(pgid: int, grace: Grace) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to the whole group, until none of it is left."""
    for sig, wait in ((signal.SIGINT, grace.after_sigint), (signal.SIGTERM, grace.after_sigterm)):
        if not group_members(pgid):
            return
        _signal_group(pgid, sig)
        if await _wait_group_gone(pgid, wait):
            return
    _signal_group(pgid, signal.SIGKILL)
    await _wait_group_gone(pgid, 5.0)


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
    log_dir.mkdir(parents=True, exist_ok=True)
    return _RedactedLog(open(log_dir / name, "wb"))


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
    Cancelling the awaiting task stops the process group first, then re-raises.
    """
    grace = grace or Grace()
    args = [str(a) for a in argv]
    started = time.monotonic()
    out_log = _open_log(log_dir, "stdout.log")
    err_log = _open_log(log_dir, "stderr.log")
    tail = _Tail(stderr_tail_bytes)
    splitter = _LineSplitter(on_line, max_line_bytes)
    counts = {"stdout": 0, "stderr": 0}
    last_output = [time.monotonic()]
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            cwd=os.fspath(cwd),
            env=dict(env),
            stdin=asyncio.subprocess.PIPE if stdin_data is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except BaseException:
        for log in (out_log, err_log):
            if log is not None:
                log.close()
        raise
    pgid = proc.pid  # start_new_session makes the child its own group leader

    async def pump(stream: asyncio.StreamReader | None, name: str) -> None:
        assert stream is not None
        log = out_log if name == "stdout" else err_log
        while True:
            data = await stream.read(READ_CHUNK)
            if not data:
                break
            last_output[0] = time.monotonic()
            counts[name] += len(data)
            if log is not None:
                log.write(data)
            if name == "stdout":
                splitter.feed(data)
            else:
                tail.add(data)
        if name == "stdout":
            splitter.close()

    async def feed_stdin() -> None:
        assert proc.stdin is not None and stdin_data is not None
        # A child that exits without reading its stdin is not our error.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(stdin_data)
            await proc.stdin.drain()
        proc.stdin.close()

    readers = [
        asyncio.ensure_future(pump(proc.stdout, "stdout")),
        asyncio.ensure_future(pump(proc.stderr, "stderr")),
    ]
    writer = asyncio.ensure_future(feed_stdin()) if stdin_data is not None else None
    waiter = asyncio.ensure_future(proc.wait())
    cancel_waiter = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
    timed_out: TimeoutKind | None = None
    cancelled = False
    try:
        while not waiter.done():
            now = time.monotonic()
            limits: list[float] = [0.25]
            if total_timeout is not None:
                limits.append(max(0.0, started + total_timeout - now))
            if idle_timeout is not None:
                limits.append(max(0.0, last_output[0] + idle_timeout - now))
            watch: set[asyncio.Future[object]] = {waiter}  # type: ignore[arg-type]
            if cancel_waiter is not None:
                watch.add(cancel_waiter)  # type: ignore[arg-type]
            await asyncio.wait(watch, timeout=min(limits), return_when=asyncio.FIRST_COMPLETED)
            if waiter.done():
                break
            now = time.monotonic()
            if cancel_waiter is not None and cancel_waiter.done():
                cancelled = True
            elif total_timeout is not None and now >= started + total_timeout:
                timed_out = "total"
            elif idle_timeout is not None and now >= last_output[0] + idle_timeout:
                timed_out = "idle"
            if cancelled or timed_out:
                await stop_group(pgid, grace)
                break
        await waiter
        # The leader is gone; give the readers a moment for what is still in the pipes, then stop
        # whatever of the group still holds them open (a background grandchild).
        _done, pending = await asyncio.wait(readers, timeout=drain_after_exit)
        if pending or group_members(pgid):
            await stop_group(pgid, Grace(0.2, 0.5))
        await asyncio.gather(*readers, return_exceptions=True)
    except asyncio.CancelledError:
        # Clean up before letting the cancellation through: no orphaned agent processes. A
        # second cancel (a group of tasks being cancelled again) must not cut this short.
        await _uninterruptible(stop_group(pgid, grace))
        with contextlib.suppress(BaseException):
            await _uninterruptible(asyncio.wait_for(proc.wait(), 5.0))
        raise
    finally:
        for fut in (*readers, waiter, writer, cancel_waiter):
            if fut is not None and not fut.done():
                fut.cancel()
        for log in (out_log, err_log):
            if log is not None:
                log.close()
    returncode = proc.returncode
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
    )


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
