"""``orchestrator-nb`` run as a real subprocess: exit codes, output, one-line errors."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from batch_helpers import Scripted, processes_in

from orchestrator_nb.agents.registry import agents_bin_dirs
from orchestrator_nb.events import StepResult, Usage
from orchestrator_nb.sessions import Session

CLI = [sys.executable, "-m", "orchestrator_nb.cli"]
ONE = {"match": "ONE", "write": {"one.txt": "1\n"}, "say": "wrote one"}
BAD = {"match": "BAD", "exit": 1, "say": "cannot"}


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120, check=False
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interruptible(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """The command as a user starts it in a terminal, where Ctrl-C reaches it: a test run
    started in the background (as CI may) has SIGINT ignored, and a child inherits that."""
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_sigint)  # fmt: skip


def one_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The single stderr line of a failed command (no usage block, no traceback)."""
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("orchestrator-nb: error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "choose a command"),
        (("nosuch",), "invalid choice: 'nosuch'"),
        (("exec",), "required: TASK"),
        (("exec", "t", "--max-iterations", "0"), "must be at least 1"),
        (("batch", "t.txt", "-j", "x"), "invalid _positive_int value"),
        (("session",), "choose an action: export"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: tuple[str, ...], expected: str) -> None:
    assert expected in one_error(cli(*args), 2)


def test_workflows_and_agents_list_what_is_configured(tmp_path: Path) -> None:
    done = cli("workflows", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert any(
        line.split()[:3] == ["quick", "codex", "alone,"] for line in done.stdout.splitlines()
    )
    assert "default " in done.stdout and "[codex, gemini, claude]" in done.stdout
    done = cli("agents", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split()[:2] == ["agent", "found"]
    assert {line.split()[0] for line in done.stdout.splitlines()[1:]} >= {"claude", "codex"}


def test_exec_shows_steps_on_stderr_and_the_summary_on_stdout(sc: Scripted) -> None:
    config = str(sc.setup([ONE, BAD]))
    common = ["-w", "w", "--workspace", str(sc.ws), "--config", config]
    done = cli("exec", "do ONE", *common, env=sc.env())
    assert done.returncode == 0, done.stderr
    assert re.match(r"workflow w: completed in [\d.]+s — 1 step, 1 file changed", done.stdout)
    assert "added    one.txt" in done.stdout and "+1" not in done.stdout  # no diff by default
    assert "[s] a started" in done.stderr and "[s] a ok in" in done.stderr
    assert "Traceback" not in done.stderr and "step_failed" not in done.stderr

    done = cli("exec", "BAD", *common, "--json", "--max-iterations", "2", env=sc.env())
    assert done.returncode == 1
    assert json.loads(done.stdout)["outcome"] == "failed"
    assert "[s] a FAILED (failed)" in done.stderr

    calls = len(sc.prompts())
    done = cli("exec", "do ONE", *common, "--dry-run", env=sc.env())
    assert done.returncode == 0 and "plan of workflow w (dry run)" in done.stdout
    assert len(sc.prompts()) == calls  # nothing ran


def test_exec_errors_are_one_line_with_the_hint(sc: Scripted, tmp_path: Path) -> None:
    config = str(sc.setup([ONE]))
    ws = ["--workspace", str(sc.ws), "--config", config]
    line = one_error(cli("exec", "t", "-w", "nope", *ws), 2)
    assert "unknown workflow 'nope'" in line and "(hint: define it under" in line
    line = one_error(cli("exec", "t", "--workspace", str(tmp_path / "gone"), "--config", config), 1)
    assert "is not an existing folder" in line
    broken = tmp_path / "broken.yaml"
    broken.write_text("agents:\n  a: {driver: command, colour: red}\n")
    line = one_error(cli("exec", "t", "--workspace", str(sc.ws), "--config", str(broken)), 2)
    assert "broken.yaml:2 (agents.a.colour): unknown key" in line
    done = cli("exec", "t", *ws, "--rehearse", "no-such-scenario")
    assert "no-such-scenario" in done.stderr.splitlines()[-1] and done.returncode == 2


def test_batch_command_prints_the_table_and_writes_csv_and_json(sg: Scripted) -> None:
    config = str(sg.setup([ONE, BAD]))
    tasks = sg.root / "tasks.txt"
    tasks.write_text("do ONE\n")
    common = ["-w", "w", "--workspace", str(sg.ws), "--config", config, "-j", "2"]
    out = sg.root / "summary"
    done = cli("batch", str(tasks), *common, "--csv", f"{out}.csv", "--json", f"{out}.json",
               env=sg.env())  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1/1 completed" in done.stdout and "orchestrator-batch/" in done.stdout
    assert "[1/1] task-1: completed" in done.stderr  # progress lines, not a bar: no terminal
    assert Path(f"{out}.csv").read_text().startswith("id,workflow,outcome")
    assert json.loads(Path(f"{out}.json").read_text())["ok"] is True

    tasks.write_text("do ONE\nBAD\n")
    done = cli("batch", str(tasks), *common, env=sg.env())
    assert done.returncode == 1 and "1/2 completed" in done.stdout
    line = one_error(cli("batch", str(sg.root / "none.txt"), *common), 2)
    assert "the tasks file does not exist" in line


@pytest.mark.parametrize("command", ["exec", "batch"])
def test_ctrl_c_stops_the_agents_and_exits_130(sc: Scripted, command: str) -> None:
    config = str(sc.setup([{"match": "SLOW", "sleep": 60}]))
    tasks = sc.root / "tasks.txt"
    tasks.write_text("SLOW\n")
    what = "SLOW" if command == "exec" else str(tasks)
    argv = [*CLI, command, what, "-w", "w", "--workspace", str(sc.ws), "--config", config]
    proc = interruptible(argv, sc.env())
    deadline = time.monotonic() + 60
    while not sc.prompts():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("orchestrator-nb: interrupted; the agents were stopped"), stderr
    assert "Traceback" not in stderr
    if command == "batch":
        assert "resume with --journal " in last
        assert not list((sc.ws / ".orchestrator" / "batches").glob("*/task-1"))  # half-work gone
    assert not processes_in(sc.ws)


def test_session_export_writes_each_format(tmp_path: Path) -> None:
    session = Session.create("demo")
    turn = session.begin_turn("Write hello.txt", workflow="quick")
    session.record_step(turn, StepResult("codex", True, text="done", usage=Usage(10, 2)))
    session.finish_turn(turn, "completed")
    saved = session.save(tmp_path / "s.json")
    for fmt in ("md", "ipynb", "json"):
        out = tmp_path / f"out.{fmt}"
        done = cli("session", "export", str(saved), "--format", fmt, str(out))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"wrote {out} ({fmt})"
    assert "Write hello.txt" in (tmp_path / "out.md").read_text()
    nbformat.validate(nbformat.read(tmp_path / "out.ipynb", as_version=4))
    assert Session.load(tmp_path / "out.json").name == "demo"
    line = one_error(cli("session", "export", str(tmp_path / "none.json"), str(out)), 2)
    assert "none.json: cannot read" in line


# -- run: notebooks through papermill ---------------------------------------------------------


def _notebook(path: Path, *cells: tuple[str, list[str]]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": tags}) for src, tags in cells]
    nbformat.write(nb, path)
    return path


@pytest.mark.kernel
@pytest.mark.slow
def test_run_injects_parameters_and_renders_html(tmp_path: Path) -> None:
    pytest.importorskip("papermill", reason="`run` needs papermill: pip install papermill")
    source = _notebook(
        tmp_path / "greet.ipynb",
        ('greeting = "default"\ncount = 1', ["parameters"]),
        ("print(greeting * count, type(count).__name__)", []),
        ("from pathlib import Path\nprint(Path.cwd().name)", []),
    )
    out = tmp_path / "out" / "greet-run.ipynb"
    out.parent.mkdir()
    done = cli("run", str(source), "-p", "greeting", "hi", "-p", "count", "3", "-o", str(out),
               "--html", cwd=tmp_path / "out")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {out}"
    nb = nbformat.read(out, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert (
        injected and 'greeting = "hi"' in injected[0].source and "count = 3" in injected[0].source
    )
    outputs = [o.get("text", "") for c in nb.cells for o in c.get("outputs", [])]
    assert "hihihi int\n" in outputs
    assert f"{tmp_path.name}\n" in outputs  # ran in the notebook's folder, like Jupyter
    assert "hihihi" in out.with_suffix(".html").read_text()


@pytest.mark.kernel
@pytest.mark.slow
def test_run_reports_a_failing_cell_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("papermill", reason="`run` needs papermill: pip install papermill")
    source = _notebook(tmp_path / "bad.ipynb", ("x = 1", []), ('raise ValueError("boom")', []))
    done = cli("run", str(source), "-p", "x", "2", cwd=tmp_path)
    assert done.returncode == 1
    warning, line = done.stderr.strip().splitlines()  # nothing else: no kernel notices
    assert warning.startswith("orchestrator-nb: warning: no cell is tagged `parameters`")
    assert line.startswith("orchestrator-nb: error: cell 3 raised ValueError: boom")
    assert "bad.out.ipynb" in line and (tmp_path / "bad.out.ipynb").is_file()


def test_run_refuses_what_is_not_a_notebook(tmp_path: Path) -> None:
    assert "does not exist" in one_error(cli("run", str(tmp_path / "none.ipynb")), 2)
    (tmp_path / "x.ipynb").write_text("not json")
    assert "is not a notebook" in one_error(cli("run", str(tmp_path / "x.ipynb")), 2)


# -- the real CLIs --------------------------------------------------------------------------


@pytest.mark.real_cli
@pytest.mark.slow
def test_exec_with_the_real_claude_under_rehearsal(tmp_path: Path) -> None:
    if not (shutil.which("claude") or any((d / "claude").exists() for d in agents_bin_dirs())):
        reason = "agent CLI not installed (claude): run `make agents`"
        pytest.skip(reason)  # a failure under CI=true (tests/conftest.py)
    ws = tmp_path / "ws"
    ws.mkdir()
    config = tmp_path / "c.yaml"
    config.write_text("workflows:\n  hello: {steps: [{id: write, agent: claude}]}\n")
    done = cli("exec", "Create hello.txt containing hi", "-w", "hello", "--workspace", str(ws),
               "--config", str(config), "--rehearse", "write-file")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "workflow hello (rehearsal): completed" in done.stdout
    assert "added    hello.txt" in done.stdout
    assert "rehearsal with scenario 'write-file'" in done.stderr
    assert "[write] claude ok in" in done.stderr and " scripted)" in done.stderr
    assert (ws / "hello.txt").read_text() == "hi\n"


def test_resume_continues_an_interrupted_run_without_redoing_its_finished_steps(
    sc: Scripted,
) -> None:
    two = {"w2": {"steps": [{"id": "s1", "agent": "a", "prompt": "FIRST"},
                            {"id": "s2", "agent": "a", "prompt": "SLOW"}]}}  # fmt: skip
    config = str(
        sc.setup([{"match": "FIRST", "say": "first"}, {"match": "SLOW", "sleep": 60}], two)
    )
    argv = [*CLI, "exec", "t", "-w", "w2", "--workspace", str(sc.ws), "--config", config]
    proc = interruptible(argv, sc.env())
    deadline = time.monotonic() + 60
    while len(sc.prompts()) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    (run_id,) = [p.name for p in (sc.ws / ".orchestrator" / "runs").iterdir()]
    sc.rules.write_text(json.dumps([{"match": "FIRST", "say": "first"}, {"match": "SLOW"}]))
    done = cli("resume", run_id, "--workspace", str(sc.ws), "--config", config, env=sc.env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("workflow w2: completed in "), done.stdout
    assert " — 2 steps, " in done.stdout.splitlines()[0], done.stdout
    assert sc.prompts() == ["FIRST", "SLOW", "SLOW"]  # s1 came from the journal
    assert "[s2] a ok in" in done.stderr and "[s1] a started" not in done.stderr
    line = one_error(cli("resume", "../x", "--workspace", str(sc.ws), "--config", config), 2)
    assert "run" in line
