"""What the benchmarks share: the fake agent executable, paired timing, statistics, the row format.

Every figure is a subject measured against a baseline in the same run: the two are run in
alternation (A B B A ...) so that drift of a noisy machine hits both sides alike, and each side
is reported as median with its interquartile range. A row is a dict (see :func:`row`); each
benchmark writes its rows to ``build/bench/<name>.json`` and prints them as Markdown.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import stat
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "bench"
FAKE_SOURCE = Path(__file__).resolve().parent / "fake_agent.py"
TRANSCRIPTS = ROOT / "tests" / "fixtures" / "transcripts"
CLAUDE_VERSION = "2.1.332 (Claude Code)"  # what the claude driver accepts as genuine

Row = dict[str, Any]


# -- the fake agent ------------------------------------------------------------------------


def make_fake_agent(bindir: Path, name: str = "fake-agent") -> Path:
    """A real executable (shebang to this interpreter) that behaves as ``FAKE_*`` says.

    The benchmarks run the same file both bare and through orchestrator-nb, so the baseline pays
    the same interpreter start-up as the subject.
    """
    bindir.mkdir(parents=True, exist_ok=True)
    path = bindir / name
    path.write_text(f"#!{sys.executable}\n" + FAKE_SOURCE.read_text(encoding="utf-8"))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def fake_env(**values: object) -> dict[str, str]:
    """``os.environ`` without stale ``FAKE_*`` keys, plus ``FAKE_<KEY>`` for each value."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_")}
    env["FAKE_VERSION"] = CLAUDE_VERSION
    env.update({f"FAKE_{k.upper()}": str(v) for k, v in values.items()})
    return env


def apply_env(env: dict[str, str]) -> None:
    """Make ``env``'s ``FAKE_*`` keys this process's (the runner inherits os.environ)."""
    for key in [k for k in os.environ if k.startswith("FAKE_")]:
        del os.environ[key]
    os.environ.update({k: v for k, v in env.items() if k.startswith("FAKE_")})


# -- timing --------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired(
    baseline: Callable[[], float], subject: Callable[[], float], repeats: int, warmup: int = 1
) -> tuple[list[float], list[float]]:
    """Samples of both sides, interleaved A B B A so slow drift cancels out.

    Each callable returns its own measurement (seconds, or any figure where lower is better).
    """
    for _ in range(warmup):
        baseline()
        subject()
    base: list[float] = []
    subj: list[float] = []
    for i in range(repeats):
        if i % 2 == 0:
            base.append(baseline())
            subj.append(subject())
        else:
            subj.append(subject())
            base.append(baseline())
    return base, subj


def summary(samples: Sequence[float]) -> dict[str, float | int]:
    """Median, quartiles, min and max of ``samples``."""
    ordered = sorted(samples)
    if len(ordered) >= 2:
        q1, _q2, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "p25": q1,
        "p75": q3,
        "min": ordered[0],
        "max": ordered[-1],
    }


def row(
    bench: str,
    measure: str,
    *,
    baseline_label: str,
    baseline: Sequence[float] | float,
    subject_label: str,
    subject: Sequence[float] | float,
    unit: str = "s",
    target: str | None = None,
    passed: bool | None = None,
    note: str = "",
    higher_is_better: bool = False,
    show_ratio: bool = True,
    max_ratio: float | None = None,
) -> Row:
    """One line of the table: both sides' statistics, their difference and ratio.

    ``unit`` "s" values are shown in ms or s; "events/s", "msg/s", "MB" and "x" as they are.
    ``max_ratio``: the target as a ratio of the medians; the row passes when the ratio it
    shows is at most that (``target`` defaults to "≤ N×").
    """
    base = summary([baseline] if isinstance(baseline, (int, float)) else baseline)
    subj = summary([subject] if isinstance(subject, (int, float)) else subject)
    diff = subj["median"] - base["median"]
    ratio = subj["median"] / base["median"] if base["median"] and show_ratio else None
    if max_ratio is not None:
        target = target or f"≤ {max_ratio:g}×"
        passed = ratio is not None and ratio <= max_ratio
    return {
        "bench": bench,
        "measure": measure,
        "unit": unit,
        "baseline": {"label": baseline_label, **base},
        "subject": {"label": subject_label, **subj},
        "difference": diff,
        "ratio": ratio,
        "higher_is_better": higher_is_better,
        "target": target,
        "pass": passed,
        "note": note,
    }


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        if abs(value) < 1.0:
            return f"{value * 1000:.1f} ms"
        return f"{value:.2f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}".strip()
    return f"{value:.3g} {unit}".strip()


def fmt_side(side: dict[str, Any], unit: str) -> str:
    spread = ""
    if side["n"] > 1:
        spread = f" [{fmt(side['p25'], unit)}–{fmt(side['p75'], unit)}]"
    return f"{side['label']}: **{fmt(side['median'], unit)}**{spread}"


