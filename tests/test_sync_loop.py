"""run_sync inside a running loop (a kernel): cells share one loop; a nested call still returns."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator_nb._sync import run_sync


async def _loop_id() -> int:
    return id(asyncio.get_running_loop())


async def test_cells_share_one_loop_and_a_nested_call_does_not_deadlock() -> None:
    first, second = run_sync(_loop_id), run_sync(_loop_id)
    assert first == second != id(asyncio.get_running_loop())  # warm agents live on it

    async def nested() -> int:
        return run_sync(_loop_id)

    assert run_sync(nested) not in (first, id(asyncio.get_running_loop()))


async def test_an_error_and_a_cancel_reach_the_caller() -> None:
    async def boom() -> None:
        raise ValueError("bad input")

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(ValueError, match="bad input"):
        run_sync(boom)
    with pytest.raises(asyncio.CancelledError):
        run_sync(cancelled)
