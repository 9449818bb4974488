"""Pipes and a child's exit on the event loop, none of which a descendant can hold up.

:class:`PipeReader` drains a pipe with ``add_reader`` and can be closed at any moment (our end of
the pipe is closed, so whatever another process does with its end no longer matters);
:class:`PipeWriter` writes the prompt without blocking the loop; :func:`exit_future` is set when
the child exits, watched through a pidfd (Linux 5.3+; a waiting thread elsewhere), never through
its pipes — on Python 3.11–3.13 asyncio's ``Process.wait()`` also waits for the pipes to close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import threading
from collections.abc import Callable

log = logging.getLogger("orchestrator_nb.process")
READ_CHUNK = 1 << 16


class PipeReader:
    """Drains one pipe on the loop; closing it ends the reader at once, whoever else holds the
    pipe's other end."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, on_data: Callable[[bytes], None]):
        self._loop = loop
        self.fd: int | None = fd
        self._on_data = on_data
        self.done: asyncio.Future[None] = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._ready)

    def _ready(self) -> None:
        if self.fd is None:
            return
        try:
            data = os.read(self.fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        try:
            self._on_data(data)
        except Exception:  # a failing callback must not leave the pipe undrained
            log.exception("output handler failed")

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            self._loop.remove_reader(fd)
            os.close(fd)
        if not self.done.done():
            self.done.set_result(None)


class PipeWriter:
    """Writes the prompt to stdin without blocking the loop, then closes it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, data: bytes) -> None:
        self._loop = loop
        self.fd: int | None = fd
        self._data = memoryview(data)
        os.set_blocking(fd, False)
        if self._data:
            loop.add_writer(fd, self._ready)
        else:
            self.close()

    def _ready(self) -> None:
        if self.fd is None:
            return
        try:
            self._data = self._data[os.write(self.fd, self._data) :]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the child exited without reading its stdin: not our error
            self._data = self._data[:0]
        if not self._data:
            self.close()

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            self._loop.remove_writer(fd)
            os.close(fd)


def exit_future(
    loop: asyncio.AbstractEventLoop, proc: subprocess.Popen[bytes]
) -> asyncio.Future[int]:
    """A future set when the child exits (and is reaped): a pidfd on the loop, else a thread."""
    fut: asyncio.Future[int] = loop.create_future()

    def settle() -> None:
        code = proc.wait()
        if not fut.done():
            fut.set_result(code)

    pidfd_open = getattr(os, "pidfd_open", None)
    pidfd = None
    if pidfd_open is not None:
        with contextlib.suppress(OSError):
            pidfd = pidfd_open(proc.pid)
    if pidfd is not None:
        watched = [pidfd]  # emptied once closed: a reused descriptor number is never touched

        def unwatch() -> None:
            if watched:
                loop.remove_reader(watched[0])
                os.close(watched.pop())

        def ready() -> None:
            unwatch()
            settle()

        loop.add_reader(pidfd, ready)
        fut.add_done_callback(lambda _f: unwatch())
        return fut

    def wait_thread() -> None:  # pragma: no cover - kernels before 5.3
        code = proc.wait()
        loop.call_soon_threadsafe(lambda: None if fut.done() else fut.set_result(code))

    threading.Thread(target=wait_thread, name="orchestrator-nb-wait", daemon=True).start()
    return fut


__all__ = ["READ_CHUNK", "PipeReader", "PipeWriter", "exit_future"]
