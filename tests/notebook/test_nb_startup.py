"""A kernel that imports the package and loads the extension pays for neither the run machinery
nor the optional extras until a cell runs (checked on ``sys.modules`` in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# What a run, a widget, an export, the dashboard or a scale-out may need, and a start-up must not.
HEAVY = (
    "pydantic",
    "yaml",
    "jinja2",
    "tenacity",
    "ipywidgets",
    "nbformat",
    "prometheus_client",
    "cryptography",
    "ray",
    "acp",
    "opentelemetry",
    "asyncio.subprocess",
    "orchestrator_nb.config",
    "orchestrator_nb.sessions",
    "orchestrator_nb.workflow.engine",
    "orchestrator_nb.runs",
    "orchestrator_nb.process",
)

PROBE = """
import json, sys, threading
from IPython.core.interactiveshell import InteractiveShell

main = threading.get_ident()
here = []  # modules imported by this (the kernel's) thread


class Record:
    def find_spec(self, name, path=None, target=None):
        if threading.get_ident() == main:
            here.append(name)
        return None


shell = InteractiveShell.instance()
sys.meta_path.insert(0, Record())
import orchestrator_nb
after_import = list(here)
shell.run_line_magic("load_ext", "orchestrator_nb")
after_load = list(here)
doc = shell.magics_manager.magics["cell"]["orchestrate"].__doc__
from orchestrator_nb import _preload
_preload.wait()
ahead = sorted(sys.modules)
shell.run_line_magic("orchestrate", "workflows")
print(json.dumps({"import": after_import, "load": after_load, "doc": doc, "ahead": ahead,
                  "used": here[len(after_load):]}))
"""


def _loaded(tmp_path: Path) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # an empty folder: no leftovers of a dead run to stop
        check=True,
    )
    loaded: dict[str, list[str]] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m in HEAVY or m.startswith(tuple(h + "." for h in HEAVY))]


def test_import_and_load_ext_leave_the_heavy_modules_to_the_background(tmp_path: Path) -> None:
    loaded = _loaded(tmp_path)
    # The kernel's own thread imports none of the run machinery nor the extras...
    assert _heavy(loaded["import"]) == []
    assert _heavy(loaded["load"]) == []
    # ...and the stand-in registered at load documents every option, as the real magic does.
    for option in ("--max-iterations N", "--budget USD", "--rehearse SCENARIO", "--isolate"):
        assert option in str(loaded["doc"])
    # While the first cell is written, what a run needs is imported in the background, and
    # only that: widgets, exports, the dashboard, Ray and the ACP SDK wait for their use.
    ahead = loaded["ahead"]
    for needed in ("orchestrator_nb.config", "orchestrator_nb.workflow.engine", "pydantic"):
        assert needed in ahead
    for extra in ("ipywidgets", "nbformat", "ray", "acp"):
        assert extra not in ahead
    # So the first use finds the machinery in place: the kernel's thread imports none of it.
    assert _heavy(loaded["used"]) == []


def test_the_first_use_replaces_the_stand_in_with_the_real_magics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from orchestrator_nb.notebook import load_ipython_extension, unload_ipython_extension
    from orchestrator_nb.notebook.magics import OrchestratorMagics

    monkeypatch.chdir(tmp_path)  # the session store and leftovers check look at the cwd
    shell = InteractiveShell.instance()
    try:
        load_ipython_extension(shell)
        before = shell.magics_manager.magics["line"]["orchestrate"]
        assert not isinstance(getattr(before, "__self__", None), OrchestratorMagics)
        # A first cell with nothing below the magic gets the project's message, not IPython's.
        error = shell.run_cell("%%orchestrate").error_in_exec
        assert str(error).startswith("the cell body is the task and it is empty"), error
        assert "default" in str(shell.run_line_magic("orchestrate", "workflows"))
        for kind in ("line", "cell"):
            bound = shell.magics_manager.magics[kind]["orchestrate"]
            assert isinstance(bound.__self__, OrchestratorMagics)
        assert "default" in str(shell.run_line_magic("orchestrate", "workflows"))
    finally:
        unload_ipython_extension(shell)
        InteractiveShell.clear_instance()
    assert "orchestrate" not in shell.magics_manager.magics["line"]
