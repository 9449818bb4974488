"""run_sync: a typed error from the Python API reads as one exception, not the loop's frames."""

from __future__ import annotations

import asyncio
import traceback
from pathlib import Path

import pytest

import orchestrator_nb as onb
from orchestrator_nb._sync import run_sync
from orchestrator_nb.errors import ConfigError


def _frames(exc: BaseException) -> list[str]:
    return [f"{Path(f.filename).name}:{f.name}" for f in traceback.extract_tb(exc.__traceback__)]


def _shown(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def test_a_typed_error_ends_the_traceback_at_the_call(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        onb.run("x", workflow="nope", workspace=tmp_path)
    frames = _frames(caught.value)
    assert frames[-2:] == ["api.py:run", "_sync.py:run_sync"], frames
    text = _shown(caught.value)
    assert "asyncio" not in text and "engine.py" not in text and "During handling" not in text
    assert text.rstrip().splitlines()[-2].startswith("orchestrator_nb.errors.ConfigError: unknown")


def test_the_same_inside_a_running_loop(tmp_path: Path) -> None:
    async def in_a_kernel() -> BaseException:
        try:
            onb.run("x", workflow="nope", workspace=tmp_path)  # runs in a worker thread
        except ConfigError as exc:
            return exc
        raise AssertionError("no error")

    exc = asyncio.run(in_a_kernel())
    assert _frames(exc)[-1] == "_sync.py:run_sync"
    assert "threading" not in _shown(exc) and "asyncio" not in _shown(exc)


def test_a_bug_keeps_its_whole_traceback() -> None:
    async def broken() -> None:
        {}["missing"]

    with pytest.raises(KeyError) as caught:
        run_sync(broken)
    assert _frames(caught.value)[-1] == "test_sync.py:broken"