def fmt_diff(r: Row) -> str:
    diff = r["difference"]
    sign = "+" if diff >= 0 else "−"
    return f"{sign}{fmt(abs(diff), r['unit'])}"


def markdown(rows: Sequence[Row], *, with_bench: bool = True) -> str:
    head = ["measure", "baseline (median [IQR])", "subject (median [IQR])", "diff", "ratio"]
    head += ["target", "result"]
    if with_bench:
        head.insert(0, "benchmark")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        verdict = {True: "pass", False: "**miss**", None: "-"}[r["pass"]]
        ratio = f"{r['ratio']:.2f}×" if r["ratio"] is not None else "-"
        measure = r["measure"] + (f" ({r['note']})" if r["note"] else "")
        cells = [
            measure,
            fmt_side(r["baseline"], r["unit"]),
            fmt_side(r["subject"], r["unit"]),
            fmt_diff(r),
            ratio,
            r["target"] or "-",
            verdict,
        ]
        if with_bench:
            cells.insert(0, r["bench"])
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def write_rows(name: str, rows: list[Row], out: Path | None, **extra: Any) -> Path:
    """Write ``{"bench", "rows", ...}`` as JSON and print the rows as Markdown."""
    target = out or BUILD / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {"bench": name, "rows": rows, "python": platform.python_version(), **extra}
    target.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(markdown(rows, with_bench=False))
    print(f"wrote {target}")
    return target


# -- the machine ---------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def _tool_version(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else None


def _cli_node() -> str | None:
    """The Node the agent CLIs run on: the one ``make agents`` put beside them (the drivers put
    that folder first on PATH, agents/_npm.py), else the system's."""
    from orchestrator_nb.agents._npm import node_beside
    from orchestrator_nb.agents.registry import agents_bin_dirs

    beside = [node for folder in agents_bin_dirs() if (node := node_beside(folder))]
    return _tool_version([beside[0] if beside else "node", "--version"])


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, Python, OS and the date, for the table's caption."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": platform.platform(),
        "git": _tool_version(["git", "--version"]),
        "node": _cli_node(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return peak_rss_mb()


async def apaired(
    baseline: Callable[[], Awaitable[float]],
    subject: Callable[[], Awaitable[float]],
    repeats: int,
    warmup: int = 1,
) -> tuple[list[float], list[float]]:
    """:func:`paired` for coroutines, on the running loop."""
    for _ in range(warmup):
        await baseline()
        await subject()
    base: list[float] = []
    subj: list[float] = []
    for i in range(repeats):
        if i % 2 == 0:
            base.append(await baseline())
            subj.append(await subject())
        else:
            subj.append(await subject())
            base.append(await baseline())
    return base, subj


# A fixed identity and locale: commits work on a machine without a git config, alike every run.
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
    "LC_ALL": "C",
}


def run_bare(
    argv: Sequence[str],
    *,
    cwd: str | Path,
    env: dict[str, str],
    stdin: bytes | None,
    timeout: float,
    name: str | None = None,
) -> None:
    """A CLI invocation as a bare script makes it (the baseline of the real-CLI rows): the same
    argv, environment and stdin, its own session, output captured; a failure raises."""
    done = subprocess.run(
        list(argv),
        cwd=cwd,
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        start_new_session=True,
        check=False,
        timeout=timeout,
    )
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace")[-2000:]
        raise RuntimeError(f"{name or argv[0]} exited {done.returncode}:\n{tail}")


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, env=GIT_ENV)


def git_commit_all(root: Path) -> None:
    """``git init`` the folder and commit everything in it."""
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")


def git_init(root: Path, files: int = 20) -> None:
    """A small committed project: ``files`` modules in two folders."""
    for i in range(files):
        folder = root / ("src" if i % 2 else "tests")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"mod{i:02d}.py").write_text("".join(f"x{j} = {j}\n" for j in range(30)))
    git_commit_all(root)


@contextlib.contextmanager
def counting(targets: Sequence[tuple[Any, str, str]]) -> Iterator[dict[str, dict[str, float]]]:
    """Count calls and time of sync functions, each given as (module or class, name, label).

    For a breakdown of where a subject spends its time; several targets may share a label (a
    function imported by name into several modules).
    """
    totals: dict[str, dict[str, float]] = {}
    restore: list[tuple[Any, str, Any]] = []

    def wrap(original: Callable[..., Any], label: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                entry = totals.setdefault(label, {"calls": 0, "ms": 0.0})
                entry["calls"] += 1
                entry["ms"] += (time.perf_counter() - start) * 1000

        return wrapper

    for owner, name, label in targets:
        original = getattr(owner, name)
        restore.append((owner, name, original))
        setattr(owner, name, wrap(original, label))
    try:
        yield totals
    finally:
        for owner, name, original in reversed(restore):
            setattr(owner, name, original)
