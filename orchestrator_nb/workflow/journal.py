"""The run journal: each finished step written durably as it ends, so a run can resume.

``.orchestrator/runs/<run_id>/run.json`` holds what started the run; ``steps.jsonl`` one line per
finished step, keyed by its position in the walk (``review_loop/2/review``). A kernel killed
mid-run loses only the step that was running; :func:`orchestrator_nb.resume` replays the rest.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from ..errors import WorkspaceError
from ..events import StepResult
from ..fsio import append_json_line, read_text, write_json
from ..observe.redact import default_redactor, expand_references


class RunJournal:
    def __init__(self, runs_dir: Path, run_id: str) -> None:
        self.dir = runs_dir / run_id
        self.run_id = run_id
        self._lock = threading.Lock()

    @property
    def exists(self) -> bool:
        return (self.dir / "run.json").is_file()

    def start(self, meta: dict[str, Any]) -> None:
        """Record what started the run; a secret in the task is kept as a reference, never whole.

        A value from the environment is stored as ``${NAME}`` and put back on resume; any other
        secret (a key typed into the task) is redacted and the run cannot resume without the task.
        """
        meta = dict(meta)
        if isinstance(meta.get("task"), str):
            task, refs, lost = default_redactor().to_references(meta["task"])
            meta["task"] = task
            if refs:
                meta["task_refs"] = refs
            if lost:
                meta["task_redacted"] = True
        write_json(self.dir / "run.json", meta)

    def task(self, meta: dict[str, Any] | None = None) -> str:
        """The task as it was given, with its secrets taken from the environment again
        (``meta``: the journal's, when the caller has read it already)."""
        meta = meta if meta is not None else self.meta()
        if meta.get("task_redacted"):
            raise WorkspaceError(
                f"run {self.run_id} cannot resume: its task held a secret that does not come from "
                "the environment, and the journal keeps it redacted",
                hint="start the run again with the task (or put the secret in an environment "
                "variable, e.g. MY_SERVICE_TOKEN, and refer to it from there)",
            )
        task, missing = expand_references(str(meta["task"]), meta.get("task_refs") or ())
        if missing:
            names = ", ".join(missing)
            raise WorkspaceError(
                f"run {self.run_id} cannot resume: its task uses the secret(s) {names} from the "
                "environment, and they are not set now",
                hint=f"set {names} to the same value(s) as when the run started, then resume",
            )
        return task

    def meta(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(read_text(self.dir / "run.json"))
        except (OSError, ValueError) as exc:
            raise WorkspaceError(
                f"run {self.run_id} has no readable journal in {self.dir}",
                hint="list runs under .orchestrator/runs/ and pass one of those ids",
            ) from exc
        return data

    def record(self, key: str, result: StepResult) -> None:
        with self._lock:
            append_json_line(
                self.dir / "steps.jsonl", {"key": key, "result": result.to_dict()}, fsync=True
            )

    def finished(self) -> dict[str, StepResult]:
        """Finished steps by key; a torn last line (a crash mid-write) is ignored."""
        path = self.dir / "steps.jsonl"
        done: dict[str, StepResult] = {}
        if not path.is_file():
            return done
        for line in read_text(path).splitlines():
            try:
                entry = json.loads(line)
                done[entry["key"]] = StepResult.from_dict(entry["result"])
            except (ValueError, KeyError, TypeError):
                continue
        return done

    def finish(self, outcome: dict[str, Any]) -> None:
        write_json(self.dir / "outcome.json", outcome)
