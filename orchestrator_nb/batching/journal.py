"""The batch journal: a JSON-lines file that makes a crashed batch resumable.

The first line describes the batch (its id, workspace, isolation); each later line is one
finished task, appended and fsynced before the next task is reported done. A batch killed at
any moment therefore loses only the tasks that were running; a torn last line is ignored.
An exclusive ``flock`` on the file keeps two processes from running the same batch at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError, WorkspaceError
from ..observe.redact import redact_obj

VERSION = 1


class BatchJournal:
    """``journal.jsonl``: the header, then one record per finished task."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header: dict[str, Any] | None = None
        self.finished: dict[str, dict[str, Any]] = {}
        self._file: IO[str] | None = None

    def open(self) -> BatchJournal:
        """Lock the journal and read what an earlier run of the batch recorded."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held open)
        except OSError as exc:
            raise WorkspaceError(
                f"cannot open the batch journal {self.path}: {exc.strerror or exc}",
                hint="pass journal= a path in a writable folder",
            ) from exc
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise WorkspaceError(
                f"the batch journal {self.path} is in use by another running batch",
                hint="wait for that batch to finish, or pass another journal",
            ) from None
        try:
            self._file.seek(0)
            text = self._file.read()
            self._read(text)
        except BaseException:
            self.close()
            raise
        if text and not text.endswith("\n"):
            # End a torn line, or the next record would be glued to it and lost as well.
            self._file.write("\n")
            self._file.flush()
        return self

    def _read(self, text: str) -> None:
        lines = text.splitlines()
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line torn by a crash mid-write; its task simply runs again
            if not isinstance(record, dict):
                continue
            if record.get("kind") == "batch" and self.header is None:
                self.header = record
            elif record.get("kind") == "task" and isinstance(record.get("id"), str):
                self.finished[record["id"]] = record
        if self.header is None and any(line.strip() for line in lines):
            raise ConfigError(
                "this file is not a batch journal (no batch header line)",
                path=str(self.path),
                hint="pass the journal.jsonl of an earlier batch, or a new path",
            )

    def start(self, header: dict[str, Any]) -> None:
        """Write the header of a new batch (a no-op when resuming)."""
        if self.header is None:
            self.header = {"kind": "batch", "version": VERSION, **header}
            self._append(self.header)
            # The journal's own directory entry must survive a crash too.
            with contextlib.suppress(OSError):
                fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def record(self, entry: dict[str, Any]) -> None:
        """Append one finished task, durably."""
        record = {"kind": "task", **entry}
        self._append(record)
        self.finished[record["id"]] = record

    def _append(self, record: dict[str, Any]) -> None:
        if self._file is None:
            raise WorkspaceError("the batch journal is not open", hint="call open() first")
        # Redacted value by value: tasks come back from the tasks file on resume, not from here.
        self._file.write(json.dumps(redact_obj(record), default=str) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # also releases the flock
            self._file = None

    def __enter__(self) -> BatchJournal:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["BatchJournal"]
