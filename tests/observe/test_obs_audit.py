"""The audit trail: chained records, tamper detection, and appends that never interleave."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import orchestrator_nb.audit
from orchestrator_nb.events import FileChange, StepResult, Usage
from orchestrator_nb.lifecycle import (
    FileWritten,
    GateDecided,
    Reverted,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
)
from orchestrator_nb.observe.audit import GENESIS, AuditTrail, Line, body_hash, verify
from orchestrator_nb.observe.audit_subscriber import AuditSubscriber, record_config_change
from orchestrator_nb.observe.redact import Redactor


@pytest.fixture(autouse=True)
def _config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keys and outside heads in a folder of this test, not the user's real config."""
    home = tmp_path / "config-home"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def _forge(line: str, **changes: object) -> str:
    """The line with its body changed and its hash recomputed (no key: the MAC stays old)."""
    parsed = Line.parse(line.encode())
    assert parsed is not None
    body = json.loads(parsed.body)
    body["data"].update(changes)
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return (b'{"body":' + raw + b',"hash":"' + body_hash(raw).encode() + b'","mac":"'
            + parsed.mac.encode() + b'"}').decode()  # fmt: skip


def _trail(tmp_path: Path, n: int = 5) -> Path:
    trail = AuditTrail(tmp_path / "audit.jsonl")
    for i in range(n):
        trail.append("step_finished", {"i": i, "text": f"record {i}"})
    return trail.path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{x}\n" for x in lines))


def test_chain_shape(tmp_path: Path) -> None:
    path = _trail(tmp_path, 3)
    parsed = [Line.parse(x.encode()) for x in _lines(path)]
    assert all(p is not None for p in parsed)
    records = [p.record() for p in parsed if p is not None]
    hashes = [p.hash for p in parsed if p is not None]
    assert [r["seq"] for r in records] == [0, 1, 2]
    assert records[0]["prev"] == GENESIS
    assert records[1]["prev"] == hashes[0] and records[2]["prev"] == hashes[1]
    assert all(body_hash(p.body) == p.hash for p in parsed if p is not None)
    result = verify(path)
    assert result.ok and bool(result) and result.records == 3 and "intact" in str(result)
    assert orchestrator_nb.audit.verify is verify


def test_missing_and_empty_files_are_intact(tmp_path: Path) -> None:
    assert verify(tmp_path / "none.jsonl").ok
    (tmp_path / "empty.jsonl").write_text("")
    assert verify(tmp_path / "empty.jsonl").ok


def test_edited_record(tmp_path: Path) -> None:
    path = _trail(tmp_path)
    lines = _lines(path)
    lines[2] = lines[2].replace("record 2", "record X")
    _write(path, lines)
    result = verify(path)
    assert not result.ok and result.first_bad_line == 3 and "edited" in (result.reason or "")
    assert "line 3" in str(result)


def test_edited_record_with_recomputed_hash(tmp_path: Path) -> None:
    path = _trail(tmp_path)
    lines = _lines(path)
    lines[1] = _forge(lines[1], text="forged")
    _write(path, lines)
    result = verify(path)
    assert not result.ok and result.first_bad_line == 2 and result.kind == "forged"


def test_last_record_edited_with_recomputed_hash(tmp_path: Path) -> None:
    path = _trail(tmp_path)
    lines = _lines(path)
    lines[-1] = _forge(lines[-1], text="forged")
    _write(path, lines)
    result = verify(path)
    assert not result.ok and result.first_bad_line == 5 and result.kind == "forged"


@pytest.mark.parametrize("index", [0, 2])
def test_removed_record(tmp_path: Path, index: int) -> None:
    path = _trail(tmp_path)
    lines = _lines(path)
    del lines[index]
    _write(path, lines)
    result = verify(path)
    assert not result.ok and result.first_bad_line == index + 1
    assert "removed" in (result.reason or "")


def test_removed_from_the_end(tmp_path: Path) -> None:
    path = _trail(tmp_path)
    _write(path, _lines(path)[:-2])
    result = verify(path)
    assert not result.ok and result.first_bad_line == 4 and "end" in (result.reason or "")


def test_reordered_records(tmp_path: Path) -> None:
    path = _trail(tmp_path)
    lines = _lines(path)
    lines[1], lines[3] = lines[3], lines[1]
    _write(path, lines)
    result = verify(path)
    assert not result.ok and result.first_bad_line == 2 and "reordered" in (result.reason or "")


def test_duplicated_record(tmp_path: Path) -> None:
    path = _trail(tmp_path)
    lines = _lines(path)
    lines.insert(3, lines[1])
    _write(path, lines)
    result = verify(path)
    assert not result.ok and result.first_bad_line == 4 and result.kind == "duplicated"


@pytest.mark.parametrize("garbage", ["not json", "[1, 2]", '{"seq": "x"}'])
def test_garbage_line(tmp_path: Path, garbage: str) -> None:
    path = _trail(tmp_path, 3)
    _write(path, [*_lines(path)[:1], garbage, *_lines(path)[1:]])
    result = verify(path)
    assert not result.ok and result.first_bad_line == 2


def test_torn_last_line_is_reported_and_appends_go_on(tmp_path: Path) -> None:
    path = _trail(tmp_path, 3)
    with open(path, "a") as f:
        f.write('{"seq": 3, "kind": "ha')  # a crash in the middle of a write
    result = verify(path)
    assert not result.ok and result.first_bad_line == 4 and "torn" in (result.reason or "")
    AuditTrail(path).append("after_crash", {})
    records = AuditTrail(path).records()
    assert records[-1]["seq"] == 3  # chained on from the last good record
    assert records[-1]["prev"] == records[2]["hash"]
    assert verify(path).first_bad_line == 4  # the damage stays visible


