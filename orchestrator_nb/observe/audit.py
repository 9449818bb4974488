"""The audit trail: an append-only JSONL file in the state folder that catches forgeries.

Each line is ``{"body":BODY,"hash":H,"mac":M}`` where ``BODY`` is the record's JSON
(``seq``, ``ts``, ``kind``, ``data``, ``prev``), ``H`` the SHA-256 of *the exact bytes of BODY as
written* (an edit that parses to the same JSON still changes them), ``prev`` the previous record's
``H`` (64 zeros for the first), and ``M`` an HMAC-SHA256 of the same bytes under a key that lives
outside the workspace (:mod:`.audit_keys`). The last ``seq`` and hash (the *head*) are kept twice:
beside the trail (``audit.jsonl.head``) and in the user's config folder keyed by the trail's real
path, each authenticated too.

:func:`verify` names the first bad record and the kind of damage: an edited, forged, duplicated,
reordered or removed record, a torn or malformed line, duplicate keys, a chain that does not
follow, records cut from the end, a deleted trail, a deleted or mismatching head, the trail
replaced by an older copy.

The limit (see the README): whoever holds the key (the user's account) can rewrite the whole
trail and both heads consistently; that is not detectable by the trail itself. Receipts signed
at the end of each run (:mod:`.receipts`) and handed to someone else are the remedy.

Appends are serialized across threads and processes by an OS lock
(:class:`orchestrator_nb.fsio.FileLock`), written in one ``write`` on an ``O_APPEND`` descriptor
and fsynced (a group of records, :meth:`AuditTrail.append_many`, in one write and one fsync);
data is redacted before it is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import fsio
from . import audit_keys
from .redact import Redactor, default_redactor

GENESIS = "0" * 64
AUDIT_FILE = "audit.jsonl"
_TAIL_CHUNK = 8192
_LINE = re.compile(rb'^\{"body":(.*),"hash":"([0-9a-f]{64})","mac":"([0-9a-f]{64})"\}$', re.DOTALL)


def canonical(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: how a record's body is first written."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _mac(key: bytes, *parts: bytes) -> str:
    return hmac.new(key, b"\0".join(parts), hashlib.sha256).hexdigest()


def record_hash(record: dict[str, Any]) -> str:
    """The hash of a record's body as this module writes it (for callers building records)."""
    body = {k: v for k, v in record.items() if k not in ("hash", "mac")}
    return body_hash(canonical(body))


