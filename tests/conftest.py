"""Shared fixtures: fake agent executables that run through the real subprocess path."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

FAKES = Path(__file__).parent / "fakes"
FIXTURES = Path(__file__).parent / "fixtures"


def _write_exe(path: Path) -> Path:
    # A real executable file (not "python script.py"), so argv[0] resolution is exercised too.
    target = str(FAKES / "fake_agent.py")
    path.write_text(
        f"#!{sys.executable}\nimport runpy\nrunpy.run_path({target!r}, run_name='__main__')\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture(autouse=True, scope="session")
def _user_config_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The audit key, receipt key and outside heads of every run go to a folder of this test
    session, never into the real ~/.config (tests that need their own set it per test)."""
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config-home"))


@pytest.fixture
def fake_exe(tmp_path: Path) -> Callable[[str], Path]:
    """Make a fake agent executable named ``name`` in a private bin folder."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)

    def make(name: str = "fake-agent") -> Path:
        return _write_exe(bindir / name)

    return make


@pytest.fixture
def fake_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set the FAKE_* variables the fake agent reads."""

    def set_env(**values: object) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"FAKE_{key.upper()}", str(value))

    for key in list(os.environ):
        if key.startswith("FAKE_"):
            monkeypatch.delenv(key)
    return set_env
