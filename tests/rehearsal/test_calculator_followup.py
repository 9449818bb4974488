"""The README's follow-up, as written, under rehearsal with the real CLIs.

``Write a small calculator module with tests.`` then ``now add a pow function`` in the same
folder and session: the second run is a follow-up, codex adds ``pow`` and its test, the review
checks them, and the files really hold them (the tests the agents wrote pass).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import orchestrator_nb as onb
from orchestrator_nb.agents.registry import agents_bin_dirs
from orchestrator_nb.sessions import Session

pytestmark = [pytest.mark.real_cli, pytest.mark.timeout(240)]
BIN = agents_bin_dirs()[0]


def need(*agents: str) -> None:
    missing = [a for a in agents if not (BIN / a).exists()]
    if shutil.which("node") is None or missing:
        pytest.skip(f"node or {', '.join(missing)} missing in {BIN}: run `make agents`")


def test_now_add_a_pow_function(tmp_path: Path) -> None:
    need("codex", "gemini", "claude")
    ws = tmp_path / "calc"
    ws.mkdir()
    session = Session.create("readme")
    first = onb.run(
        "Write a small calculator module with tests.",
        workspace=ws,
        rehearsal="calculator",
        session=session,
    )
    assert first.ok, first.error
    second = onb.run(
        "now add a pow function", workspace=ws, rehearsal="calculator", session=session
    )
    assert second.ok, second.error
    turn = session.turns[-1]
    assert turn.followup and turn.decision.startswith("↪ follow-up of turn 1")
    assert turn.rehearsal == "calculator"
    ids = [(s.step_id, s.iteration) for s in second.steps]
    assert ids == [("implement", None), ("review", 1), ("refine", 1), ("review", 2)]
    review = second.steps[1].text  # the first round
    assert "pow() is in calc.py and test_pow checks pow(2, 10) == 1024" in review
    assert '"suggestions": []' in second.steps[-1].text
    calc = (ws / "calc.py").read_text()
    assert "def pow(a: float, b: float) -> float:\n    return a**b\n" in calc
    assert '__all__ = ["add", "div", "mul", "pow", "sub"]' in calc
    assert "raise ZeroDivisionError" in calc  # the first turn's work is still there
    assert "def test_pow(self) -> None:" in (ws / "test_calc.py").read_text()
    done = subprocess.run(
        [sys.executable, "-m", "unittest", "-q", "test_calc"],
        cwd=ws,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Ran 6 tests" in done.stderr
