"""`make demo`: execute the quickstart notebook under rehearsal and summarise what happened.

The notebook runs through the console script's ``run`` (papermill with nbclient), so the demo
is exactly what a user gets from ``orchestrator-nb run``; the executed notebook and its HTML
rendering land in ``build/demo/``. Exit status: 0 when the workflow completed, else non-zero.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import cli
from .publish import say

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "01-quickstart.ipynb"


def _result_text(executed: Path) -> str | None:
    """The plain-text form of the workflow result the notebook displayed."""
    from importlib import import_module

    nbformat: Any = import_module("nbformat")  # untyped
    nb: Any = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/plain", "")
            if output.get("output_type") == "execute_result" and text.startswith("workflow "):
                return str(text)
    return None


def summary(result_text: str) -> str:
    """Steps, outcome and changed files: the result up to its final answer and diffs."""
    head, _, _ = result_text.partition("\n\n")
    return head


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator_nb.demo", description=__doc__)
    parser.add_argument("--rehearse", default="calculator", help="scenario, or None for real CLIs")
    parser.add_argument("--out", default="build/demo", help="where the results go")
    args = parser.parse_args(argv)
    if not NOTEBOOK.is_file():
        say(f"demo: {NOTEBOOK} is missing; the demo runs from a source checkout", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    executed = out / NOTEBOOK.name
    code = cli.main(
        ["run", str(NOTEBOOK), "-o", str(executed), "--html", "-p", "rehearse", args.rehearse]
    )
    text = _result_text(executed) if executed.is_file() else None
    say()
    say(f"executed notebook: {executed}")
    say(f"HTML rendering:    {executed.with_suffix('.html')}")
    if text is None:
        say("no workflow result in the notebook: see the executed notebook for the error")
        return code or 1
    say()
    say(summary(text))
    if code == 0 and not text.split("\n", 1)[0].count(": completed"):
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
