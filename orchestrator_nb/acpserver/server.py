"""``orchestrator-nb acp``: the agent on stdin/stdout, and nothing else on stdout.

JSON-RPC owns file descriptor 1. Before anything else runs, the real stdout is moved to a
private descriptor for the protocol and descriptor 1 (and ``sys.stdout``) become stderr, so a
stray ``print`` — ours, a library's, or a child process that inherits the descriptor — lands
in the log instead of corrupting the stream.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import sys
import threading
from typing import IO, Any, cast

from .agent import Options, OrchestratorAgent

__all__ = ["Options", "main", "serve"]

log = logging.getLogger("orchestrator_nb.acp")


def _claim_stdout() -> IO[bytes]:
    protocol_fd = os.dup(sys.stdout.fileno())
    os.set_inheritable(protocol_fd, False)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb", buffering=0)


def _is_pipe(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _FileTransport(asyncio.WriteTransport):
    """Writes straight to a file (stdout redirected to one): nothing to wait for."""

    def __init__(self, out: IO[bytes]) -> None:
        super().__init__()
        self._out = out
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._out.write(bytes(data))
        self._out.flush()

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True


def _feed(loop: asyncio.AbstractEventLoop, reader: asyncio.StreamReader) -> None:
    """stdin from a file (or /dev/null), which the event loop cannot poll: a reader thread."""

    def pump() -> None:
        try:
            while line := sys.stdin.buffer.readline():
                loop.call_soon_threadsafe(reader.feed_data, line)
        finally:
            loop.call_soon_threadsafe(reader.feed_eof)

    threading.Thread(target=pump, name="acp-stdin", daemon=True).start()


async def _streams(out: IO[bytes]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Clients connect pipes; a file or /dev/null on either side works too."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=50 * 1024 * 1024)
    if _is_pipe(sys.stdin.fileno()):
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    else:
        _feed(loop, reader)
    protocol = asyncio.streams.FlowControlMixin()
    transport: asyncio.WriteTransport
    if _is_pipe(out.fileno()):
        transport, _ = await loop.connect_write_pipe(lambda: protocol, out)
    else:
        transport = _FileTransport(out)
    return reader, asyncio.StreamWriter(transport, protocol, None, loop)


async def serve(options: Options, out: IO[bytes]) -> None:
    from acp import run_agent

    agent = OrchestratorAgent(options)
    reader, writer = await _streams(out)
    # A client that stops its agent (Jupyter AI sends SIGINT then SIGTERM to the group, and
    # SIGKILL 5 s later) must not leave the agent CLIs running: they have process groups of
    # their own. A signal cancels the serving task, whose clean-up stops every run.
    loop = asyncio.get_running_loop()
    serving = asyncio.current_task()
    assert serving is not None
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, serving.cancel)
    try:
        await run_agent(cast(Any, agent), writer, reader)  # a structural Agent
    except asyncio.CancelledError:
        log.warning("stopped by a signal; stopping the agents")
    finally:
        await agent.shutdown()


def main(options: Options) -> int:
    """Serve until the client closes stdin; returns the exit code.

    A scenario that does not load is refused before serving (a ``ConfigError`` the command
    reports in one line), not at the first prompt in the middle of a chat.
    """
    if options.rehearse is not None:
        from ..rehearsal import load_scenario

        load_scenario(options.rehearse)
    out = _claim_stdout()
    from ..observe.logs import configure_logging

    configure_logging(console_level="warning")
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    try:
        asyncio.run(serve(options, out))
    except KeyboardInterrupt:
        return 130
    return 0
