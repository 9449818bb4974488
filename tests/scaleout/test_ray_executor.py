"""Batches on a real two-node Ray cluster on this machine, with the real CLIs under rehearsal.

One cluster for the module (starting it is most of the time): a head and a worker node, each
its own ``ray start`` bound to 127.0.0.1 with one CPU, so two tasks run at a time, one per node.
"Every node" is this machine: an agent left on any node is a process working under the test's
worker folder.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray_cluster import RAY, Cluster, started_cluster

from orchestrator_nb.agents.registry import agents_bin_dirs
from orchestrator_nb.batching.progress import BatchProgress
from orchestrator_nb.rehearsal import rehearsal
from orchestrator_nb.scaleout import RayBatchResult, abatch_ray, batch_ray, overlaps

pytestmark = [pytest.mark.real_cli, pytest.mark.slow]

CLIS = ("claude", "codex")
WORKFLOWS = {
    "pair": {
        "description": "claude writes a note, codex checks it",
        "steps": [
            {"id": "write", "agent": "claude", "prompt": "{{ task }}"},
            {"id": "check", "agent": "codex", "prompt": "Check the note of: {{ task }}"},
        ],
    },
    "solo": {"steps": [{"id": "write", "agent": "claude", "prompt": "{{ task }}"}]},
    "quick": {"steps": [{"id": "write", "agent": "codex", "prompt": "{{ task }}"}]},
}
# Every call takes a while, so calls of tasks on the two nodes would overlap if nothing held them.
SCENARIO = """
name: ray-notes
turns:
  - agent: claude
    words: note
    fault: {kind: delay, seconds: 1}
    usage: {input: 1000, output: 20}
    actions:
      - write: {path: note.txt, content: "noted\\n"}
      - say: Wrote note.txt.
  - agent: codex
    words: check
    fault: {kind: delay, seconds: 1}
    say: The note is fine.
default:
  say: Nothing scripted for this prompt.
"""


def _need(ok: bool, reason: str) -> None:
    if not ok:
        pytest.skip(reason)  # a failure under CI=true (tests/conftest.py)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    _need(
        importlib.util.find_spec("ray") is not None and RAY.exists(),
        "Ray is not installed: pip install -e '.[ray]' (make test installs it)",
    )
    missing = [
        c
        for c in CLIS
        if not shutil.which(c) and not any((d / c).exists() for d in agents_bin_dirs())
    ]
    _need(not missing, f"agent CLIs not installed ({', '.join(missing)}): run `make agents`")
    import ray

    running = started_cluster()
    try:
        yield running
    finally:
        if ray.is_initialized():
            running.node_ids |= {str(n["NodeID"]) for n in ray.nodes()}
            ray.shutdown()
        running.stop()
        left = running.processes()
        shutil.rmtree(running.temp, ignore_errors=True)
        assert not left, f"cluster processes left running: {left}"


@pytest.fixture(autouse=True)
def own_connection(cluster: Cluster) -> Iterator[None]:
    """Each test starts with no Ray connection and leaves none, whatever way it ends."""
    import ray

    ray.shutdown()
    yield
    if ray.is_initialized():
        cluster.node_ids |= {str(n["NodeID"]) for n in ray.nodes()}
    ray.shutdown()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "README.md").write_text("# notes\n")
    config = {"workflows": WORKFLOWS, "limits": {"per_agent": {"claude": 1, "codex": 1}}}
    (root / "orchestrator.yaml").write_text(yaml.safe_dump(config))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "init")
    return root


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def agents_in(folder: Path) -> dict[int, str]:
    """Processes working under ``folder`` (pid → the folder they work in)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if cwd.startswith(f"{folder}/"):
                found[int(entry.name)] = cwd
    return found


async def wait_for_agents(folder: Path, tasks: int) -> None:
    """Until agent CLIs of ``tasks`` different tasks are running under ``folder``."""
    deadline = time.monotonic() + 120
    while True:
        running = set()
        for pid, cwd in agents_in(folder).items():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"node_modules" in argv:  # .agents/ or the latest CLIs' folder
                running.add(Path(cwd).relative_to(folder).parts[:2])
        if len(running) >= tasks:
            return
        assert time.monotonic() < deadline, f"agents did not start: {agents_in(folder)}"
        await asyncio.sleep(0.2)


def journaled(result: RayBatchResult) -> dict[str, dict[str, Any]]:
    lines = Path(result.journal).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return {r["id"]: r for r in records if r.get("kind") == "task"}


def live_nodes() -> set[str]:
    import ray

    return {str(n["NodeID"]) for n in ray.nodes() if n["Alive"]}


