"""The ``orchestrator-nb`` command: notebooks, workflows and batches from a shell.

::

    orchestrator-nb run NOTEBOOK [-p NAME VALUE]... [-o OUT.ipynb] [--html]
    orchestrator-nb exec "TASK" [-w WORKFLOW] [--workspace DIR] [--rehearse SCENARIO]
                         [--max-iterations N] [--budget USD] [--isolate] [--dry-run] [--json]
    orchestrator-nb batch TASKS_FILE [-w WORKFLOW] [--workspace DIR] [--rehearse SCENARIO] [-j N]
                          [--journal PATH] [--isolation auto|worktree|copy] [--csv F] [--json F]
    orchestrator-nb acp [--workflow NAME] [--workspace DIR] [--rehearse SCENARIO]
    orchestrator-nb agents
    orchestrator-nb workflows
    orchestrator-nb session export SESSION_FILE --format json|md|ipynb OUT
    orchestrator-nb audit verify [PATH]
    orchestrator-nb audit receipt RUN_ID [--workspace DIR] [--verify] [--public-key PEM_FILE]
    orchestrator-nb audit public-key

Exit codes: 0 done; 1 the work did not succeed (a workflow or task not completed, a notebook
cell raised); 2 bad usage or configuration; 130 interrupted. An error is one line on stderr,
``orchestrator-nb: error: ...`` with its hint, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from importlib import import_module
from pathlib import Path
from typing import Any, NoReturn

from ._sync import run_sync
from .display import duration, fallback_line, usage_line
from .errors import ConfigError, OrchestratorError
from .events import RetryEvent
from .fsio import write_text
from .lifecycle import (
    AgentEventEmitted,
    AgentFallback,
    BudgetWarning,
    GateDecided,
    LifecycleEvent,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    WorkspaceWaiting,
)
from .publish import say

PROG = "orchestrator-nb"
Handler = Callable[[argparse.Namespace], int]


class Failed(Exception):
    """A failure the command reports as one line and an exit code (not a bug)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _say(message: str) -> None:
    say(f"{PROG}: {message}", file=sys.stderr)
    sys.stderr.flush()


def one_line(exc: BaseException) -> str:
    """An error as one line: its message, then its hint, newlines folded."""
    if isinstance(exc, OrchestratorError):
        text = " ".join(exc.message.split())
        return f"{text} (hint: {' '.join(exc.hint.split())})" if exc.hint else text
    return " ".join(str(exc).split()) or type(exc).__name__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the usage block too; the contract here is one line.
        _say(f"error: {message} (see `{self.prog} --help`)")
        raise SystemExit(2)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value}")
    return value


# -- exec -------------------------------------------------------------------------------


