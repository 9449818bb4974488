"""What of an ACP agent's stdout reaches the SDK, and where the SDK's own complaints go.

ACP frames one JSON object per line. A program that is not an ACP agent (``cat``, ``yes``, a
script that prints) fills stdout with other lines, and the SDK logs a traceback for each of
them through the root logger, whose first use configures it to print on stderr: a flood of
``ERROR:root`` lines in the user's terminal or notebook, and minutes spent on it. So the SDK
reads stdout through :class:`JsonLines`, which passes on the lines that can be JSON-RPC
(they start with ``{``) and hands every other line to a callback (kept, bounded, in the
step's ``rpc.log``); and the SDK's modules log to ``orchestrator_nb.acp.sdk``, which the
project's logging routes to the run's log file, never to the console.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import types
from collections.abc import Callable
from typing import Any

# A line longer than the reader's limit is put together here, up to this size; past it, it is
# not a message any agent sends (the SDK would otherwise keep every chunk of an endless line).
MAX_LINE = 256 * 1024 * 1024


class JsonLines(asyncio.StreamReader):
    """The ``readuntil``/``readexactly`` the SDK calls, over a process's stdout. (A
    StreamReader because the SDK checks for one; its own buffer stays unused.)"""

    def __init__(self, inner: asyncio.StreamReader, on_other: Callable[[bytes], bool]) -> None:
        """``on_other(line)`` gets each line that is not a message; when it returns False the
        stream ends here (the SDK sees the end of stdout)."""
        super().__init__()
        self._inner = inner
        self._on_other = on_other

    async def readuntil(self, separator: Any = b"\n") -> bytes:
        skipped = 0
        while True:
            try:
                line = await self._inner.readuntil(separator)
            except asyncio.IncompleteReadError as exc:  # the end of stdout
                if exc.partial.strip() and not _framed(exc.partial):
                    self._on_other(exc.partial)
                    raise asyncio.IncompleteReadError(b"", None) from None
                raise
            except asyncio.LimitOverrunError as exc:
                line = await self._long_line(exc.consumed, separator)
            if not line.strip() or _framed(line):
                return line
            if not self._on_other(line):
                raise asyncio.IncompleteReadError(b"", None)
            skipped += 1
            if skipped % 256 == 0:  # buffered lines come without a pause: let the loop run
                await asyncio.sleep(0)

    async def readexactly(self, n: int) -> bytes:  # the SDK's path for long lines (not taken)
        return await self._inner.readexactly(n)

    async def _long_line(self, ready: int, separator: bytes) -> bytes:
        """A line past the reader's limit: whole if it may be a message, else dropped."""
        chunks = [await self._inner.readexactly(ready)]
        keep = _framed(chunks[0])
        size = len(chunks[0])
        while True:
            try:
                chunk = await self._inner.readuntil(separator)
                done = True
            except asyncio.LimitOverrunError as exc:
                chunk = await self._inner.readexactly(exc.consumed)
                done = False
            except asyncio.IncompleteReadError as exc:
                chunk, done = exc.partial, True
            size += len(chunk)
            if keep and size <= MAX_LINE:
                chunks.append(chunk)
            elif keep:  # too long to be a message: what was kept is dropped too
                keep, chunks = False, chunks[:1]
            if done:
                break
        if keep:
            return b"".join(chunks)
        self._on_other(chunks[0][:4096] + b"... (%d bytes on one line)\n" % size)
        return b"\n"  # an empty line: the SDK skips it


def _framed(line: bytes) -> bool:
    return line.lstrip()[:1] == b"{"


class _SdkLogging(types.ModuleType):
    """``logging`` as the SDK's modules see it: its module-level calls go to one named logger."""

    def __init__(self) -> None:
        super().__init__("logging")
        self._log = logging.getLogger("orchestrator_nb.acp.sdk")

    def __getattr__(self, name: str) -> Any:
        return getattr(logging, name)

    def _record(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        # The SDK reports a misbehaving agent; the step's result says what went wrong, so its
        # lines belong in the run's log file only (INFO: not shown on the console).
        self._log.info("acp sdk: " + str(msg), *args, **kwargs)

    def exception(self, msg: Any, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        self._record(msg, *args, exc_info=exc_info, **kwargs)

    error = warning = info = debug = critical = _record


def route_sdk_logging() -> None:
    """Point the loaded ACP SDK modules' ``logging`` at :class:`_SdkLogging` (idempotent)."""
    shim = _SdkLogging()
    for name, module in list(sys.modules.items()):
        sdk = name == "acp" or name.startswith("acp.")
        if sdk and getattr(module, "logging", None) is logging:
            module.logging = shim  # type: ignore[attr-defined]


__all__ = ["MAX_LINE", "JsonLines", "route_sdk_logging"]
