"""The public surface stays small and every exported name resolves."""

from __future__ import annotations

import subprocess
import sys

import orchestrator_nb


def test_all_names_resolve() -> None:
    for name in orchestrator_nb.__all__:
        assert getattr(orchestrator_nb, name) is not None, name


def test_import_is_lazy() -> None:
    # The kernel pays for what a cell uses, not for the whole package at import.
    heavy = ("pydantic", "tenacity", "orchestrator_nb.api")
    code = (
        "import sys, orchestrator_nb; "
        f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
