"""The executor seam: executors chosen by name, a third party's runs a batch, one preamble."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from batch_helpers import Scripted

from orchestrator_nb import batch
from orchestrator_nb.batching import BatchResult, ExecutorRegistry, default_executors
from orchestrator_nb.batching.preamble import Batch
from orchestrator_nb.batching.task_run import run_task_workflow, task_row
from orchestrator_nb.batching.tasks import BatchTask
from orchestrator_nb.errors import ConfigError
from orchestrator_nb.workflow.engine import Engine

ONE = {"match": "ONE", "write": {"one.txt": "1\n"}, "say": "wrote one"}
TWO = {"match": "TWO", "write": {"two.txt": "2\n"}, "say": "wrote two"}


class SerialExecutor:
    """A third party's executor: one task at a time, each in a plain copy under ``base``."""

    name = "serial"

    def __init__(self, executor: str, *, base: Path) -> None:
        self.base = base
        self.given: list[list[str]] = []

    def start(self, batch: Batch) -> BatchResult:
        return BatchResult(batch.batch_id, str(batch.root), str(batch.journal), "copy")

    async def run(self, batch: Batch, pending: list[BatchTask]) -> None:
        self.given.append([spec.id for spec in pending])
        for spec in pending:
            place = self.base / batch.batch_id / spec.id
            shutil.copytree(batch.root, place, ignore=shutil.ignore_patterns(".orchestrator"))
            started = time.monotonic()
            result = await run_task_workflow(
                spec,
                batch.workflow,
                workspace=place,
                engine=Engine(batch.settings),
                rehearsal=None,
                overrides=batch.overrides,
            )
            row = task_row(spec, batch.workflow, result, time.monotonic() - started, str(place))
            batch.record(spec, row, result)


def registry_with_serial(made: list[SerialExecutor]) -> ExecutorRegistry:
    registry = ExecutorRegistry()  # a fresh registry: only what is registered here

    def factory(executor: str, **options: object) -> SerialExecutor:
        made.append(SerialExecutor(executor, **options))  # type: ignore[arg-type]
        return made[-1]

    registry.register("serial", factory, options=("base",))
    return registry


def header(journal: str) -> dict[str, object]:
    lines = Path(journal).read_text().splitlines()
    first: dict[str, object] = json.loads(lines[0])
    return first


def test_an_unknown_executor_is_a_config_error_naming_the_known_ones(sc: Scripted) -> None:
    config = sc.setup([ONE])
    with pytest.raises(ConfigError, match="unknown executor 'slurm'") as info:
        batch(["do ONE"], "w", workspace=sc.ws, config=config, executor="slurm", progress=False)
    assert info.value.key == "executor"
    assert "'local'" in (info.value.hint or "") and "'ray'" in (info.value.hint or "")
    assert sc.prompts() == []  # nothing ran, and no journal was started
    assert not (sc.ws / ".orchestrator" / "batches").exists()
    with pytest.raises(ConfigError, match="unknown executor 'local'") as fresh:
        batch(["do ONE"], "w", workspace=sc.ws, config=config, executors=ExecutorRegistry())
    assert "none" in (fresh.value.hint or "")


def test_the_default_registry_knows_local_and_rays_spellings() -> None:
    executors = default_executors()
    assert executors.names() == ["local", "ray"]
    for spelling in ("ray", "auto", "ray://head:10001", "10.0.0.5:6379"):
        assert executors.entry(spelling).name == "ray"
    with pytest.raises(ConfigError, match="must be a string"):
        executors.entry(42)  # type: ignore[arg-type]


def test_a_third_party_executor_runs_a_batch(sc: Scripted, tmp_path: Path) -> None:
    config = sc.setup([ONE, TWO])
    made: list[SerialExecutor] = []
    result = batch(
        ["do ONE", "do TWO"],
        "w",
        workspace=sc.ws,
        config=config,
        executor="serial",
        executors=registry_with_serial(made),
        base=tmp_path / "elsewhere",  # the executor's own option, not a workflow override
        progress=False,
    )
    assert result.ok, str(result)
    assert [row.outcome for row in result.rows] == ["completed", "completed"]
    assert made[0].given == [["task-1", "task-2"]]
    copies = tmp_path / "elsewhere" / result.batch_id
    assert (copies / "task-1" / "one.txt").read_text() == "1\n"
    assert (copies / "task-2" / "two.txt").read_text() == "2\n"
    assert header(result.journal)["executor"] == "serial"
    assert sorted(sc.prompts()) == ["do ONE", "do TWO"]


def test_one_preamble_resumes_a_journal_whichever_executor_wrote_it(
    sc: Scripted, tmp_path: Path
) -> None:
    config = sc.setup([ONE, TWO, {"match": "THREE", "say": "three"}])
    journal = tmp_path / "journal.jsonl"
    common = {"workspace": sc.ws, "config": config, "journal": journal, "progress": False}
    isolation = {"isolation": "copy"}

    # The local executor finishes one task ...
    first = batch(["do ONE"], "w", **common, **isolation)  # type: ignore[arg-type]
    assert first.ok
    # ... the third party's, resuming the same journal, gets only what is left ...
    made: list[SerialExecutor] = []
    second = batch(
        ["do ONE", "do TWO"],
        "w",
        executor="serial",
        executors=registry_with_serial(made),
        base=tmp_path / "elsewhere",
        **common,  # type: ignore[arg-type]
    )
    assert made[0].given == [["task-2"]]
    assert second.batch_id == first.batch_id
    assert [(r.id, r.resumed) for r in second.rows] == [("task-1", True), ("task-2", False)]
    # ... and the local executor, resuming again, only the new task.
    third = batch(["do ONE", "do TWO", "do THREE"], "w", **common)  # type: ignore[arg-type]
    assert third.ok, str(third)
    assert [r.resumed for r in third.rows] == [True, True, False]
    assert sc.prompts() == ["do ONE", "do TWO", "do THREE"]  # no task ran twice
    # A changed task under a journaled id is refused by the same check for every executor.
    for executor, extra in (("local", {}), ("serial", {"base": tmp_path / "x"})):
        with pytest.raises(ConfigError, match="not the task the journal recorded"):
            batch(
                ["do something else"],
                "w",
                executor=executor,
                executors=registry_with_serial([]) if executor == "serial" else None,
                **extra,
                **common,  # type: ignore[arg-type]
            )
