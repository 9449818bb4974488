"""``%%orchestrate``: the cell body is the task; ``%orchestrate SUBCOMMAND`` manages the rest.

Options are parsed with IPython's ``magic_arguments`` (so ``%%orchestrate?`` documents every
one); any mistake raises ``UsageError`` with the accepted values, never a traceback.
"""

from __future__ import annotations

import os
import re
import shlex
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from IPython.core import magic_arguments as _magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from ..errors import OrchestratorError
from ..publish import say
from .commands import SUBCOMMANDS, Commands

# Registering the magic imports none of the run machinery (configuration models, sessions, the
# engine, widgets): each method imports what it needs, so `%load_ext` stays cheap.
if TYPE_CHECKING:
    from ..config import Settings
    from ..sessions import SessionStore
    from .runner import RunSpec

OPTIONS = (
    "-w/--workflow, -a/--agent, --workspace, -s/--session, --followup, --new, --rehearse, "
    "--dry-run, --max-iterations, --budget, --timeout, --background, --isolate, -o/--out, --quiet"
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise _bad(f"expected a whole number of at least 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise _bad(f"expected a number above 0, got {text!r}")
    return value


def _bad(message: str) -> Exception:
    import argparse

    return argparse.ArgumentTypeError(message)


# IPython's magic_arguments is untyped; these are the same functions seen as Any.
_argument: Any = _magic_arguments.argument
_parse_argstring: Any = _magic_arguments.parse_argstring
_magic_args: Any = _magic_arguments.magic_arguments
_line_cell_magic: Any = line_cell_magic
_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("-w", "--workflow"), {"metavar": "NAME", "help": "Workflow to run (default: default)."}),
    (("-a", "--agent"), {"metavar": "NAME", "help": "Run this one agent instead of a workflow."}),
    (
        ("--workspace",),
        {
            "metavar": "PATH",
            "help": "Folder the agents work in (default: cwd; made if its parent exists).",
        },
    ),
    (("-s", "--session"), {"metavar": "NAME", "help": "Record in this session (made if new)."}),
    (
        ("--followup",),
        {"action": "store_true", "help": "Continue the last finished turn in this workspace."},
    ),
    (("--new",), {"action": "store_true", "help": "Run on its own, even if it looks like more."}),
    (
        ("--rehearse",),
        {
            "metavar": "SCENARIO",
            "help": "The real CLIs, offline, against a scripted model: no cost.",
        },
    ),
    (("--dry-run",), {"action": "store_true", "help": "Show the plan; run nothing."}),
    (
        ("--max-iterations",),
        {"type": _positive_int, "metavar": "N", "help": "Cap for every loop step."},
    ),
    (("--budget",), {"type": _positive_float, "metavar": "USD", "help": "Stop past this cost."}),
    (("--timeout",), {"type": _positive_float, "metavar": "S", "help": "Stop after S seconds."}),
    (("--background",), {"action": "store_true", "help": "Return a Run handle at once."}),
    (
        ("--isolate",),
        {"action": "store_true", "help": "Work in an own git worktree, applied at the end."},
    ),
    (("-o", "--out"), {"metavar": "NAME", "help": "Also store the result in this variable."}),
    (("--quiet",), {"action": "store_true", "help": "No live output, only the result."}),
]
F = TypeVar("F", bound=Callable[..., Any])


def _as_line_cell_magic(fn: F) -> F:
    return cast(F, _line_cell_magic(fn))


def _with_options(fn: F) -> F:
    """``@magic_arguments()`` with every option: it builds the parser and extends the doc."""
    decorated: Any = fn
    for names, options in reversed(_OPTIONS):
        decorated = _argument(*names, **options)(decorated)
    decorated = _magic_args()(decorated)
    decorated.__doc__ = _plain_usage(decorated.__doc__ or "")
    return cast(F, decorated)


def _plain_usage(doc: str) -> str:
    """magic_arguments starts the help with a reST literal block (``::`` and an indented
    ``%orchestrate ...``), which ``%%orchestrate?`` shows as it is: make it a plain usage line
    of the cell magic."""
    if not doc.startswith("::"):
        return doc
    usage, _, rest = doc[2:].lstrip("\n").partition("\n\n")
    words = " ".join(usage.split()).replace("%orchestrate", "%%orchestrate", 1)
    wrapped = textwrap.fill(
        words,
        width=92,
        initial_indent="usage: ",
        subsequent_indent=" " * 21,
        break_on_hyphens=False,
    )
    return f"{wrapped}\n\n{rest}"


LONG_OPTIONS = tuple(n[2:] for names, _ in _OPTIONS for n in names if n.startswith("--"))


