"""The run journal: each finished step written durably as it ends, so a run can resume.

``.orchestrator/runs/<run_id>/run.json`` holds what started the run; ``steps.jsonl`` one line per
finished step, keyed by its position in the walk (``review_loop/2/review``). A kernel killed
mid-run loses only the step that was running; :func:`orchestrator_nb.resume` replays the rest.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from ..errors import WorkspaceError
from ..events import StepResult
from ..observe.redact import redact_obj


def _fsync_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunJournal:
    def __init__(self, runs_dir: Path, run_id: str) -> None:
        self.dir = runs_dir / run_id
        self.run_id = run_id
        self._lock = threading.Lock()

    @property
    def exists(self) -> bool:
        return (self.dir / "run.json").is_file()

    def start(self, meta: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _fsync_write(self.dir / "run.json", json.dumps(meta, indent=2))

    def meta(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.dir / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise WorkspaceError(
                f"run {self.run_id} has no readable journal in {self.dir}",
                hint="list runs under .orchestrator/runs/ and pass one of those ids",
            ) from exc
        return data

    def record(self, key: str, result: StepResult) -> None:
        line = json.dumps({"key": key, "result": redact_obj(result.to_dict())}) + "\n"
        with self._lock, open(self.dir / "steps.jsonl", "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def finished(self) -> dict[str, StepResult]:
        """Finished steps by key; a torn last line (a crash mid-write) is ignored."""
        path = self.dir / "steps.jsonl"
        done: dict[str, StepResult] = {}
        if not path.is_file():
            return done
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                done[entry["key"]] = StepResult.from_dict(entry["result"])
            except (ValueError, KeyError, TypeError):
                continue
        return done

    def finish(self, outcome: dict[str, Any]) -> None:
        _fsync_write(self.dir / "outcome.json", json.dumps(outcome, indent=2))
