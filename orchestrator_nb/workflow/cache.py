"""A cache of step results, so re-running a workflow does not pay twice for the same answer.

The key is the SHA-256 of everything that decides an answer: the agent, its CLI version, the
model, the rendered prompt and a hash of the workspace. Values are JSON-serializable dicts
(the engine turns a ``StepResult`` into one). Entries live in memory and, with a directory,
on disk as ``<directory>/<key[:2]>/<key>.json``, written atomically so a crash or a second
kernel never leaves half a file. The cache never fails a step: an unreadable, corrupt or
expired file is a miss and is removed; a failed write is counted in ``write_errors``.

Each file carries an HMAC made with a key in the user's config folder, so an entry this user's
runs did not write (one shipped inside a workspace) is a miss, never an answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import fsio

# Bumped when the stored layout changes, so old files become misses rather than bad data.
_FORMAT = 1
_KEY = re.compile(r"^[0-9a-f]{64}$")


class StepCache:
    def __init__(
        self, directory: Path | None, ttl_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.directory = Path(directory) if directory is not None else None
        self.ttl_s = ttl_s
        # Wall-clock time, not monotonic: entries on disk outlive the process.
        self._clock = clock
        # key -> (created, value as JSON text): a fresh dict on every hit, so a caller that
        # changes what it got cannot change the cache.
        self._memory: dict[str, tuple[float, str]] = {}
        self.hits = 0
        self.misses = 0
        self.write_errors = 0
        self.last_error: str | None = None

    @staticmethod
    def key_for(
        agent: str,
        cli_version: str | None,
        model: str | None,
        rendered_prompt: str,
        workspace_hash: str,
    ) -> str:
        """The cache key for one agent call."""
        canonical = json.dumps(
            {
                "format": _FORMAT,
                "agent": agent,
                "cli_version": cli_version,
                "model": model,
                "prompt": rendered_prompt,
                "workspace": workspace_hash,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached value, or None (a miss) if absent, expired or unreadable."""
        _check_key(key)
        entry = self._memory.get(key) or self._load(key)
        if entry is not None and self._expired(entry[0]):
            self.delete(key)
            entry = None
        if entry is None:
            self.misses += 1
            return None
        self._memory[key] = entry
        self.hits += 1
        value: dict[str, Any] = json.loads(entry[1])
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store ``value`` (a JSON-serializable dict) under ``key``."""
        _check_key(key)
        if not isinstance(value, dict):
            raise TypeError(f"cache values are dicts, not {type(value).__name__}")
        text = json.dumps(value, sort_keys=True)  # raises TypeError for what JSON cannot hold
        created = self._clock()
        self._memory[key] = (created, text)
        path = self._path(key)
        if path is None:
            return
        record = {"format": _FORMAT, "key": key, "created": created, "value": value}
        record["mac"] = _mac(record)
        try:
            # The engine stores redacted results; the MAC covers exactly these bytes' content.
            fsio.write_text(path, json.dumps(record, sort_keys=True), redact=False, fsync=False)
        except OSError as exc:
            # A full disk or a read-only cache folder costs the cache, never the step.
            self.write_errors += 1
            self.last_error = f"{path}: {exc}"

    def delete(self, key: str) -> None:
        _check_key(key)
        self._memory.pop(key, None)
        path = self._path(key)
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()

    def clear(self) -> None:
        """Forget every entry, in memory and on disk."""
        self._memory.clear()
        if self.directory is None or not self.directory.is_dir():
            return
        for path in self.directory.glob("??/*.json"):
            if _KEY.fullmatch(path.stem):
                with contextlib.suppress(OSError):
                    path.unlink()

    def _expired(self, created: float) -> bool:
        return self._clock() - created >= self.ttl_s

    def _path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / key[:2] / f"{key}.json"

    def _load(self, key: str) -> tuple[float, str] | None:
        path = self._path(key)
        if path is None:
            return None
        try:
            raw = fsio.read_text(path)
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, fsio.StatePathError):
            _discard(path)
            return None
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            _discard(path)
            return None
        if (
            not isinstance(record, dict)
            or record.get("format") != _FORMAT
            or record.get("key") != key
            or not isinstance(record.get("created"), (int, float))
            or not math.isfinite(record["created"])  # a NaN time would never expire
            or not isinstance(record.get("value"), dict)
            or not hmac.compare_digest(str(record.get("mac")), _mac(record))
        ):
            _discard(path)
            return None
        return float(record["created"]), json.dumps(record["value"], sort_keys=True)


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _check_key(key: str) -> None:
    # Keys become file names: only what key_for makes is accepted (no "../" ever).
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"not a cache key (64 hex digits from StepCache.key_for): {key!r}")


def _mac(record: dict[str, Any]) -> str:
    from ..observe.audit_keys import secret

    body = {k: record.get(k) for k in ("format", "key", "created", "value")}
    data = json.dumps(body, sort_keys=True).encode()
    return hmac.new(secret("cache.key") or b"", data, hashlib.sha256).hexdigest()


__all__ = ["StepCache"]