def _single_dash(line: str) -> None:
    """``-workspace`` parses as ``-w orkspace`` (a workflow!): name the option meant instead."""
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    for word in words:
        if not re.fullmatch(r"-[A-Za-z][A-Za-z-]+(=.*)?", word):
            continue
        name = word[1:].split("=", 1)[0]
        meant = [o for o in LONG_OPTIONS if o == name] or [
            o for o in LONG_OPTIONS if len(name) >= 3 and o.startswith(name)
        ]
        if len(meant) == 1:
            raise UsageError(
                f"{word.split('=', 1)[0]} has one dash: long options take two, as in --{meant[0]}"
            )


def _unquote(value: str | None) -> str | None:
    """IPython splits a magic's line keeping the quotes: ``--workspace "my calc"`` gives
    ``"my calc"``. One pair around the whole value is taken off."""
    if value and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _empty_body(lines: list[str]) -> list[str]:
    """IPython refuses a ``%%orchestrate`` cell with nothing below it before the magic runs
    (with "Did you mean the line magic?"); a blank body lets the magic say what is missing."""
    if lines and lines[0].lstrip().startswith("%%orchestrate") and not "".join(lines[1:]).strip():
        first = lines[0] if lines[0].endswith("\n") else lines[0] + "\n"
        return [first, "\n"]
    return lines


def _notebook_names(ns: dict[str, Any]) -> list[str]:
    """The notebook's own variables a cell body can insert: no modules, functions, classes or
    IPython's bookkeeping."""
    skip = {"In", "Out", "exit", "quit", "get_ipython"}
    return sorted(
        name
        for name, value in ns.items()
        if name.isidentifier()
        and not name.startswith("_")
        and name not in skip
        and not callable(value)
        and type(value).__name__ != "module"
    )


def _is_file(path: str) -> bool:
    return Path(path).expanduser().is_file()


def _scenarios() -> list[str]:
    from ..rehearsal import shipped_scenarios

    return sorted(shipped_scenarios())