class StepPrinter:
    """Step started / finished lines on stderr, from the engine's lifecycle events."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.rehearsal = False  # scripted figures say so (RunStarted tells)

    def _name(self, step_id: str, iteration: int | None) -> str:
        return f"[{step_id}{f' #{iteration}' if iteration else ''}]"

    def __call__(self, event: LifecycleEvent) -> None:
        line = None
        if isinstance(event, StepStarted) and event.kind == "agent":
            line = f"{self._name(event.step_id, event.iteration)} {event.agent} started"
        elif isinstance(event, StepStarted):
            line = f"[{event.step_id}] {event.kind}"
        elif isinstance(event, StepFinished):
            r = event.result
            usage = usage_line(r.usage, scripted=self.rehearsal)
            status = "ok" if r.ok else f"FAILED ({r.error_kind})"
            if event.cached:
                status += " (cached)"
            line = f"{self._name(event.step_id, event.iteration)} {event.agent} {status}"
            line += f" in {duration(r.duration_s)} ({usage})"
            if r.error is not None:
                line += f": {' '.join(r.error.message.split())[:200]}"
        elif isinstance(event, AgentEventEmitted) and isinstance(event.event, RetryEvent):
            who = "orchestrator retry" if event.event.source == "engine" else "retry"
            line = f"[{event.step_id}] {event.agent} {who} {event.event.attempt}: "
            line += event.event.reason
        elif isinstance(event, AgentFallback):
            line = f"{self._name(event.step_id, event.iteration)} "
            line += fallback_line(event.from_agent, event.to_agent, event.kind)
        elif isinstance(event, GateDecided):
            line = f"[{event.step_id}] gate: {event.decision} by {event.by}"
        elif isinstance(event, BudgetWarning):
            line = f"budget {event.budget}: {event.used:.4g} of {event.limit:.4g} used"
        elif isinstance(event, RunStarted):
            # A shell command has no session: every exec is a new task and resumes nothing.
            self.rehearsal = event.rehearsal
            line = f"{event.workflow}: new task (a shell run never resumes a conversation)"
        elif isinstance(event, RunFinished):
            line = f"workflow {event.workflow}: {event.outcome} in {duration(event.duration_s)}"
        elif isinstance(event, WorkspaceWaiting):
            line = event.message
        if line is not None:
            self.stream.write(line + "\n")
            self.stream.flush()


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.max_iterations is not None:
        out["max_iterations"] = args.max_iterations
    if args.budget is not None:
        out["max_cost_usd"] = args.budget
    return out


def _quiet_logs() -> None:
    # The step lines already say what a warning would; the logs keep everything in the
    # workspace's .orchestrator/logs/, so the console gets only errors.
    from .observe.logs import configure_logging

    configure_logging(console_level="error")


def cmd_exec(args: argparse.Namespace) -> int:
    from .runs import RunOptions, RunRequest

    _quiet_logs()
    task = sys.stdin.read() if args.task == "-" else args.task
    _say_rehearsal(args)
    request = RunRequest.build(
        task,
        workflow=args.workflow,
        agent=args.agent,
        workspace=args.workspace,
        config=args.config,
        rehearsal=args.rehearse,
        options=replace(
            RunOptions.from_overrides({**_overrides(args), "timeout": args.timeout}),
            isolation="worktree" if args.isolate else "shared",
        ),
        dry_run=args.dry_run,
        trust=True if args.trust else None,
    )
    return _execute(request, args)


def cmd_resume(args: argparse.Namespace) -> int:
    from .runs import RunRequest

    _quiet_logs()
    _say_rehearsal(args)
    request = RunRequest.for_resume(
        args.run_id,
        workspace=args.workspace,
        config=args.config,
        rehearsal=args.rehearse,
        trust=True if args.trust else None,
    )
    return _execute(request, args)


def _say_rehearsal(args: argparse.Namespace) -> None:
    if args.rehearse:
        _say(f"rehearsal with scenario {args.rehearse!r}: a scripted model server, no tokens")


def _execute(request: Any, args: argparse.Namespace) -> int:
    """Run ``request`` with a line per step on stderr; the result on stdout (``--json``: all of
    it; else its text without the diff, which stays in the workspace)."""
    from .runs import RunService

    result = run_sync(lambda: RunService().execute(request, subscribers=[StepPrinter()]))
    if args.json:
        say(json.dumps(result.to_dict(), indent=2))
    else:
        say(str(replace(result, diff="")))
    return 0 if result.ok else 1


# -- batch ------------------------------------------------------------------------------


def cmd_batch(args: argparse.Namespace) -> int:
    from .batching import BatchProgress, abatch

    _quiet_logs()
    seen: dict[str, str] = {}

    def remember(progress: BatchProgress) -> None:
        seen["journal"] = progress.journal

    try:
        result = run_sync(
            lambda: abatch(
                args.tasks_file,
                args.workflow,
                workspace=args.workspace,
                max_concurrency=args.jobs,
                journal=args.journal,
                config=args.config,
                rehearsal=args.rehearse,
                isolation=args.isolation,
                on_progress=remember,
                retry_failed=args.retry_failed,
                trust=True if args.trust else None,
                **_overrides(args),
            )
        )
    except KeyboardInterrupt:
        resume = f"; resume with --journal {seen['journal']}" if seen.get("journal") else ""
        raise Failed(f"interrupted; the agents were stopped{resume}", 130) from None
    say(result)
    if args.csv:
        result.to_csv(args.csv)
    if args.json:
        result.to_json(args.json)
    return 0 if result.ok else 1


def cmd_acp(args: argparse.Namespace) -> int:
    from .acpserver.server import Options, main

    return main(Options(args.workflow, args.workspace, args.rehearse, args.config))


# -- agents, workflows, trust, session export ----------------------------------------------


def cmd_trust(args: argparse.Namespace) -> int:
    from . import trust_store

    if not Path(args.path).is_dir():
        raise Failed(f"{args.path!r} is not an existing folder")
    if args.show:
        say(trust_store.report(args.path))
        return 0
    if args.forget:
        say(trust_store.untrust(args.path))
        return 0
    before = trust_store.report(args.path)
    say("trusting:\n" + "\n".join(before.lines()[1:]))
    say(trust_store.trust(args.path).lines()[0])  # the list is above: only the new state
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    from .agents.availability import status
    from .config import load_settings

    say(status(load_settings(args.config, untrusted="ignore")))
    return 0


def cmd_workflows(args: argparse.Namespace) -> int:
    from .config import load_settings
    from .workflow.models import AgentStep, iter_steps

    settings = load_settings(args.config, untrusted="ignore")
    width = max((len(name) for name in settings.workflows), default=0)
    for name, wf in sorted(settings.workflows.items()):
        agents = dict.fromkeys(s.agent for s in iter_steps(wf.steps) if isinstance(s, AgentStep))
        used = f" [{', '.join(agents)}]" if agents else ""
        say(f"{name:<{width}}  {wf.description or '(no description)'}{used}")
    return 0


def cmd_session_export(args: argparse.Namespace) -> int:
    from .notebook.export import export_session
    from .sessions import Session

    path, fmt = export_session(Session.load(args.session_file), args.out, args.format)
    say(f"wrote {path} ({fmt})")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from .observe.audit import verify

    result = verify(args.path)
    if not result.ok:
        raise Failed(f"{result} ({result.path})", 1)
    say(result)
    return 0


def cmd_audit_receipt(args: argparse.Namespace) -> int:
    from .observe import receipts

    data = receipts.load(args.workspace, args.run_id)
    if not args.verify:
        say(json.dumps(data, indent=1))
        return 0
    check = receipts.verify_receipt(data, public_key=args.public_key)
    if not check.ok:
        raise Failed(f"run {args.run_id}: {check}", 1)
    say(f"run {args.run_id}: {check}")
    return 0


def cmd_audit_public_key(args: argparse.Namespace) -> int:
    from .observe.audit_keys import public_key_pem

    say(public_key_pem(), end="")
    return 0


def _value(text: str) -> Any:
    """A parameter's value typed as papermill's own ``-p`` types it: bool, None, int, float."""
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _quiet_kernel(name: str) -> list[str]:
    """Kernel arguments that keep an IPython kernel's start-up notices off our stderr."""
    try:
        argv = import_module("jupyter_client.kernelspec").KernelSpecManager().get_kernel_spec(name)
    except Exception:  # an unknown kernel fails with its own clear error in a moment
        return []
    # Only ipykernel understands this flag; another language's kernel could refuse to start.
    return ["--IPKernelApp.log_level=ERROR"] if "ipykernel_launcher" in argv.argv else []