def test_data_is_redacted_before_writing(tmp_path: Path) -> None:
    secret = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    trail = AuditTrail(tmp_path / "a.jsonl", redactor=Redactor({"MY_TOKEN": "plain-value-99"}))
    trail.append("x", {"key": secret, "nested": ["plain-value-99"], "n": 3})
    text = trail.path.read_text()
    assert secret not in text and "plain-value-99" not in text
    assert trail.records()[0]["data"]["n"] == 3
    assert verify(trail.path).ok


def test_two_trail_objects_on_one_file_share_the_chain(tmp_path: Path) -> None:
    a, b = AuditTrail(tmp_path / "a.jsonl"), AuditTrail(tmp_path / "a.jsonl")
    for i in range(4):
        (a if i % 2 else b).append("x", {"i": i})
    assert verify(a.path).ok and verify(a.path).records == 4


def test_parallel_threads_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    big = "y" * 20_000  # larger than a pipe buffer: a split write would show

    def worker(n: int) -> None:
        trail = AuditTrail(path)
        for i in range(25):
            trail.append("step", {"thread": n, "i": i, "big": big})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = verify(path)
    assert result.ok, result
    assert result.records == 200


WRITER = """
import sys
from orchestrator_nb.observe.audit import AuditTrail
trail = AuditTrail(sys.argv[1])
for i in range(int(sys.argv[2])):
    trail.append("proc", {"pid_tag": sys.argv[3], "i": i, "pad": "z" * 5000})
"""


def test_two_processes_and_threads_never_break_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), "60", tag])
        for tag in ("p1", "p2")
    ]
    local = AuditTrail(path)
    threads = [
        threading.Thread(target=lambda: [local.append("thread", {"i": i}) for i in range(30)])
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        assert p.wait(timeout=120) == 0
    result = verify(path)
    assert result.ok, result
    assert result.records == 180
    tags = [r["data"].get("pid_tag") for r in AuditTrail(path).records()]
    assert tags.count("p1") == 60 and tags.count("p2") == 60


def test_subscriber_records_what_the_issue_lists(tmp_path: Path) -> None:
    sub = AuditSubscriber(tmp_path)
    step = StepResult(
        "a",
        False,
        text="answer",
        usage=Usage(1, 2),
        changes=[FileChange("x.py", "added")],
        argv=["tool", "a very long prompt"],
    )
    for event in (
        RunStarted("r1", "flow", "the task", str(tmp_path)),
        StepStarted("r1", "s1", "a", "agent"),  # not an audit record
        StepFinished("r1", "s1", "a", step),
        FileWritten("r1", "s1", "x.py", backup="b"),
        GateDecided("r1", "g", "approve", "user"),
        Reverted("r1", "s1", ["x.py"]),
        RunFinished("r1", "flow", "failed", False, Usage(1, 2), 1.5, "boom"),
    ):
        sub(event)
    sub.config_changed("orchestrator.yaml", ["agents.a.timeout"], old=900, new=60)
    records = AuditTrail(tmp_path / "audit.jsonl").records()
    kinds = [r["kind"] for r in records]
    assert kinds == [
        "run_started",
        "step_finished",
        "file_written",
        "gate_decided",
        "reverted",
        "run_finished",
        "config_changed",
    ]
    step_rec = records[1]["data"]
    assert step_rec["changes"] == [{"path": "x.py", "kind": "added"}]
    assert step_rec["program"] == "tool" and "a very long prompt" not in json.dumps(records)
    assert verify(tmp_path / "audit.jsonl").ok


def test_config_changes_from_outside_a_run(tmp_path: Path) -> None:
    record = record_config_change(tmp_path, "%orchestrate config", ["limits.max_concurrency"])
    assert record["kind"] == "config_changed" and record["data"]["keys"] == [
        "limits.max_concurrency"
    ]
    assert verify(tmp_path / "audit.jsonl").records == 1


def test_a_group_is_chained_records_written_with_one_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl")
    trail.append("first", {})
    synced: list[int] = []
    real_fsync = __import__("os").fsync
    monkeypatch.setattr("os.fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    written = trail.append_many([("a", {"i": 1}), ("b", {"i": 2}), ("c", None)])
    # The trail once, then each head file and its folder (atomic write): 5, as for one record.
    assert len(synced) == 5
    records = trail.records()
    assert [r["kind"] for r in records] == ["first", "a", "b", "c"]
    assert [r["seq"] for r in records] == [0, 1, 2, 3]
    assert [r["hash"] for r in written] == [r["hash"] for r in records[1:]]
    assert records[2]["prev"] == records[1]["hash"]
    assert verify(trail.path).ok


def test_a_steps_records_wait_for_its_end_and_a_stopped_run_still_writes_them(
    tmp_path: Path,
) -> None:
    sub = AuditSubscriber(tmp_path)
    path = tmp_path / "audit.jsonl"
    sub(RunStarted("r1", "flow", "the task", str(tmp_path)))
    sub(FileWritten("r1", "s1", "x.py", backup="b"))
    assert AuditTrail(path).records() == []  # grouped with the step's end, not one fsync each
    sub(StepFinished("r1", "s1", "a", StepResult("a", True)))
    kinds = [r["kind"] for r in AuditTrail(path).records()]
    assert kinds == ["run_started", "file_written", "step_finished"]
    sub(FileWritten("r1", "s2", "y.py", backup="b"))
    sub.flush()  # what uninstall does for a run that ended without RunFinished
    assert [r["kind"] for r in AuditTrail(path).records()][-1] == "file_written"
    # Outside a run the subscriber saw start, nothing waits.
    sub(FileWritten("other", "s1", "z.py", backup="b"))
    assert AuditTrail(path).records()[-1]["data"]["run_id"] == "other"
    assert verify(path).ok
