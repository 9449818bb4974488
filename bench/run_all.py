"""Run every benchmark and write the table: ``build/bench/results.md`` and ``results.json``.

``make bench`` runs this. Each benchmark runs as its own process, one after another (running
them side by side would make them measure each other), and writes ``build/bench/<name>.json``;
this script gathers those rows, adds the machine and the date, and writes the table. Every
figure in it is a subject against a baseline measured in the same run, with the median and the
interquartile range of each side. A benchmark that fails is reported in the table and makes the
exit status 1; the others still run.

Options pass through to pick benchmarks (``--only fanout,cancel``) or make the run quicker
(``--quick``: fewer repeats, for trying the suite out; its numbers are noisier).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BUILD, ROOT, Row, fmt_diff, machine, markdown, row

BENCH = Path(__file__).resolve().parent
# name → (script, arguments for a full run, arguments for --quick)
SUITE: dict[str, tuple[str, list[str], list[str]]] = {
    "step_overhead": ("step_overhead.py", [], ["--repeats", "6", "--short-repeats", "4"]),
    "fanout": ("fanout.py", [], ["--repeats", "2", "--sequence-repeats", "1"]),
    "streaming": ("streaming.py", [], ["--repeats", "1", "--events", "40000"]),
    "workspace": ("workspace_snapshot.py", ["--files", "50000"], ["--repeats", "5"]),
    "big_repo": ("big_repo.py", [], ["--repeats", "2", "--files", "10000"]),
    "end_to_end": ("end_to_end.py", [], ["--repeats", "1"]),
    "batch_scale": ("batch_scale.py", [], ["--sizes", "100x10"]),
    "sessions": ("sessions.py", [], ["--repeats", "3"]),
    "startup": ("startup.py", ["--repeats", "8"], ["--repeats", "3"]),
    "cancel": ("cancel.py", ["--repeats", "3"], ["--repeats", "1"]),
    "real_clis": ("real_clis.py", [], ["--repeats", "1"]),
    "acp_warm": ("acp_warm.py", [], ["--repeats", "1"]),
}
WORKSPACE_TARGET = 2.0


def workspace_rows(data: dict[str, Any]) -> list[Row]:
    """Rows from workspace_snapshot.py's own JSON (it predates the row format)."""
    git = data.get("git_status_samples_s") or data["git_status_median_s"]
    ours = data.get("snapshot_diff_samples_s") or data["snapshot_diff_median_s"]
    tree = data.get("tree_mode_samples_s") or data["tree_mode_snapshot_diff_median_s"]
    files = f"{data['files']:,} files, one changed"
    return [
        row(
            "workspace",
            f"snapshot + diff, {files} (git workspace)",
            baseline_label="git status",
            baseline=git,
            subject_label="Workspace snapshot+changes",
            subject=ours,
            target=f"≤ ~{WORKSPACE_TARGET:g}× git status",
            passed=data["ratio"] <= WORKSPACE_TARGET,
        ),
        row(
            "workspace",
            f"the same without git (tree walk with stat cache), {files}",
            baseline_label="git status",
            baseline=git,
            subject_label="tree walk snapshot+changes",
            subject=tree,
            note=f"cold first snapshot {data['tree_mode_cold_snapshot_s']:.1f} s",
        ),
    ]


