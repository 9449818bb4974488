"""The step cache: keys, memory and disk, expiry, atomic writes, corrupt files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from orchestrator_nb.workflow.cache import StepCache


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


VALUE: dict[str, Any] = {"agent": "codex", "ok": True, "text": "done ✓", "usage": {"in": 3}}


def _key(prompt: str = "fix the bug") -> str:
    return StepCache.key_for("codex", "0.46.0", "gpt-5", prompt, "ws-abc")


def test_key_is_stable_and_depends_on_every_input() -> None:
    base = ("codex", "0.46.0", "gpt-5", "fix the bug", "ws-abc")
    key = StepCache.key_for(*base)
    assert key == StepCache.key_for(*base)
    assert len(key) == 64 and int(key, 16) >= 0
    variants = [
        ("claude", *base[1:]),
        (base[0], "0.47.0", *base[2:]),
        (*base[:2], None, *base[3:]),
        (*base[:3], "fix the bug ", base[4]),
        (*base[:4], "ws-abd"),
    ]
    assert len({StepCache.key_for(*v) for v in variants} | {key}) == len(variants) + 1


def test_key_has_no_separator_ambiguity() -> None:
    # A canonical JSON encoding, not string concatenation: moving text between fields matters.
    assert StepCache.key_for("a", "b", "c", "d", "e") != StepCache.key_for("a", "b", "cd", "", "e")


def test_memory_only_cache(tmp_path: Path) -> None:
    cache = StepCache(None, ttl_s=60, clock=FakeClock())
    assert cache.get(_key()) is None
    cache.put(_key(), VALUE)
    assert cache.get(_key()) == VALUE
    assert (cache.hits, cache.misses) == (1, 1)
    assert list(tmp_path.iterdir()) == []


def test_a_hit_is_a_copy(tmp_path: Path) -> None:
    cache = StepCache(tmp_path, ttl_s=60, clock=FakeClock())
    cache.put(_key(), VALUE)
    got = cache.get(_key())
    assert got is not None
    got["text"] = "changed"
    got["usage"]["in"] = 99
    assert cache.get(_key()) == VALUE


def test_disk_layout_and_a_second_cache_reads_it(tmp_path: Path) -> None:
    clock = FakeClock()
    StepCache(tmp_path, ttl_s=60, clock=clock).put(_key(), VALUE)
    path = tmp_path / _key()[:2] / f"{_key()}.json"
    assert json.loads(path.read_text(encoding="utf-8"))["value"] == VALUE
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left
    fresh = StepCache(tmp_path, ttl_s=60, clock=clock)
    assert fresh.get(_key()) == VALUE
    assert (fresh.hits, fresh.misses) == (1, 0)
    path.unlink()
    assert fresh.get(_key()) == VALUE  # now from memory


def test_expired_entries_are_misses_and_removed(tmp_path: Path) -> None:
    clock = FakeClock()
    cache = StepCache(tmp_path, ttl_s=60, clock=clock)
    cache.put(_key(), VALUE)
    path = tmp_path / _key()[:2] / f"{_key()}.json"
    clock.now += 59.9
    assert cache.get(_key()) == VALUE
    clock.now += 0.1
    assert cache.get(_key()) is None
    assert not path.exists()
    assert (cache.hits, cache.misses) == (1, 1)


def test_expiry_counts_from_the_write_not_the_read(tmp_path: Path) -> None:
    clock = FakeClock()
    StepCache(tmp_path, ttl_s=60, clock=clock).put(_key(), VALUE)
    clock.now += 61
    later = StepCache(tmp_path, ttl_s=60, clock=clock)
    assert later.get(_key()) is None
    assert not (tmp_path / _key()[:2] / f"{_key()}.json").exists()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'{"format": 1, "created": 1, "value": {}}',  # no key
        b'{"format": 99, "key": "KEY", "created": 1, "value": {}}',
        b'{"format": 1, "key": "KEY", "created": "yesterday", "value": {}}',
        b'{"format": 1, "key": "KEY", "created": NaN, "value": {}}',
        b'{"format": 1, "key": "KEY", "created": 1, "value": [1]}',
        b"[" * 100_000,
    ],
)
def test_a_corrupt_file_is_a_miss_and_is_removed(tmp_path: Path, content: bytes) -> None:
    clock = FakeClock()
    key = _key()
    path = tmp_path / key[:2] / f"{key}.json"
    path.parent.mkdir()
    path.write_bytes(content.replace(b"KEY", key.encode()))
    cache = StepCache(tmp_path, ttl_s=1e9, clock=clock)
    assert cache.get(key) is None
    assert not path.exists()
    assert cache.misses == 1


def test_a_file_for_another_key_is_not_trusted(tmp_path: Path) -> None:
    cache = StepCache(tmp_path, ttl_s=60, clock=FakeClock())
    cache.put(_key("a"), VALUE)
    src = tmp_path / _key("a")[:2] / f"{_key('a')}.json"
    dst = tmp_path / _key("b")[:2] / f"{_key('b')}.json"
    dst.parent.mkdir(exist_ok=True)
    dst.write_bytes(src.read_bytes())
    assert StepCache(tmp_path, ttl_s=60, clock=FakeClock()).get(_key("b")) is None


def test_put_overwrites_atomically(tmp_path: Path) -> None:
    cache = StepCache(tmp_path, ttl_s=60, clock=FakeClock())
    cache.put(_key(), VALUE)
    cache.put(_key(), {"text": "second"})
    assert StepCache(tmp_path, ttl_s=60, clock=FakeClock()).get(_key()) == {"text": "second"}
    assert len(list((tmp_path / _key()[:2]).iterdir())) == 1


def test_a_failed_write_keeps_the_memory_entry_and_is_counted(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    cache = StepCache(blocker, ttl_s=60, clock=FakeClock())
    cache.put(_key(), VALUE)
    assert cache.write_errors == 1
    assert cache.last_error is not None and "not-a-dir" in cache.last_error
    assert cache.get(_key()) == VALUE


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions"
)
def test_a_read_only_cache_folder_does_not_fail(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        cache = StepCache(tmp_path, ttl_s=60, clock=FakeClock())
        cache.put(_key(), VALUE)
        assert cache.write_errors == 1
    finally:
        tmp_path.chmod(0o700)


def test_values_must_be_json_dicts(tmp_path: Path) -> None:
    cache = StepCache(tmp_path, ttl_s=60, clock=FakeClock())
    with pytest.raises(TypeError):
        cache.put(_key(), {"when": object()})
    with pytest.raises(TypeError):
        cache.put(_key(), ["not", "a", "dict"])  # type: ignore[arg-type]
    assert cache.get(_key()) is None


@pytest.mark.parametrize("key", ["", "../../etc/passwd", "A" * 64, "0" * 63, "0" * 64 + "\n"])
def test_only_real_keys_are_accepted(tmp_path: Path, key: str) -> None:
    cache = StepCache(tmp_path, ttl_s=60)
    with pytest.raises(ValueError, match="not a cache key"):
        cache.get(key)
    with pytest.raises(ValueError):
        cache.put(key, VALUE)


def test_delete_and_clear(tmp_path: Path) -> None:
    cache = StepCache(tmp_path, ttl_s=60, clock=FakeClock())
    for prompt in ("a", "b", "c"):
        cache.put(_key(prompt), VALUE)
    (tmp_path / "README").write_text("not ours")
    cache.delete(_key("a"))
    assert cache.get(_key("a")) is None
    cache.clear()
    assert cache.get(_key("b")) is None
    assert StepCache(tmp_path, ttl_s=60, clock=FakeClock()).get(_key("c")) is None
    assert (tmp_path / "README").exists()


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError):
        StepCache(None, ttl_s=0)
