"""Tampering with a real workspace's audit trail, the way someone without the key would: every
variant is caught and named; only a full rewrite by the key's holder is not (the README's limit).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator_nb.cli import main
from orchestrator_nb.observe.audit import AuditTrail, Line, body_hash, verify
from orchestrator_nb.observe.audit_keys import outside_head_path


@pytest.fixture(autouse=True)
def _config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "config-home"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


@dataclass
class Trail:
    ws: Path
    path: Path
    older: bytes  # the file after three records (an "older copy")
    older_head: bytes

    @property
    def head(self) -> Path:
        return self.path.with_name(self.path.name + ".head")

    @property
    def outside(self) -> Path:
        return outside_head_path(self.path)

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines()

    def write(self, lines: list[str]) -> None:
        self.path.write_text("".join(f"{x}\n" for x in lines))


def _make(ws: Path, n: int = 6) -> Trail:
    path = ws / ".orchestrator" / "audit.jsonl"
    trail = AuditTrail(path)
    older = older_head = b""
    for i in range(n):
        trail.append("step_finished", {"i": i, "text": f"record {i}"})
        if i == 2:
            older, older_head = path.read_bytes(), trail.head_path.read_bytes()
    return Trail(ws, path, older, older_head)


@pytest.fixture
def trail(tmp_path: Path) -> Trail:
    ws = tmp_path / "ws"
    ws.mkdir()
    return _make(ws)


def _body(line: str) -> dict[str, object]:
    parsed = Line.parse(line.encode())
    assert parsed is not None
    value = json.loads(parsed.body)
    assert isinstance(value, dict)
    return value


def _line(body: dict[str, object] | bytes, mac: str = "0" * 64) -> str:
    """A line with a correctly recomputed hash, and a MAC made up without the key."""
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    return f'{{"body":{raw.decode()},"hash":"{body_hash(raw)}","mac":"{mac}"}}'


def _hash(line: str) -> str:
    parsed = Line.parse(line.encode())
    assert parsed is not None
    return parsed.hash


# -- the variants: (name, tamper, expected line, expected kind) ---------------------------------


def edit_value(t: Trail) -> None:
    t.write([x.replace("record 2", "record X") for x in t.lines()])


def edit_bytes_same_json(t: Trail) -> None:
    lines = t.lines()
    lines[2] = lines[2].replace('{"body":{', '{"body":{ ', 1)  # parses to the same JSON
    t.write(lines)


def edit_with_recomputed_hash(t: Trail) -> None:
    lines = t.lines()
    body = _body(lines[2])
    body["data"] = {"i": 2, "text": "forged"}
    lines[2] = _line(body)
    t.write(lines)


def rewrite_chain_without_key(t: Trail) -> None:
    lines = t.lines()
    prev = _hash(lines[1])
    for i in range(2, len(lines)):
        body = _body(lines[i])
        if i == 2:
            body["data"] = {"i": 2, "text": "forged"}
        body["prev"] = prev
        lines[i] = _line(body)
        prev = _hash(lines[i])
    t.write(lines)


def delete_middle(t: Trail) -> None:
    lines = t.lines()
    del lines[3]
    t.write(lines)


def delete_first(t: Trail) -> None:
    t.write(t.lines()[1:])


def reorder(t: Trail) -> None:
    lines = t.lines()
    lines[1], lines[2] = lines[2], lines[1]
    t.write(lines)


def duplicate(t: Trail) -> None:
    lines = t.lines()
    t.write([*lines[:4], lines[2], *lines[4:]])


def truncate_mid_line(t: Trail) -> None:
    data = t.path.read_bytes()
    t.path.write_bytes(data[: len(data) - 40])


def truncate_last_record(t: Trail) -> None:
    t.write(t.lines()[:-1])


def append_forged(t: Trail) -> None:
    lines = t.lines()
    last = _body(lines[-1])
    forged = {**last, "seq": 6, "prev": _hash(lines[-1]), "data": {"text": "forged"}}
    t.write([*lines, _line(forged)])


def append_forged_and_head(t: Trail) -> None:
    append_forged(t)
    forged = t.lines()[-1]
    t.head.write_text(json.dumps({"seq": 6, "hash": _hash(forged), "mac": "0" * 64}))


def duplicate_keys(t: Trail) -> None:
    lines = t.lines()
    parsed = Line.parse(lines[3].encode())
    assert parsed is not None
    lines[3] = _line(parsed.body.replace(b'"kind":', b'"kind":"run_started","kind":', 1))
    t.write(lines)


def garbage_line(t: Trail) -> None:
    lines = t.lines()
    t.write([*lines[:2], '{"seq": 2, "kind": "x"}', *lines[2:]])


def change_seq(t: Trail) -> None:
    lines = t.lines()
    body = _body(lines[4])
    body["seq"] = 40
    lines[4] = _line(body)
    t.write(lines)


def delete_file(t: Trail) -> None:
    t.path.unlink()


def delete_file_and_head(t: Trail) -> None:
    t.path.unlink()
    t.head.unlink()


def delete_head(t: Trail) -> None:
    t.head.unlink()


def delete_head_and_last_record(t: Trail) -> None:
    t.head.unlink()
    t.write(t.lines()[:-1])


def replace_with_older_copy(t: Trail) -> None:
    t.path.write_bytes(t.older)
    t.head.write_bytes(t.older_head)


def delete_outside_head(t: Trail) -> None:
    t.outside.unlink()


def copy_another_workspace(t: Trail) -> None:
    other = t.ws.parent / "other"
    other.mkdir()
    theirs = _make(other, 4)  # written with the same key: every record authenticates
    shutil.copyfile(theirs.path, t.path)
    shutil.copyfile(theirs.head, t.head)


VARIANTS: list[tuple[Callable[[Trail], None], int | None, str]] = [
    (edit_value, 3, "edited"),
    (edit_bytes_same_json, 3, "edited"),
    (edit_with_recomputed_hash, 3, "forged"),
    (rewrite_chain_without_key, 3, "forged"),
    (delete_middle, 4, "removed"),
    (delete_first, 1, "removed"),
    (reorder, 2, "reordered"),
    (duplicate, 5, "duplicated"),
    (truncate_mid_line, 6, "torn"),
    (truncate_last_record, 6, "truncated"),
    (append_forged, 7, "forged"),
    (append_forged_and_head, 7, "forged"),
    (duplicate_keys, 4, "duplicate-keys"),
    (garbage_line, 3, "malformed"),
    (change_seq, 5, "forged"),
    (delete_file, 1, "deleted"),
    (delete_file_and_head, 1, "deleted"),
    (delete_head, 6, "head-missing"),
    (delete_head_and_last_record, 5, "head-missing"),
    (replace_with_older_copy, 4, "replaced"),
    (delete_outside_head, 6, "head-missing"),
    (copy_another_workspace, 5, "replaced"),
]


def test_an_untouched_trail_is_intact(trail: Trail) -> None:
    result = verify(trail.ws)
    assert result.ok and result.records == 6


@pytest.mark.parametrize(
    ("tamper", "line", "kind"), VARIANTS, ids=[v[0].__name__ for v in VARIANTS]
)
def test_tampering_is_caught_and_named(
    trail: Trail, tamper: Callable[[Trail], None], line: int | None, kind: str
) -> None:
    tamper(trail)
    result = verify(trail.ws)
    assert not result.ok, tamper.__name__
    assert result.kind is not None and result.kind.startswith(kind), result
    if line is not None:
        assert result.first_bad_line == line, result
        assert f"line {line}" in str(result)


def test_a_full_rewrite_by_the_key_holder_is_the_limit(trail: Trail) -> None:
    # Someone with the user's account (and so the key) rewrites history from scratch: the trail
    # cannot tell. The README names this limit; signed receipts handed to others are the remedy.
    trail.path.unlink()
    trail.head.unlink()
    trail.outside.unlink()
    rewritten = AuditTrail(trail.path)
    rewritten.append("step_finished", {"text": "a different history"})
    assert verify(trail.ws).ok


def test_appends_after_a_verified_trail_stay_verified(trail: Trail) -> None:
    AuditTrail(trail.path).append("more", {})
    assert verify(trail.ws).records == 7


def test_the_key_lives_outside_the_workspace_with_mode_0600(
    trail: Trail, _config_home: Path
) -> None:
    key = _config_home / "orchestrator-nb" / "audit.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(key.read_bytes()) == 32
    assert trail.outside.is_file() and _config_home in trail.outside.parents
    assert not any(p.name == "audit.key" for p in trail.ws.rglob("*"))


def test_another_users_key_cannot_vouch_for_the_trail(
    trail: Trail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "someone-else"))
    result = verify(trail.ws)
    assert not result.ok and result.kind == "no-key"


def test_cli_audit_verify(trail: Trail, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", str(trail.ws)]) == 0
    assert "intact (6 records)" in capsys.readouterr().out
    edit_with_recomputed_hash(trail)
    assert main(["audit", "verify", str(trail.ws)]) == 1
    err = capsys.readouterr().err
    assert "line 3 (forged)" in err and str(trail.path) in err