def cmd_run(args: argparse.Namespace) -> int:
    source = Path(args.notebook)
    if not source.is_file():
        raise Failed(f"error: notebook {args.notebook} does not exist", 2)
    nbformat: Any = import_module("nbformat")  # a dependency; papermill is the heavy one
    try:
        nb = nbformat.read(source, as_version=4)
    except Exception as exc:  # nbformat raises several unrelated types for a bad file
        raise Failed(f"error: {source} is not a notebook: {one_line(exc)}", 2) from None
    try:
        papermill: Any = import_module("papermill")
    except ImportError:
        raise Failed("error: `run` needs papermill (hint: pip install papermill)", 2) from None
    target = Path(args.output) if args.output else Path.cwd() / f"{source.stem}.out.ipynb"
    parameters = {name: _value(value) for name, value in args.param or []}
    if parameters and not any("parameters" in c.metadata.get("tags", []) for c in nb.cells):
        _say("warning: no cell is tagged `parameters`; the values go in a new first cell")
    logging.getLogger("papermill").setLevel(logging.ERROR)  # its own notices are not ours
    kernel = args.kernel or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    failure = None
    try:
        papermill.execute_notebook(
            str(source),
            str(target),
            parameters=parameters,
            kernel_name=args.kernel,
            progress_bar=sys.stderr.isatty(),
            cwd=str(source.resolve().parent),
            extra_arguments=_quiet_kernel(kernel),
        )
    except papermill.PapermillExecutionError as exc:
        failure = f"error: cell {exc.exec_count} raised {exc.ename}: {' '.join(exc.evalue.split())}"
        failure += f" (the traceback is in {target})"
    except KeyError as exc:  # jupyter_client's NoSuchKernel
        hint = "pass --kernel NAME, or install one: python -m ipykernel install --user"
        raise Failed(f"error: no such Jupyter kernel {exc} (hint: {hint})", 2) from None
    if target.is_file():
        # The executed notebook holds every output of every cell: it is an artifact like any
        # other and leaves through the same redaction (fsio) as the files under .orchestrator/.
        write_text(target, target.read_text(encoding="utf-8"), anchor=target.parent)
    if args.html and target.is_file():
        try:
            nbconvert: Any = import_module("nbconvert")
        except ImportError:
            raise Failed("error: --html needs nbconvert (hint: pip install nbconvert)", 2) from None
        body, _ = nbconvert.HTMLExporter().from_filename(str(target))
        page = target.with_suffix(".html")
        write_text(page, body, anchor=page.parent)
        _say(f"wrote {page}")
    if failure:
        raise Failed(failure, 1)
    say(f"wrote {target}")
    return 0