@magics_class
class OrchestratorMagics(Magics):
    """The ``orchestrate`` line and cell magic."""

    def __init__(self, shell: Any = None, *, store: SessionStore | None = None) -> None:
        from ..sessions import default_store

        super().__init__(shell)
        self.store = store if store is not None else default_store()
        cleanup = getattr(shell, "input_transformers_cleanup", None)
        if isinstance(cleanup, list) and _empty_body not in cleanup:
            cleanup.append(_empty_body)

    @property
    def user_ns(self) -> dict[str, Any]:
        ns: dict[str, Any] = self.shell.user_ns if self.shell is not None else {}
        return ns

    # -- settings and checks --------------------------------------------------------------

    def _workspace(self, given: str | None) -> Path:
        path = Path(os.path.expandvars(given)).expanduser() if given else Path.cwd()
        if path.is_dir():
            return path.resolve()
        if path.exists():
            raise UsageError(f"--workspace {given!r} is a file, not a folder")
        if not path.parent.is_dir():
            raise UsageError(
                f"--workspace {given!r}: its parent folder {str(path.parent)!r} does not exist "
                "either; create it first (os.makedirs(path, exist_ok=True)) or pass an "
                "existing folder"
            )
        try:
            path.mkdir()
        except OSError as exc:
            raise UsageError(
                f"--workspace {given!r}: cannot create it ({exc.strerror or exc})"
            ) from None
        say(f"created the folder {path.resolve()} (--workspace {given})")
        return path.resolve()

    def _settings(self, workspace: Path, *, listing: bool = False) -> Settings:
        from ..config import load_settings

        try:
            # A listing shows what it can without obeying an untrusted workspace's agents.
            return load_settings(cwd=workspace, untrusted="ignore" if listing else "refuse")
        except OrchestratorError as exc:
            raise UsageError(str(exc)) from None

    def _line_settings(self) -> Settings:
        where = self.store.current.workspace
        path = Path(where) if where and Path(where).is_dir() else Path.cwd()
        return self._settings(path, listing=True)

    # -- the magic ------------------------------------------------------------------------

    @_as_line_cell_magic
    @_with_options
    def orchestrate(self, line: str, cell: str | None = None) -> Any:
        """Run AI coding agents on the task written in the cell body.

        {{ name }} in the body is replaced by the notebook variable `name` (an error lists the
        variables when there is none of that name). The cell shows each step live, then the
        result (steps, tokens, cost, diffs). Follow-up cells continue the session when they
        look like one (or with --followup). With --quiet and -o NAME, nothing is displayed.
        With --background, -o NAME stores the Run handle. --workspace creates the folder when
        its parent exists.

        As a line magic: %orchestrate agents | workflows | show WORKFLOW | session ... |
        history | config | metrics | dashboard (`%orchestrate help` lists them all).
        """
        if cell is None:
            return Commands(self.store, self._line_settings)(line)
        _single_dash(line)
        try:
            args = _parse_argstring(self.orchestrate, line)
        except UsageError as exc:
            if "unrecognized arguments" in str(exc):
                raise UsageError(f"{exc}; accepted options: {OPTIONS}") from None
            raise
        return self._cell(args, cell)

    def _cell(self, args: Any, cell: str) -> Any:
        from ..workflow.templates import render_notebook_vars, unknown_notebook_vars
        from .gates import frontend_is_interactive
        from .runner import CellRun

        args.workspace, args.rehearse = _unquote(args.workspace), _unquote(args.rehearse)
        if not cell.strip():
            raise UsageError(
                "the cell body is the task and it is empty: write what the agents should do "
                "on the lines below %%orchestrate (the subcommands are the line magic, "
                "%orchestrate with one %)"
            )
        missing = unknown_notebook_vars(cell, self.user_ns)
        if missing:
            names = ", ".join(_notebook_names(self.user_ns)) or "none yet"
            which = ", ".join("{{ " + m + " }}" for m in missing)
            raise UsageError(
                f"{which} in the cell body: no notebook variable of that name; "
                f"variables it can use: {names}"
            )
        body = render_notebook_vars(cell, self.user_ns).strip()
        if not body:
            raise UsageError("the cell body is empty once its notebook variables are inserted")
        if args.followup and args.new:
            raise UsageError("--followup and --new contradict each other; pass one of them")
        if args.agent and args.workflow:
            raise UsageError("pass either -w/--workflow or -a/--agent, not both")
        if args.agent and (args.budget is not None or args.max_iterations is not None):
            raise UsageError("--budget and --max-iterations apply to workflows, not to -a/--agent")
        if args.out is not None and not args.out.isidentifier():
            raise UsageError(f"-o/--out needs a Python variable name, got {args.out!r}")
        workspace = self._workspace(args.workspace)
        settings = self._settings(workspace)
        workflow = args.workflow or "default"
        if args.agent and args.agent not in settings.agents:
            known = ", ".join(sorted(settings.agents))
            raise UsageError(f"unknown agent {args.agent!r}; known: {known}")
        if not args.agent and workflow not in settings.workflows:
            known = ", ".join(sorted(settings.workflows))
            raise UsageError(f"unknown workflow {workflow!r}; known: {known}")
        scenario = args.rehearse
        if scenario is not None and scenario not in _scenarios() and not _is_file(scenario):
            raise UsageError(
                f"unknown scenario {scenario!r}; shipped: {', '.join(_scenarios())} "
                "(or the path of a scenario .yaml file)"
            )
        spec = self._spec(args, body, workspace, settings, workflow)
        interactive = frontend_is_interactive(self.shell)
        run = CellRun(spec, self.shell, interactive=interactive)
        try:
            if args.background and interactive:
                handle = run.background()
                if args.out:
                    self.user_ns[args.out] = handle
                return handle
            if args.background:
                say(
                    "--background: batch execution keeps only the output of the running cell, "
                    "so this run is awaited in this cell"
                )
            result = run.blocking()
        except OrchestratorError as exc:
            raise UsageError(str(exc)) from None
        if result is None:  # interrupted; the summary line is out
            return None
        if args.out:
            self.user_ns[args.out] = result
            if args.quiet:
                return None
        return result

    def _spec(
        self, args: Any, body: str, workspace: Path, settings: Settings, workflow: str
    ) -> RunSpec:
        from ..runs import RunOptions, RunRequest
        from ..sessions import decide_followup
        from ..workflow.models import Budget
        from .runner import RunSpec

        session = self.store.get_or_create(args.session) if args.session else self.store.current
        force = True if args.followup else False if args.new else None
        decision = decide_followup(body, session, force=force, workspace=workspace)
        if session.turns and not args.quiet and not args.dry_run:
            say(decision)
        budget = Budget(max_cost_usd=args.budget) if args.budget is not None else Budget()
        options = RunOptions(
            budget=budget,
            max_iterations=args.max_iterations,
            timeout=args.timeout,
            isolation="worktree" if args.isolate else "shared",
        )
        try:
            request = RunRequest.build(
                body,
                workflow=None if args.agent else workflow,
                agent=args.agent,
                workspace=workspace,
                config=settings,
                session=session,
                decision=decision,
                rehearsal=args.rehearse,
                options=options,
                dry_run=args.dry_run,
            )
        except OrchestratorError as exc:
            raise UsageError(str(exc)) from None
        return RunSpec(request, quiet=args.quiet)


__all__ = ["OPTIONS", "SUBCOMMANDS", "OrchestratorMagics"]