async def test_tasks_run_on_both_nodes_and_a_cap_of_one_holds(
    cluster: Cluster, ws: Path, tmp_path: Path
) -> None:
    scenario = tmp_path / "ray-notes.yaml"
    scenario.write_text(SCENARIO)
    tasks = [{"id": f"note-{i}", "task": f"Write a note for item {i}."} for i in range(1, 5)]
    seen: list[BatchProgress] = []
    result = await abatch_ray(
        tasks,
        "pair",
        executor=cluster.address,
        workspace=ws,
        rehearsal=scenario,
        max_concurrency=4,
        worker_dir=tmp_path / "workers",
        progress=False,
        on_progress=seen.append,
    )
    assert result.ok, str(result)
    nodes = live_nodes()
    assert len(nodes) == 2
    assert set(result.nodes.values()) == nodes  # both nodes ran tasks

    # The configured caps (limits.per_agent: 1 each) held across the nodes: no two calls of
    # one agent ever held their caps at the same moment, timed on the workers.
    assert sorted((c.task_id, c.agent) for c in result.calls) == sorted(
        (t["id"], a) for t in tasks for a in ("claude", "codex")
    )
    assert overlaps(result.calls) == {"claude": 1, "codex": 1}
    assert result.caps["claude"]["cap"] == 1 and result.caps["claude"]["peak"] == 1
    # ...while the tasks themselves did run side by side on the two nodes.
    spans = {
        t: (
            min(c.start for c in result.calls if c.task_id == t),
            max(c.end for c in result.calls if c.task_id == t),
        )
        for t in result.nodes
    }
    assert any(
        a_start < b_end and b_start < a_end and result.nodes[a] != result.nodes[b]
        for a, (a_start, a_end) in spans.items()
        for b, (b_start, b_end) in spans.items()
        if a < b
    )

    for task in tasks:  # every task left its branch, as a local batch does
        branch = f"orchestrator-batch/{result.batch_id}/{task['id']}"
        assert git(ws, "show", f"{branch}:note.txt") == "noted"
        assert result.row(task["id"]).where == branch
        assert "note.txt" in result.results[task["id"]].diff
    records = journaled(result)
    assert sorted(records) == [t["id"] for t in tasks]
    assert {r["node"] for r in records.values()} == nodes
    assert not agents_in(tmp_path / "workers")
    events = {p.event for p in seen}
    assert {"start", "task_started", "step", "task_finished", "done"} <= events


async def test_an_interrupt_stops_every_task_and_its_agents(
    cluster: Cluster, ws: Path, tmp_path: Path
) -> None:
    workers = tmp_path / "workers"
    journal = tmp_path / "journal.jsonl"
    job = asyncio.ensure_future(
        abatch_ray(
            ["Create hello.txt for task one", "Create hello.txt for task two"],
            "quick",
            executor=cluster.address,
            workspace=ws,
            rehearsal="hang",  # every task rehearses on a server of its own on its worker
            max_concurrency=2,
            caps={},  # both hang in codex at once
            journal=journal,
            worker_dir=workers,
            progress=False,
        )
    )
    await wait_for_agents(workers, 2)
    job.cancel()  # what the kernel's Interrupt button does to a batch() call
    with pytest.raises(asyncio.CancelledError):
        await job
    assert not agents_in(workers)
    assert list(workers.iterdir()) == []  # each worker removed its task's repository
    # Nothing finished, so nothing is journaled: a re-run does both tasks.
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [r["kind"] for r in records] == ["batch"]


async def test_stop_kills_workers_and_reaps_their_agents_on_every_node(
    cluster: Cluster, ws: Path, tmp_path: Path
) -> None:
    workers = tmp_path / "workers"
    stop = asyncio.Event()
    # A running rehearsal is shared with workers on this machine; its server outlives the
    # killed workers, so their agents would go on waiting for it if nothing stopped them.
    with rehearsal("hang") as shared:
        job = asyncio.ensure_future(
            abatch_ray(
                ["Create hello.txt for task one", "Create hello.txt for task two"],
                "quick",
                executor=cluster.address,
                workspace=ws,
                rehearsal=shared,
                max_concurrency=2,
                caps={},
                worker_dir=workers,
                cancel=stop,
                cancel_grace_s=0,  # no graceful cancel: the workers are killed at once
                progress=False,
            )
        )
        await wait_for_agents(workers, 2)
        stop.set()  # the dashboard's Stop
        result = await asyncio.wait_for(job, 120)
        assert not agents_in(workers)
    assert list(workers.iterdir()) == []  # the reapers removed what the killed workers left
    assert [row.outcome for row in result.rows] == ["cancelled", "cancelled"]
    assert any("workers were killed and every node reaped" in n for n in result.notes)
    assert not journaled(result)