def run_one(name: str, quick: bool) -> tuple[list[Row], dict[str, Any], float, str | None]:
    script, full, fast = SUITE[name]
    out = BUILD / f"{name}.json"
    out.unlink(missing_ok=True)
    argv = [sys.executable, str(BENCH / script), *(fast if quick else full), "--out", str(out)]
    print(f"== {name}: {' '.join(argv[1:])}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    print(done.stdout, end="", flush=True)
    if done.returncode != 0 or not out.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        print("\n".join(tail), file=sys.stderr)
        return [], {}, elapsed, tail[-1] if tail else f"exit {done.returncode}"
    data: dict[str, Any] = json.loads(out.read_text())
    rows = workspace_rows(data) if name == "workspace" else data.pop("rows")
    return rows, data, elapsed, None


def targets_table(rows: list[Row]) -> str:
    lines = ["| target (issues 10, 22) | measured | result |", "|---|---|---|"]
    for r in rows:
        if r["target"] is None:
            continue
        subject = r["subject"]
        if r["unit"] == "s":
            got = f"{r['subject']['median'] * 1000:.0f} ms" if subject["median"] < 1 else ""
            got = got or f"{subject['median']:.2f} s"
            got += f", {fmt_diff(r)}"
            got += f", {r['ratio']:.2f}×" if r["ratio"] is not None else ""
        else:
            got = f"{subject['median']:.3g} {r['unit']}"
        verdict = "pass" if r["pass"] else "**miss**"
        lines.append(f"| {r['bench']}: {r['measure']} — {r['target']} | {got} | {verdict} |")
    return "\n".join(lines)


def machine_line(host: dict[str, Any]) -> str:
    mem = f"{host['memory_gb']:g} GB" if host["memory_gb"] else "? GB"
    return (
        f"Run {host['date']} on {host['cpu']}, {host['cores']} cores, {mem} RAM; "
        f"{host['python']}; {host['os']}; {host['git'] or 'git ?'}; "
        f"the CLIs' node {host['node'] or '?'}."
    )


LEGEND = (
    "Every figure is measured against a baseline in the same run, the two interleaved; each "
    "side shows its median and [interquartile range]. *diff* is subject − baseline, *ratio* "
    "subject / baseline (for rates, higher is better)."
)


def render(
    rows: list[Row], host: dict[str, Any], failures: dict[str, str], notes: list[str]
) -> str:
    parts = [
        "# orchestrator-nb benchmarks",
        "",
        machine_line(host),
        "",
        LEGEND,
        "",
        "## Targets",
        "",
        targets_table(rows),
        "",
        "## All measurements",
        "",
        markdown(rows),
    ]
    if failures or notes:
        parts += ["", "## Notes", ""]
        parts += [f"- {name} did not finish: {why}" for name, why in failures.items()]
        parts += [f"- {note}" for note in notes]
    return "\n".join(parts) + "\n"


def readme_section(rows: list[Row], host: dict[str, Any]) -> str:
    """The README's benchmark section, regenerated by every run (paste it over the old one)."""
    parts = [
        "## Benchmarks",
        "",
        "`make bench` measures what orchestration costs, each figure against a baseline run "
        "side by side with it (fake agent CLIs replaying real transcripts, and the real CLIs "
        "under rehearsal); it takes about twenty minutes and writes `build/bench/results.md` "
        "and `results.json`. Benchmarks are not tests: nothing in `make test` checks a time.",
        "",
        machine_line(host),
        "",
        targets_table(rows),
        "",
        "<details><summary>All measurements</summary>",
        "",
        LEGEND,
        "",
        markdown(rows),
        "",
        "</details>",
    ]
    return "\n".join(parts) + "\n"


def write_markdown(
    rows: list[Row], host: dict[str, Any], failures: dict[str, str], notes: list[str]
) -> None:
    (BUILD / "results.md").write_text(render(rows, host, failures, notes))
    (BUILD / "README-section.md").write_text(readme_section(rows, host))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help=f"comma-separated, from: {', '.join(SUITE)}")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier)")
    parser.add_argument(
        "--render", action="store_true", help="only rewrite the Markdown from results.json"
    )
    args = parser.parse_args()
    if args.render:
        saved = json.loads((BUILD / "results.json").read_text())
        write_markdown(saved["rows"], saved["machine"], saved["failures"], saved["notes"])
        return 0
    names = args.only.split(",") if args.only else list(SUITE)
    unknown = [n for n in names if n not in SUITE]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    BUILD.mkdir(parents=True, exist_ok=True)
    host = machine()
    rows: list[Row] = []
    extras: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    failures: dict[str, str] = {}
    started = time.perf_counter()
    for name in names:
        got, extra, elapsed, failed = run_one(name, args.quick)
        rows += got
        extras[name] = extra
        seconds[name] = round(elapsed, 1)
        if failed is not None:
            failures[name] = failed
    notes = []
    for skipped in extras.get("real_clis", {}).get("skipped", []):
        notes.append(f"real CLI left out: {skipped}")
    if extras.get("streaming", {}).get("display_measured") is False:
        notes.append("streaming: the live display was not measured (no notebook.live module)")
    if args.quick:
        notes.append("--quick run: fewer repeats than the full suite")
    total = time.perf_counter() - started
    result = {
        "machine": host,
        "quick": args.quick,
        "seconds": {**seconds, "total": round(total, 1)},
        "failures": failures,
        "notes": notes,
        "rows": rows,
        "details": extras,
    }
    (BUILD / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    write_markdown(rows, host, failures, notes)
    print(f"\nwrote {BUILD / 'results.md'} and results.json in {total:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
