"""binder/ installs what the notebooks need: the package, its dependencies, Node.js, the CLIs."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

import nbformat
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"


def _notebook_imports() -> set[str]:
    names: set[str] = set()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code" or cell.source.lstrip().startswith("%%"):
                continue  # a cell magic's body is its own language
            # Magics are IPython syntax, not Python: drop those lines before parsing.
            source = "\n".join(
                line for line in cell.source.splitlines() if not line.lstrip().startswith("%")
            )
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Import):
                    names.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    return names


def _closure(dist: str, extras: set[str]) -> set[str]:
    """The distribution and everything it requires (with ``extras``), as installed here."""
    seen: set[str] = set()
    todo = [(dist, extras)]
    while todo:
        name, wanted = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            env = {"extra": ""}
            if req.marker is not None and not any(
                req.marker.evaluate({**env, "extra": e}) for e in wanted | {""}
            ):
                continue
            todo.append((req.name, set(req.extras)))
    return seen


def test_post_build_installs_the_package_and_the_pinned_clis() -> None:
    script = (BINDER / "postBuild").read_text()
    assert re.search(r"pip install [^\n]*-e \"\.\[lab\]\"", script)
    assert "cd .agents && npm ci" in script
    assert (BINDER / "postBuild").stat().st_mode & 0o111  # Binder runs it as a program


def test_environment_has_python_node_and_git() -> None:
    deps = yaml.safe_load((BINDER / "environment.yml").read_text())["dependencies"]
    flat = [d for d in deps if isinstance(d, str)]
    python = next(d for d in flat if d.startswith("python="))
    assert tuple(int(x) for x in python.split("=")[1].split(".")) >= (3, 10)
    node = next(d for d in flat if d.startswith("nodejs="))
    assert int(node.split("=")[1]) >= 20  # the pinned CLIs need node 20
    assert "git" in flat


def test_every_notebook_import_is_installed_by_binder() -> None:
    provided = _closure("orchestrator-nb", {"lab"})
    owners = packages_distributions()
    missing = []
    for name in sorted(_notebook_imports()):
        if name in sys.stdlib_module_names or name == "orchestrator_nb":
            continue
        dists = {d.lower().replace("_", "-") for d in owners.get(name, [])}
        if not dists & provided:
            missing.append(name)
    assert not missing, f"notebooks import what binder/postBuild does not install: {missing}"
    assert {"orchestrator_nb", "pathlib", "tempfile"} <= _notebook_imports()
