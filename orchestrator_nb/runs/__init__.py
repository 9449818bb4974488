"""One front door for every run: a typed :class:`RunRequest`, executed by :class:`RunService`."""

from __future__ import annotations

from ..sessions import ResumePoint
from .rehearsals import open_rehearsal, rehearsal_home
from .request import RunOptions, RunRequest
from .service import RunService, SessionRecorder, settings_for

__all__ = [
    "ResumePoint",
    "RunOptions",
    "RunRequest",
    "RunService",
    "SessionRecorder",
    "open_rehearsal",
    "rehearsal_home",
    "settings_for",
]
