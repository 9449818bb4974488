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


def test_secrets_can_be_registered_from_the_package() -> None:
    from orchestrator_nb.observe.redact import redact

    value = "registered-from-the-public-api-4f3e2d"
    orchestrator_nb.secrets.add(value)
    assert "secrets" in orchestrator_nb.__all__
    assert value not in redact(f"the value is {value}")


def test_agents_status_stays_callable_once_the_package_is_in_use() -> None:
    # The README's orchestrator_nb.agents.status(): importing the run machinery (which loads
    # the drivers' modules) must not turn the name into a module.
    code = (
        "import orchestrator_nb.api, orchestrator_nb.agents as a; print(type(a.status()).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "AgentStatusTable"
