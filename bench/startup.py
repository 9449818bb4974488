"""Benchmark: what importing orchestrator-nb and loading its IPython extension cost.

Not a test. Run ``.venv/bin/python bench/startup.py``; it prints Markdown rows and writes
``build/bench/startup.json``. Every sample is a fresh interpreter timing one statement in
process (``perf_counter`` around it), so start-up of the interpreter itself is left out. Baseline,
interleaved: ``import json`` in a fresh interpreter. Subjects: ``import orchestrator_nb`` (lazy:
should cost next to nothing), ``from orchestrator_nb import run`` (the first real use), and
``%load_ext orchestrator_nb`` on a bare ``InteractiveShell`` made before the clock starts.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import Row, paired, row, write_rows  # noqa: E402

NAME = "start-up"

TIMED = """
import sys, time
{setup}
before = set(sys.modules)
start = time.perf_counter()
{statement}
elapsed = time.perf_counter() - start
{check}
print(elapsed, len(set(sys.modules) - before))
"""
SHELL = (
    "from IPython.core.interactiveshell import InteractiveShell\nsh = InteractiveShell.instance()"
)
LOADED = (
    "assert 'orchestrate' in sh.magics_manager.magics['cell'], "
    "'{ext} did not register %%orchestrate'"
)


def sample(statement: str, setup: str = "", check: str = "") -> dict[str, float]:
    """Time ``statement`` in a fresh interpreter (after ``setup``, before ``check``)."""
    code = TIMED.format(setup=setup, statement=statement, check=check)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{statement!r} failed:\n{done.stderr[-2000:]}")
    elapsed, modules = done.stdout.strip().splitlines()[-1].split()
    return {"s": float(elapsed), "modules": float(modules)}


def extension_name() -> tuple[str, str]:
    """``orchestrator_nb`` if it is an extension, else ``orchestrator_nb.notebook`` and why."""
    try:
        sample(
            "sh.run_line_magic('load_ext', 'orchestrator_nb')",
            SHELL,
            LOADED.format(ext="orchestrator_nb"),
        )
    except RuntimeError:
        return (
            "orchestrator_nb.notebook",
            "`%load_ext orchestrator_nb` registers nothing: the package has no "
            "load_ipython_extension; measured orchestrator_nb.notebook",
        )
    return "orchestrator_nb", ""


def measure(repeats: int) -> list[Row]:
    base_stmt = "import json"
    ext, ext_note = extension_name()
    cases = [
        ("import orchestrator_nb", "import orchestrator_nb", "", ""),
        ("first use: from orchestrator_nb import run", "from orchestrator_nb import run", "", ""),
        (
            f"%load_ext {ext}",
            f"sh.run_line_magic('load_ext', {ext!r})",
            SHELL,
            LOADED.format(ext=ext),
        ),
    ]
    rows: list[Row] = []
    for label, statement, setup, check in cases:
        modules: list[float] = []

        def base() -> float:
            return sample(base_stmt)["s"]

        def subject(
            statement: str = statement,
            setup: str = setup,
            check: str = check,
            modules: list[float] = modules,
        ) -> float:
            got = sample(statement, setup, check)
            modules.append(got["modules"])
            return got["s"]

        b, s = paired(base, subject, repeats)
        note = f"{int(max(modules))} modules loaded"
        if label.startswith("%load_ext"):
            note += "; the shell exists before the clock starts"
            if ext_note:
                note += "; " + ext_note
        rows.append(
            row(
                NAME,
                label,
                baseline_label="import json",
                baseline=b,
                subject_label=label.split(": ")[-1],
                subject=s,
                note=note,
            )
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    write_rows("startup", measure(args.repeats), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