# -- parser and main ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="AI coding CLIs working together, from a shell.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    config = _Parser(add_help=False)
    config.add_argument(
        "--config",
        metavar="FILE",
        help="settings file (default: orchestrator.yaml in the workspace)",
    )

    run = sub.add_parser("run", help="execute a notebook with parameters (papermill)")
    run.add_argument("notebook", metavar="NOTEBOOK")
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                     help="a value for the cell tagged `parameters` (repeatable)")  # fmt: skip
    run.add_argument("-o", "--output", metavar="OUT.ipynb",
                     help="the executed notebook (default NAME.out.ipynb here)")  # fmt: skip
    run.add_argument("--html", action="store_true", help="also write an HTML rendering of it")
    run.add_argument("--kernel", metavar="NAME", help="kernel to use (default: the notebook's)")
    run.set_defaults(handler=cmd_run)

    def work_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("-w", "--workflow", default="default", help="workflow name")
        p.add_argument("--workspace", default=".", metavar="DIR", help="folder to work in")
        p.add_argument("--rehearse", metavar="SCENARIO",
                       help="run the real CLIs against a scripted model server")  # fmt: skip
        p.add_argument("--max-iterations", type=_positive_int, metavar="N", help="loop rounds")
        p.add_argument("--budget", type=_positive_float, metavar="USD", help="max cost per run")
        p.add_argument("--trust", action="store_true",
                       help="trust the workspace's configuration for this run")  # fmt: skip

    ex = sub.add_parser("exec", parents=[config], help="run a workflow on a task")
    ex.add_argument("task", metavar="TASK", help="what to do (- reads it from stdin)")
    work_options(ex)
    ex.add_argument("-a", "--agent", metavar="AGENT",
                    help="one agent on the task instead of a workflow")  # fmt: skip
    ex.add_argument("--timeout", type=_positive_float, metavar="S",
                    help="stop the run after S seconds (outcome timeout)")  # fmt: skip
    ex.add_argument("--isolate", action="store_true",
                    help="work in an own git worktree, applied at the end")  # fmt: skip
    ex.add_argument("--dry-run", action="store_true", help="show the plan, run nothing")
    ex.add_argument("--json", action="store_true", help="print the result as JSON")
    ex.set_defaults(handler=cmd_exec)

    re_ = sub.add_parser(
        "resume", parents=[config], help="continue a run that was stopped, from its journal"
    )
    re_.add_argument("run_id", metavar="RUN_ID", help="the run (a folder of .orchestrator/runs/)")
    re_.add_argument("--workspace", default=".", metavar="DIR", help="the run's folder")
    re_.add_argument("--rehearse", metavar="SCENARIO",
                     help="run the real CLIs against a scripted model server")  # fmt: skip
    re_.add_argument("--trust", action="store_true",
                     help="trust the workspace's configuration for this run")  # fmt: skip
    re_.add_argument("--json", action="store_true", help="print the result as JSON")
    re_.set_defaults(handler=cmd_resume)

    ba = sub.add_parser("batch", parents=[config], help="run a workflow on many tasks")
    ba.add_argument(
        "tasks_file", metavar="TASKS_FILE", help=".txt (a task per line), .jsonl, .yaml"
    )
    work_options(ba)
    ba.add_argument("-j", "--jobs", type=_positive_int, default=2, metavar="N",
                    help="tasks at once (default 2)")  # fmt: skip
    ba.add_argument("--journal", metavar="PATH", help="resume the batch of this journal")
    ba.add_argument("--isolation", choices=("auto", "worktree", "copy"), default="auto")
    ba.add_argument("--retry-failed", action="store_true", help="rerun tasks that failed")
    ba.add_argument("--csv", metavar="FILE", help="also write the summary as CSV")
    ba.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    ba.set_defaults(handler=cmd_batch)

    acp = sub.add_parser("acp", parents=[config], help="serve workflows as an ACP agent on stdio")
    acp.add_argument("-w", "--workflow", default="default", help="for prompts with no /command")
    acp.add_argument(
        "--workspace",
        metavar="DIR",
        help="folder to work in (default: each session's cwd)",
    )
    acp.add_argument("--rehearse", metavar="SCENARIO", help="every run under this rehearsal")
    acp.set_defaults(handler=cmd_acp)

    ag = sub.add_parser("agents", parents=[config], help="which agent CLIs are usable here")
    ag.set_defaults(handler=cmd_agents)
    wf = sub.add_parser("workflows", parents=[config], help="the workflows and what they do")
    wf.set_defaults(handler=cmd_workflows)

    tr = sub.add_parser("trust", help="trust a workspace's configuration (what it may run)")
    tr.add_argument("path", metavar="PATH", nargs="?", default=".", help="the workspace")
    how = tr.add_mutually_exclusive_group()
    how.add_argument("--show", action="store_true", help="show its trust state; change nothing")
    how.add_argument("--forget", action="store_true", help="untrust it")
    tr.set_defaults(handler=cmd_trust)

    se = sub.add_parser("session", help="work with saved sessions")
    se_sub = se.add_subparsers(dest="session_command", metavar="ACTION", parser_class=_Parser)
    exp = se_sub.add_parser("export", help="write a session as JSON, Markdown or a notebook")
    exp.add_argument("session_file", metavar="SESSION_FILE")
    exp.add_argument("--format", choices=("json", "md", "ipynb"), default=None)
    exp.add_argument("out", metavar="OUT")
    exp.set_defaults(handler=cmd_session_export)

    au = sub.add_parser("audit", help="check the audit trail and signed run receipts")
    au_sub = au.add_subparsers(dest="audit_command", metavar="ACTION", parser_class=_Parser)
    av = au_sub.add_parser("verify", help="check a workspace's audit trail for damage or forgery")
    av.add_argument("path", nargs="?", default=".", metavar="PATH",
                    help="a workspace, its state folder, or a trail file (default .)")  # fmt: skip
    av.set_defaults(handler=cmd_audit_verify)
    ar = au_sub.add_parser("receipt", help="show or check a finished run's signed receipt")
    ar.add_argument("run_id", metavar="RUN_ID")
    ar.add_argument("--workspace", default=".", metavar="DIR", help="the run's workspace")
    ar.add_argument("--verify", action="store_true", help="check its signature (offline)")
    ar.add_argument("--public-key", metavar="PEM_FILE",
                    help="the signer's public key (default: this user's own)")  # fmt: skip
    ar.set_defaults(handler=cmd_audit_receipt)
    ap = au_sub.add_parser("public-key", help="print this user's receipt-signing public key")
    ap.set_defaults(handler=cmd_audit_public_key)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # A summary with an em dash must not crash on a terminal that is not UTF-8.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        if args.command == "session":
            _say(f"error: choose an action: export (see `{PROG} session --help`)")
            return 2
        if args.command == "audit":
            _say(
                f"error: choose an action: verify, receipt, public-key (see `{PROG} audit --help`)"
            )
            return 2
        parser.error("choose a command")
    try:
        return handler(args)
    except KeyboardInterrupt:
        _say("interrupted; the agents were stopped")
        return 130
    except Failed as exc:
        _say(str(exc))
        return exc.code
    except BrokenPipeError:
        # The reader (`| head`) went away: stop quietly, and keep the exit flush from failing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except ConfigError as exc:
        _say(f"error: {one_line(exc)}")
        return 2
    except OrchestratorError as exc:
        _say(f"error: {one_line(exc)}")
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        _say(f"error: {exc.strerror or one_line(exc)}{where}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