class DuplicateKeys(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise DuplicateKeys(sorted({k for k in keys if keys.count(k) > 1}))
    return dict(pairs)


@dataclass(frozen=True)
class Line:
    """One line of the trail taken apart: its body's exact bytes, its hash and its MAC."""

    body: bytes
    hash: str
    mac: str

    @staticmethod
    def parse(raw: bytes) -> Line | None:
        m = _LINE.match(raw)
        return Line(m[1], m[2].decode(), m[3].decode()) if m else None

    def record(self) -> dict[str, Any]:
        """The body as a dict; raises ``DuplicateKeys`` or ``ValueError``."""
        value = json.loads(self.body, object_pairs_hook=_no_duplicates)
        if not isinstance(value, dict):
            raise ValueError("not an object")
        return value


def _last_line(fd: int, size: int) -> bytes:
    """The last complete-or-torn line of the file (without its newline)."""
    end = size
    buf = b""
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        buf = os.pread(fd, end - start, start) + buf
        end = start
        body = buf[:-1] if buf.endswith(b"\n") else buf
        cut = body.rfind(b"\n")
        if cut >= 0:
            return body[cut + 1 :]
    return buf[:-1] if buf.endswith(b"\n") else buf


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str
    ok: bool  # its MAC is right


def _head_bytes(key: bytes, seq: int, digest: str, where: str) -> bytes:
    mac = _mac(key, b"head", where.encode(), str(seq).encode(), digest.encode())
    return canonical({"seq": seq, "hash": digest, "mac": mac}) + b"\n"


def _read_head(path: Path, key: bytes | None, where: str, anchor: Path | None) -> Head | None:
    try:
        data = json.loads(fsio.read_bytes(path, anchor=anchor))
        seq, digest = int(data["seq"]), str(data["hash"])
        mac = str(data["mac"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return Head(-1, "", False)
    good = key is not None and hmac.compare_digest(
        mac, _mac(key, b"head", where.encode(), str(seq).encode(), digest.encode())
    )
    return Head(seq, digest, good)


class AuditTrail:
    """Appends records to ``path``; safe from threads and processes at once."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        redactor: Redactor | None = None,
        config_dir: Path | None = None,
    ) -> None:
        self.path = Path(path).absolute()
        self.head_path = self.path.with_name(self.path.name + ".head")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._redactor = redactor or default_redactor()
        self._config = config_dir

    @property
    def outside_head_path(self) -> Path:
        return audit_keys.outside_head_path(self.path, config=self._config)

    def _config_dir(self) -> Path:
        return self._config or audit_keys.user_config_dir()

    def _tail(self, fd: int, key: bytes) -> tuple[int, str, bool]:
        """(next seq, previous hash, whether the last line is torn) under the lock."""
        size = os.fstat(fd).st_size
        if size == 0:
            return 0, GENESIS, False
        torn = os.pread(fd, 1, size - 1) != b"\n"
        line = Line.parse(_last_line(fd, size))
        if line is not None:
            try:
                return int(line.record()["seq"]) + 1, line.hash, torn
            except (ValueError, KeyError, TypeError):
                pass
        # A torn or damaged last line: chain on from the best head, and let verify() report
        # the damage rather than hiding it.
        heads = [
            _read_head(self.head_path, key, "workspace", None),
            _read_head(self.outside_head_path, key, "outside", self._config_dir().parent),
        ]
        good = [h for h in heads if h is not None and h.ok]
        if good:
            best = max(good, key=lambda h: h.seq)
            return best.seq + 1, best.hash, torn
        return 0, GENESIS, torn

    def append(self, kind: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Append one record (redacted) and return it as written (with ``hash``)."""
        return self.append_many([(kind, data)])[0]

    def append_many(
        self, entries: Sequence[tuple[str, dict[str, Any] | None]]
    ) -> list[dict[str, Any]]:
        """Append records in order: one lock, one write, one fsync; return them as written.

        The heads are rewritten once, for the last record: a group costs what one record did.
        """
        if not entries:
            return []
        key = audit_keys.audit_key(config=self._config)
        assert key is not None
        written: list[dict[str, Any]] = []
        with fsio.FileLock(self.lock_path):
            with fsio.open_fd(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, mode=0o600) as fd:
                seq, prev, torn = self._tail(fd, key)
                lines: list[bytes] = [b"\n"] if torn else []
                for kind, data in entries:
                    record: dict[str, Any] = {
                        "seq": seq,
                        "ts": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                        "kind": self._redactor.redact(kind),
                        "data": self._redactor.redact_obj(data or {}),
                        "prev": prev,
                    }
                    body = canonical(record)
                    digest = body_hash(body)
                    line = b'{"body":' + body + b',"hash":"' + digest.encode() + b'","mac":"'
                    lines.append(line + _mac(key, body).encode() + b'"}\n')
                    written.append({**record, "hash": digest})
                    seq, prev = seq + 1, digest
                # One write on an O_APPEND descriptor under the lock: the lines land whole.
                fsio.append_fd(fd, lines, fsync=True)
            last = written[-1]
            fsio.write_bytes(self.head_path, _head_bytes(key, last["seq"], prev, "workspace"))
            fsio.write_bytes(
                self.outside_head_path,
                _head_bytes(key, last["seq"], prev, "outside"),
                anchor=self._config_dir().parent,
                mode=0o600,
            )
        return written

    def records(self) -> list[dict[str, Any]]:
        """Every readable record, in file order (no verification)."""
        try:
            raw = fsio.read_bytes(self.path)
        except FileNotFoundError:
            return []
        out: list[dict[str, Any]] = []
        for text in raw.split(b"\n"):
            line = Line.parse(text)
            if line is None:
                continue
            try:
                out.append({**line.record(), "hash": line.hash})
            except ValueError:
                continue
        return out


@dataclass(frozen=True)
class VerifyResult:
    """``ok``, or the 1-based ``first_bad_line``, the ``kind`` of damage and the ``reason``."""

    ok: bool
    first_bad_line: int | None = None
    reason: str | None = None
    records: int = 0
    kind: str | None = None
    path: str | None = None

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            return f"audit trail intact ({self.records} records)"
        where = f" at line {self.first_bad_line}" if self.first_bad_line else ""
        return f"audit trail damaged{where} ({self.kind}): {self.reason}"


def trail_path(path: str | os.PathLike[str]) -> Path:
    """The trail file for ``path``: the file itself, a state folder, or a workspace."""
    p = Path(path)
    if p.is_dir():
        return (
            p / AUDIT_FILE
            if p.name == fsio.STATE_DIR_NAME
            else p / fsio.STATE_DIR_NAME / AUDIT_FILE
        )
    return p


def verify(path: str | os.PathLike[str], *, config_dir: Path | None = None) -> VerifyResult:
    """Check the trail at ``path`` (file, state folder or workspace) against this user's key."""
    file = trail_path(path)
    config = config_dir or audit_keys.user_config_dir()
    key = audit_keys.audit_key(create=False, config=config)
    trail = AuditTrail(file, config_dir=config)
    heads = {
        "workspace": _read_head(trail.head_path, key, "workspace", None),
        "outside": _read_head(trail.outside_head_path, key, "outside", config.parent),
    }

    def bad(line: int | None, kind: str, reason: str, count: int) -> VerifyResult:
        return VerifyResult(False, line, reason, count, kind, str(file))

    try:
        raw = fsio.read_bytes(file)
    except FileNotFoundError:
        said = [f"the {w} head says {h.seq + 1} record(s)" for w, h in heads.items() if h]
        if said:
            return bad(1, "deleted", f"the trail file is missing but {said[0]}", 0)
        return VerifyResult(True, records=0, path=str(file))
    if raw and key is None:
        return bad(
            None,
            "no-key",
            f"no audit key in {config}: this trail was not written by this user here",
            0,
        )
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    assert key is not None or not lines
    prev_hash, prev_seq = GENESIS, -1
    seen: dict[int, str] = {}
    later = set()
    for text in lines:
        parsed = Line.parse(text)
        if parsed is not None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                later.add(int(parsed.record()["seq"]))
    for i, text in enumerate(lines):
        n = i + 1
        line = Line.parse(text)
        if line is None:
            if i == len(lines) - 1 and not raw.endswith(b"\n"):
                return bad(n, "torn", "torn record (a write was interrupted or cut)", i)
            return bad(n, "malformed", "not a record of this trail", i)
        try:
            record = line.record()
        except DuplicateKeys as exc:
            return bad(n, "duplicate-keys", f"duplicate keys {exc.args[0]} in one record", i)
        except ValueError:
            return bad(n, "malformed", "its body is not a JSON object", i)
        if not hmac.compare_digest(body_hash(line.body), line.hash):
            return bad(n, "edited", "edited: its bytes do not match its hash", i)
        assert key is not None
        if not hmac.compare_digest(_mac(key, line.body), line.mac):
            return bad(n, "forged", "not authenticated by this user's audit key", i)
        seq = record.get("seq")
        if not isinstance(seq, int) or not isinstance(record.get("prev"), str):
            return bad(n, "malformed", "no seq or prev", i)
        expected = prev_seq + 1
        if seq != expected:
            if seen.get(seq) == line.hash:
                return bad(n, "duplicated", f"seq {seq} appears a second time", i)
            if seq < expected:
                return bad(
                    n, "reordered", f"records reordered: seq {seq} comes after seq {prev_seq}", i
                )
            if expected in later:
                return bad(
                    n,
                    "reordered",
                    f"records reordered: seq {expected} should come here, found {seq}",
                    i,
                )
            return bad(n, "removed", f"{seq - expected} record(s) removed before this one", i)
        if record["prev"] != prev_hash:
            return bad(n, "chain-broken", "its prev is not the previous record's hash", i)
        seen[seq] = line.hash
        prev_hash, prev_seq = line.hash, seq
    count = len(lines)
    return _check_heads(heads, prev_seq, prev_hash, count, bad)


def _check_heads(
    heads: dict[str, Head | None],
    last_seq: int,
    last_hash: str,
    count: int,
    bad: Callable[[int | None, str, str, int], VerifyResult],
) -> VerifyResult:
    outside = heads["outside"]
    for where, head in heads.items():
        name = "the head outside the workspace" if where == "outside" else "the head file"
        if head is None:
            if count:
                return bad(count, "head-missing", f"{name} is missing", count)
            continue
        if not head.ok:
            return bad(count or None, "head-forged", f"{name} is not authenticated", count)
        if head.seq > last_seq:
            gone = head.seq - last_seq
            if where == "outside" and heads["workspace"] is not None and outside is not None:
                kind, why = "replaced", "the trail was replaced by an older copy"
            else:
                kind, why = "truncated", "records were removed from the end"
            return bad(count + 1, kind, f"{why}: {name} says {gone} more record(s)", count)
        if head.seq < last_seq:
            return bad(
                head.seq + 2,
                "head-behind",
                f"{name} ends at seq {head.seq}: later records were added without it",
                count,
            )
        if head.hash != last_hash:
            return bad(count, "head-mismatch", f"the last record differs from {name}", count)
    return VerifyResult(True, records=count)


__all__ = [
    "AUDIT_FILE",
    "GENESIS",
    "AuditTrail",
    "Line",
    "VerifyResult",
    "body_hash",
    "canonical",
    "record_hash",
    "trail_path",
    "verify",
]
