"""In a real ipykernel: an exported session re-runs what happened, and mistakes read clearly.

A rehearsed turn is exported as a notebook, and that notebook is executed as it is: its cell
rehearses again, in the folder the turn ran in (not the notebook's folder, and not against the
real agents). An empty ``%%orchestrate`` cell gets the project's message, not IPython's.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat import v4

from orchestrator_nb.agents.registry import agents_bin_dirs

pytestmark = [pytest.mark.kernel, pytest.mark.real_cli, pytest.mark.timeout(240)]
BIN = agents_bin_dirs()[0]


def need(*agents: str) -> None:
    missing = [a for a in agents if not (BIN / a).exists()]
    if shutil.which("node") is None or missing:
        pytest.skip(f"node or {', '.join(missing)} missing in {BIN}: run `make agents`")


def execute(nb: Any, cwd: Path) -> Any:
    NotebookClient(
        nb,
        timeout=180,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(cwd)}},
    ).execute()
    return nb


def outputs(cell: Any, kind: str) -> list[str]:
    found = []
    for o in cell.outputs:
        if o.output_type == kind == "error":
            found.append(f"{o.ename}: {o.evalue}")
        elif o.output_type == kind == "stream":
            found.append(o.text)
        elif o.output_type == kind == "execute_result":
            found.append(o.data["text/plain"])
    return found


def test_an_exported_rehearsal_reruns_as_a_rehearsal_in_its_folder(tmp_path: Path) -> None:
    need("claude")
    ws, elsewhere = tmp_path / "ws", tmp_path / "elsewhere"
    elsewhere.mkdir()
    export = tmp_path / "session.ipynb"
    first = v4.new_notebook(
        cells=[
            v4.new_code_cell("%load_ext orchestrator_nb"),
            v4.new_code_cell(
                f"%%orchestrate --rehearse write-file --workspace {ws} -a claude\n"
                "Please create hello.txt"
            ),
            v4.new_code_cell(f"%orchestrate session export {export}"),
            v4.new_code_cell(f"%%orchestrate --workspace {ws}"),  # nothing below the line
        ]
    )
    execute(first, tmp_path)
    assert outputs(first.cells[1], "stream")[0] == f"created the folder {ws} (--workspace {ws})\n"
    assert not outputs(first.cells[1], "error") and (ws / "hello.txt").read_text() == "hi\n"
    (empty,) = outputs(first.cells[3], "stream")  # IPython shows a UsageError on stderr
    assert empty.startswith("UsageError: the cell body is the task and it is empty")
    assert "Did you mean" not in empty

    again = nbformat.read(export, as_version=4)
    nbformat.validate(again)
    assert again.cells[1].source == "%load_ext orchestrator_nb"
    assert again.cells[2].source == (
        f"%%orchestrate -a claude --workspace {ws} --rehearse write-file\nPlease create hello.txt"
    )
    assert "**Rehearsal:** every turn ran under rehearsal" in again.cells[0].source
    (ws / "hello.txt").unlink()
    execute(again, elsewhere)  # opened from another folder: the cell still works in `ws`
    assert not any(outputs(c, "error") for c in again.cells if c.cell_type == "code")
    (result,) = outputs(again.cells[2], "execute_result")
    assert result.startswith("workflow agent:claude: completed")
    assert (ws / "hello.txt").read_text() == "hi\n"
    assert list(elsewhere.iterdir()) == []  # nothing ran in the notebook's own folder
