"""A run's rehearsal: started for the run, or kept for its session between cells.

A session's rehearsed runs share a CLI home (:func:`rehearsal_home`), so native sessions resume
across them. In a kernel they also share the scripted server, one per scenario: the session's
warm ACP agents (agents/acp/warm.py) point at the server they were started with, so a
rehearsed follow-up or a new task in the next cell finds them still warm, as it does without
rehearsal. Each run meets the scenario afresh (its faults fire again, the recording starts
over). The kept server ends with ``Session.close_agents()``, when a run of the session names
another scenario (or an edited scenario file), or at interpreter exit. A second run of the
session while the first is under way gets a server of its own, as the warm pool does.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._sync import on_kernel_loop
from ..sessions import Session

if TYPE_CHECKING:
    from ..rehearsal.session import Rehearsal

_HOME_ROOT: Path | None = None


def rehearsal_home(session_id: str) -> Path:
    """A CLI home kept for the process's life, so native sessions resume across runs."""
    global _HOME_ROOT
    if _HOME_ROOT is None:
        _HOME_ROOT = Path(tempfile.mkdtemp(prefix="orchestrator-nb-rehearsal-"))
        atexit.register(shutil.rmtree, _HOME_ROOT, True)
    home = _HOME_ROOT / session_id
    home.mkdir(exist_ok=True)
    return home


@dataclass
class _Kept:
    scenario: str  # what was asked for, see _scenario_key
    rehearsal: Rehearsal
    busy: bool = False


_KEPT: dict[str, _Kept] = {}  # session id -> its kept rehearsal
_KEPT_LOCK = threading.Lock()


def _scenario_key(rehearsal: Any) -> str | None:
    """What a kept server must have been started for; None: never kept (a Scenario object)."""
    if not isinstance(rehearsal, (str, os.PathLike)):
        return None
    path = Path(rehearsal)
    try:
        st = path.stat()
    except OSError:
        return str(rehearsal)  # a shipped scenario's name
    return f"{path.resolve()}:{st.st_mtime_ns}:{st.st_size}"  # an edited file starts anew


def _claim(session_id: str, scenario: str) -> tuple[_Kept | None, bool, Rehearsal | None]:
    """The session's kept rehearsal for ``scenario`` (marked busy), whether a new one may be
    kept (not while another run of the session uses the kept one), and a stale one to close."""
    with _KEPT_LOCK:
        kept = _KEPT.get(session_id)
        if kept is not None and kept.busy:
            return None, False, None
        stale = None
        if kept is not None and (kept.scenario != scenario or kept.rehearsal.closed):
            stale = _KEPT.pop(session_id).rehearsal
            kept = None
        if kept is not None:
            kept.busy = True
        return kept, True, stale


def close_session_rehearsal(session_id: str) -> None:
    """Stop the scripted server kept for the session, if any."""
    with _KEPT_LOCK:
        kept = _KEPT.pop(session_id, None)
    if kept is not None:
        kept.rehearsal.close()


@contextlib.asynccontextmanager
async def open_rehearsal(
    rehearsal: Any, *, workspace: Path, session: Session | None
) -> AsyncIterator[Any]:
    """The rehearsal endpoint of a run: a scenario (name, path or Scenario) is started through
    the one rehearsal scope, with the session's CLI home so that native sessions survive
    between its runs, and kept for the session's next run in a kernel (see the module); a
    running rehearsal (or its endpoint) is used as it is."""
    if rehearsal is None:
        yield None
        return
    from ..rehearsal.endpoint import rehearsal_scope
    from ..rehearsal.session import Rehearsal

    home = rehearsal_home(session.id) if session is not None else None
    scenario = _scenario_key(rehearsal) if session is not None and on_kernel_loop() else None
    kept, may_keep, stale = None, False, None
    if session is not None and scenario is not None:
        kept, may_keep, stale = _claim(session.id, scenario)
    if stale is not None:
        stale.close()
    if kept is None and not may_keep:
        with rehearsal_scope(rehearsal, workspace=workspace, home=home) as endpoint:
            yield endpoint
        return
    if kept is None:
        # No await since _claim: on the kernel's loop no other run of the session came between.
        assert session is not None and scenario is not None  # may_keep says so
        kept = _Kept(scenario, Rehearsal(rehearsal, home=home, workspace=workspace), busy=True)
        with _KEPT_LOCK:
            _KEPT[session.id] = kept
    else:
        kept.rehearsal.new_run(workspace)
    try:
        yield kept.rehearsal.endpoint
    finally:
        kept.busy = False


__all__ = ["close_session_rehearsal", "open_rehearsal", "rehearsal_home"]
