"""The batch journal: a JSON-lines file that makes a crashed batch resumable.

The first line describes the batch (its id, workspace, isolation); each later line is one
finished task, appended and fsynced before the next task is reported done. A batch killed at
any moment therefore loses only the tasks that were running; a torn last line is ignored.
A lock beside it (``journal.jsonl.lock``, the one :class:`~orchestrator_nb.fsio.FileLock`)
keeps two processes from running the same batch at once; a crash releases it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError, WorkspaceError
from ..fsio import FileLock, append_json_line, append_text, read_text, sync_folder

VERSION = 1


class BatchJournal:
    """``journal.jsonl``: the header, then one record per finished task."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header: dict[str, Any] | None = None
        self.finished: dict[str, dict[str, Any]] = {}
        # The journal may be anywhere the user says: its folder is the anchor of every access.
        self._folder = path.parent
        self._lock = FileLock(path.with_name(path.name + ".lock"), anchor=self._folder)

    def open(self) -> BatchJournal:
        """Lock the journal and read what an earlier run of the batch recorded."""
        try:
            taken = self._lock.acquire(blocking=False, info=f"batch process {os.getpid()}")
        except OSError as exc:
            raise WorkspaceError(
                f"cannot open the batch journal {self.path}: {exc.strerror or exc}",
                hint="pass journal= a path in a writable folder",
            ) from exc
        if not taken:
            raise WorkspaceError(
                f"the batch journal {self.path} is in use by another running batch "
                f"({self._lock.holder_info() or 'another process'})",
                hint="wait for that batch to finish, or pass another journal",
            )
        try:
            try:
                text = read_text(self.path, anchor=self._folder)
            except FileNotFoundError:
                text = ""
            self._read(text)
            if text and not text.endswith("\n"):
                # End a torn line, or the next record would be glued to it and lost as well.
                append_text(self.path, "\n", anchor=self._folder, fsync=True, redact=False)
        except BaseException:
            self.close()
            raise
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
            sync_folder(self.path, anchor=self._folder)  # the journal's own entry, too

    def record(self, entry: dict[str, Any]) -> None:
        """Append one finished task, durably."""
        record = {"kind": "task", **entry}
        self._append(record)
        self.finished[record["id"]] = record

    def _append(self, record: dict[str, Any]) -> None:
        if not self._lock.held:
            raise WorkspaceError("the batch journal is not open", hint="call open() first")
        # Redacted value by value: tasks come back from the tasks file on resume, not from here.
        append_json_line(self.path, record, anchor=self._folder, fsync=True)

    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> BatchJournal:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