async def test_a_batch_budget_stops_the_batch_and_a_rerun_pays_only_for_the_rest(
    cluster: Cluster, ws: Path, tmp_path: Path
) -> None:
    # t2's codex step waits for a gate the test opens only after the first batch returned:
    # the budget stop always finds t2 running, however slow or fast the machine is.
    gate = tmp_path / "release-t2"
    gated = f"""
  - agent: codex
    words: [check, item 2.]
    fault: {{kind: delay, until: "{gate}"}}
    say: The note is fine."""
    scenario = tmp_path / "ray-notes.yaml"
    scenario.write_text(SCENARIO.replace("turns:", "turns:" + gated, 1))
    tasks = [{"id": f"t{i}", "task": f"Write a note for item {i}."} for i in range(1, 5)]
    common: dict[str, Any] = {
        "workspace": ws,
        "rehearsal": scenario,
        "journal": tmp_path / "journal.jsonl",
        "worker_dir": tmp_path / "workers",
        "progress": False,
    }
    # One task at a time. Claude reports about $0.012 per note: t1 stays under $0.015, and
    # t2's note crosses it while t2 still has its codex step to run.
    first = await abatch_ray(
        tasks,
        "pair",
        executor=cluster.address,
        max_concurrency=1,
        batch_budget={"max_cost_usd": 0.015},
        **common,
    )
    assert [(row.id, row.outcome) for row in first.rows] == [
        ("t1", "completed"),
        ("t2", "budget_exceeded"),  # cancelled while running
        ("t3", "budget_exceeded"),  # never started
        ("t4", "budget_exceeded"),
    ]
    assert "not started" in (first.row("t3").error or "")
    assert any("batch stopped: budget max_cost_usd exceeded" in n for n in first.notes)
    assert sorted(journaled(first)) == ["t1"]
    assert not agents_in(tmp_path / "workers")

    # The driver goes away; a new one, connected through Ray Client, resumes the batch.
    import ray

    ray.shutdown()
    gate.touch()
    second = await abatch_ray(
        tasks, "pair", executor=cluster.client_address, max_concurrency=4, **common
    )
    assert second.ok, str(second)
    assert second.batch_id == first.batch_id
    assert [row.id for row in second.rows if row.resumed] == ["t1"]
    assert {c.task_id for c in second.calls} == {"t2", "t3", "t4"}  # t1 is not paid twice
    assert sorted(journaled(second)) == ["t1", "t2", "t3", "t4"]
    assert overlaps(second.calls) == {"claude": 1, "codex": 1}  # through Ray Client too


async def test_the_sync_form_joins_from_a_running_loop_as_in_a_notebook(
    cluster: Cluster, ws: Path, tmp_path: Path
) -> None:
    import ray

    assert not ray.is_initialized()  # so this batch joins the cluster from run_sync's thread
    result = batch_ray(
        ["Create hello.txt please"],
        "quick",
        executor=cluster.address,
        workspace=ws,
        rehearsal="write-file",
        worker_dir=tmp_path / "workers",
        progress=False,
    )
    assert result.ok, str(result)
    assert git(ws, "show", f"{result.rows[0].where}:hello.txt") == "hi"


async def test_batch_runs_on_ray_through_its_executor_argument(
    cluster: Cluster, ws: Path, tmp_path: Path
) -> None:
    from orchestrator_nb import abatch

    result = await abatch(
        ["Create hello.txt please"],
        "quick",
        executor=cluster.address,
        workspace=ws,
        rehearsal="write-file",
        worker_dir=tmp_path / "workers",
        progress=False,
    )
    assert isinstance(result, RayBatchResult)
    assert result.ok, str(result)
    assert git(ws, "show", f"{result.rows[0].where}:hello.txt") == "hi"


async def test_a_journal_of_the_local_executor_resumes_on_ray(
    cluster: Cluster, ws: Path, tmp_path: Path
) -> None:
    from orchestrator_nb import abatch

    journal = tmp_path / "journal.jsonl"
    first = await abatch(
        ["Create hello.txt please"],
        "quick",
        workspace=ws,
        rehearsal="write-file",
        journal=journal,
        progress=False,
    )
    assert first.ok, str(first)
    assert not isinstance(first, RayBatchResult)
    # The same preamble reads the journal for Ray: the finished task is not run again.
    second = await abatch(
        ["Create hello.txt please", "Say it again please"],
        "quick",
        executor=cluster.address,
        workspace=ws,
        rehearsal="write-file",
        journal=journal,
        worker_dir=tmp_path / "workers",
        progress=False,
    )
    assert isinstance(second, RayBatchResult)
    assert second.ok, str(second)
    assert second.batch_id == first.batch_id
    assert [(row.id, row.resumed) for row in second.rows] == [("task-1", True), ("task-2", False)]
    assert set(second.nodes) == {"task-2"}  # only the new task went to the cluster
    assert git(ws, "show", f"{first.rows[0].where}:hello.txt") == "hi"
