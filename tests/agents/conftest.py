"""Replay recorded CLI output through a driver's parser (fixtures live in tests/fixtures only)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator_nb.agents.base import StreamParser, Verdict
from orchestrator_nb.events import Event

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TRANSCRIPTS = FIXTURES / "transcripts"
HELP = FIXTURES / "help"

# The exit code of each recorded run (the table in transcripts/README.md).
TRANSCRIPT_EXIT_CODES: dict[str, int] = json.loads(
    (TRANSCRIPTS / "exit_codes.json").read_text(encoding="utf-8")
)


@dataclass
class Replay:
    events: list[Event]
    verdict: Verdict

    def of(self, kind: type) -> list[object]:
        return [e for e in self.events if isinstance(e, kind)]


def read_transcript(name: str) -> list[str]:
    return (TRANSCRIPTS / name).read_text(encoding="utf-8").splitlines()


def run_lines(
    parser: StreamParser, lines: Iterable[str], exit_code: int | None, stderr: str = ""
) -> Replay:
    events: list[Event] = []
    for line in lines:
        events.extend(parser.feed(line))
    return Replay(events, parser.finish(exit_code, stderr))


@pytest.fixture
def transcript() -> Callable[[str], list[str]]:
    """The stdout lines of a recorded run."""
    return read_transcript


@pytest.fixture
def replay() -> Callable[..., Replay]:
    """``replay(parser, name_or_lines, exit_code=<recorded>, stderr="")`` -> Replay."""

    def run(
        parser: StreamParser,
        source: str | list[str],
        exit_code: int | str | None = "recorded",
        stderr: str = "",
    ) -> Replay:
        if isinstance(source, str):
            lines = read_transcript(source)
            code = TRANSCRIPT_EXIT_CODES[source] if exit_code == "recorded" else exit_code
        else:
            lines, code = source, 0 if exit_code == "recorded" else exit_code
        assert code is None or isinstance(code, int)
        return run_lines(parser, lines, code, stderr)

    return run
