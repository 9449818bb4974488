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
import sys
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


async def _streams(out: IO[bytes]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=50 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.streams.FlowControlMixin(), out
    )
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
