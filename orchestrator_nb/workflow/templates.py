"""Prompt and condition templates: Jinja2 in a sandbox, strict about missing names.

Workflow files are shared and copied around, so templates run in Jinja2's immutable sandbox:
no private attributes (``''.__class__``), no methods that change a value (``list.append``).
A misspelt name is an error, never an empty string (``StrictUndefined``), and every error
becomes a :class:`TemplateError` naming the step, which template (prompt, until, when,
message), its line, and the names that were available.

Prompts are full of braces that are not template code: JSON, Python dicts, ``{x}`` format
strings. Only ``{{ … }}`` and ``{% … %}`` start template code. Jinja's usual comment opener
``{#`` is moved to ``{## … ##}``, because ``{#`` turns up in ordinary text (``{#id}`` in CSS,
``{#fff}``, ``{#: …}`` in Rust format strings) and Jinja would silently drop everything up to
the next ``#}``.

The context the engine passes: ``task`` (str), ``steps`` (id → :class:`StepView`),
``iteration`` (int), ``history`` (previous turns, each with ``task`` and ``text``) and
``vars`` (the user's variables); :func:`make_context` builds it.
"""

from __future__ import annotations

import contextvars
import functools
import keyword
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import ConfigError
from ..events import FileChange, StepResult
from .suggestions import count_suggestions

_TEMPLATE_FILENAME = "<template>"
_NOTEBOOK_VAR = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_WRAPPED_EXPRESSION = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)


# Bounds for templates from any workspace (a cloned repository's workflows included): the
# sandbox stops reading private attributes, not `{{ 'A' * 10**10 }}` growing the kernel to tens of
# GB or nested ranges running for hours.
MAX_OUTPUT_CHARS = 1_000_000
MAX_ITERATIONS = 1_000_000
MAX_RANGE = 100_000
MAX_EXPONENT = 10_000
MAX_SECONDS = 5.0


class TemplateBound(Exception):
    """A template went past one of the bounds above."""


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_ITERATIONS
        self.deadline = time.monotonic() + MAX_SECONDS

    def tick(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise TemplateBound(f"more than {MAX_ITERATIONS:,} loop iterations")
        if self.left % 1024 == 0:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateBound(f"took longer than {MAX_SECONDS:g} s")


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("_BUDGET", default=None)


def _bounded_range(*args: int) -> Iterator[int]:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise TemplateBound(f"range() of {len(numbers):,} numbers (limit {MAX_RANGE:,})")
    budget = _BUDGET.get()
    for n in numbers:
        if budget is not None:
            budget.tick()
        yield n


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else None


_WIDTH = re.compile(r"\d{7,}")  # a width of a million or more in a format string


def _refuse_size(size: int, what: str) -> None:
    if size > MAX_OUTPUT_CHARS:
        raise TemplateBound(f"{what} of {size:,} characters (limit {MAX_OUTPUT_CHARS:,})")


def _check_str_call(text: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse a str method whose result would be past the bound, before it allocates it."""
    first = args[0] if args else None
    if name in ("ljust", "rjust", "center", "zfill"):
        width = first if first is not None else kwargs.get("width")
        if isinstance(width, int):
            _refuse_size(width, f"{name}()")
    elif name == "expandtabs":
        size = first if first is not None else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            _refuse_size(len(text) + text.count("\t") * size, "expandtabs()")
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        old, new = args[0], args[1]
        if isinstance(new, str):
            times = text.count(old) if old else len(text) + 1
            _refuse_size(len(text) + times * max(0, len(new) - len(old)), "replace()")


def _bounded_filters(env: jinja2.Environment) -> None:
    """Filters that can grow a value in one call get the same checks as the str methods."""
    center, indent, fmt, replace = (
        env.filters[n] for n in ("center", "indent", "format", "replace")
    )

    def b_center(value: Any, width: int = 80) -> Any:
        _refuse_size(int(width), "center")
        return center(value, width)

    def b_indent(value: Any, width: int | str = 4, *args: Any, **kwargs: Any) -> Any:
        pad = len(width) if isinstance(width, str) else int(width)
        _refuse_size(len(str(value)) + (str(value).count("\n") + 1) * pad, "indent")
        return indent(value, width, *args, **kwargs)

    def b_format(value: Any, *args: Any, **kwargs: Any) -> Any:
        if _WIDTH.search(str(value)):
            raise TemplateBound("a format width of a million characters or more")
        return fmt(value, *args, **kwargs)

    def b_replace(ctx: Any, value: Any, old: Any, new: Any, count: Any = None) -> Any:
        _check_str_call(str(value), "replace", (str(old), str(new)), {})
        return replace(ctx, value, old, new, count)

    b_replace.jinja_pass_arg = jinja2.utils._PassArg.eval_context  # type: ignore[attr-defined]
    env.filters.update(center=b_center, indent=b_indent, format=b_format, replace=b_replace)


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+"})

    def call(
        __self,
        __context: Any,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            _check_str_call(owner, getattr(__obj, "__name__", ""), args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        # str.format and format_map are wrapped when they are looked up, not in call().
        wrapped = super().wrap_str_format(value)
        if wrapped is None or not _WIDTH.search(value.__self__):
            return wrapped

        def refuse(*args: Any, **kwargs: Any) -> str:
            raise TemplateBound("a format width of a million characters or more")

        return refuse

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                size = _size(seq)
                if size is not None and isinstance(times, int) and size * times > MAX_OUTPUT_CHARS:
                    raise TemplateBound(
                        f"a value of {size:,} × {times:,} items (limit {MAX_OUTPUT_CHARS:,})"
                    )
        elif operator == "**":
            if isinstance(right, int) and abs(right) > MAX_EXPONENT and abs(left) > 1:
                raise TemplateBound(f"an exponent of {right:,} (limit {MAX_EXPONENT:,})")
        elif operator == "+":
            a, b = _size(left), _size(right)
            if a is not None and b is not None and a + b > MAX_OUTPUT_CHARS:
                raise TemplateBound(f"a value of {a + b:,} items (limit {MAX_OUTPUT_CHARS:,})")
        budget = _BUDGET.get()
        if budget is not None:
            budget.tick()
        return super().call_binop(context, operator, left, right)


class TemplateError(ConfigError):
    """A template of a workflow step that does not parse or does not render."""

    def __init__(
        self,
        problem: str,
        *,
        step_id: str,
        what: str,
        template_line: int | None = None,
        source: str = "",
        hint: str | None = None,
    ) -> None:
        where = f"line {template_line}" if template_line else "template"
        message = f"step {step_id!r}, {what} {where}: {problem}"
        shown = _source_line(source, template_line)
        if shown is not None:
            message += f"\n    {template_line} | {shown}"
        super().__init__(message, key=what, hint=hint)
        self.step_id = step_id
        self.what = what
        self.template_line = template_line
        self.problem = problem
        self.bound = False  # past a size, loop or time bound (refused before any agent runs)


@dataclass(frozen=True)
class StepView:
    """What a template sees of a finished step, as ``steps.<id>``."""

    text: str = ""
    ok: bool = False
    changes: tuple[FileChange, ...] = ()
    diff: str = ""
    agent: str = ""
    # None where not counted: a failed step's text is an error, not a review.
    suggestions: int | None = None
    error: str | None = None

    @classmethod
    def from_result(
        cls, result: StepResult, diff: str = "", suggestions: int | None = None
    ) -> StepView:
        """The view of ``result``.

        ``diff`` defaults to ``result.diff``; ``suggestions`` is counted from the text of a
        successful step when not given.
        """
        if suggestions is None and result.ok:
            suggestions = count_suggestions(result.text)
        return cls(
            text=result.text,
            ok=result.ok,
            changes=tuple(result.changes),
            diff=diff or result.diff,
            agent=result.agent,
            suggestions=suggestions,
            error=result.error_kind,
        )

    @property
    def paths(self) -> tuple[str, ...]:
        """The changed paths, for ``'src/app.py' in steps.build.paths``."""
        return tuple(change.path for change in self.changes)

    def __str__(self) -> str:
        # `{{ steps.review }}` in a prompt means the answer, not the dataclass repr.
        return self.text


@dataclass(frozen=True)
class Turn:
    """One earlier turn of a conversation, as an item of ``history``."""

    task: str
    text: str

    def __str__(self) -> str:
        return self.text


def make_context(
    *,
    task: str,
    steps: Mapping[str, StepView] | None = None,
    iteration: int = 0,
    history: Iterable[Turn] = (),
    vars: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The context every template of a run is rendered with."""
    return {
        "task": task,
        "steps": dict(steps or {}),
        "iteration": iteration,
        "history": list(history),
        "vars": dict(vars or {}),
    }


def _make_env() -> ImmutableSandboxedEnvironment:
    env = _BoundedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        comment_start_string="{##",
        comment_end_string="##}",
    )
    env.globals["range"] = _bounded_range
    _bounded_filters(env)
    return env


_ENV = _make_env()


# A loop renders the same templates every iteration; parsing them once is enough.
@functools.lru_cache(maxsize=256)
def _compile_template(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


@functools.lru_cache(maxsize=256)
def _compile_expression(source: str) -> jinja2.environment.TemplateExpression:
    return _ENV.compile_expression(source, undefined_to_none=False)


def render(template: str, context: Mapping[str, Any], *, step_id: str, what: str = "prompt") -> str:
    """Render ``template`` with ``context``; any problem is a :class:`TemplateError`."""
    token = _BUDGET.set(_Budget())
    try:
        compiled = _compile_template(template)
        out: list[str] = []
        size = 0
        for chunk in compiled.generate(dict(context)):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateBound(f"more than {MAX_OUTPUT_CHARS:,} characters of output")
            out.append(chunk)
            _BUDGET.get().check_time()  # type: ignore[union-attr]
        return "".join(out)
    except Exception as exc:
        # Templates are user code: whatever they raise (TypeError, ZeroDivisionError, …) is a
        # mistake in the workflow file, reported with the step and line rather than a traceback.
        raise _translate(exc, template, context, step_id=step_id, what=what) from exc
    finally:
        _BUDGET.reset(token)


def evaluate(
    expression: str, context: Mapping[str, Any], *, step_id: str, what: str = "condition"
) -> bool:
    """Evaluate a condition (a loop's ``until``, a branch's ``when``) to a bool.

    ``expression`` is a bare Jinja2 expression; one wrapped in ``{{ … }}`` is accepted too,
    since that is how people write it after a day of writing prompts.
    """
    wrapped = _WRAPPED_EXPRESSION.match(expression)
    source = expression
    if wrapped and "{{" not in wrapped.group(1) and "}}" not in wrapped.group(1):
        source = wrapped.group(1)
    token = _BUDGET.set(_Budget())
    try:
        compiled = _compile_expression(source)
        return bool(compiled(dict(context)))
    except Exception as exc:
        raise _translate(exc, source, context, step_id=step_id, what=what) from exc
    finally:
        _BUDGET.reset(token)


def render_notebook_vars(body: str, namespace: Mapping[str, Any]) -> str:
    """Put notebook variables into a ``%%orchestrate`` cell body.

    Only ``{{ name }}`` is replaced, and only where ``name`` is an identifier bound in
    ``namespace``; everything else (other braces, ``{{ a.b }}``, unknown names) is left exactly
    as written, so a body that is later rendered as a prompt template still works. Names that
    start with ``_`` stay untouched too: they are IPython's history (``_``, ``_i3``) or private.
    """

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if not _is_public_identifier(name) or name not in namespace:
            return match.group(0)
        return str(namespace[name])

    return _NOTEBOOK_VAR.sub(substitute, body)


def unknown_notebook_vars(body: str, namespace: Mapping[str, Any]) -> list[str]:
    """The ``{{ name }}`` of ``body`` that :func:`render_notebook_vars` would leave as written
    because ``namespace`` has no such public name (each once, in order)."""
    found: dict[str, None] = {}
    for match in _NOTEBOOK_VAR.finditer(body):
        name = match.group(1)
        if _is_public_identifier(name) and name not in namespace:
            found.setdefault(name, None)
    return list(found)


def _is_public_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")


def _translate(
    exc: Exception, source: str, context: Mapping[str, Any], *, step_id: str, what: str
) -> TemplateError:
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return TemplateError(
            f"syntax error: {exc.message}",
            step_id=step_id,
            what=what,
            template_line=exc.lineno,
            source=source,
            hint="`{{`, `{%` and `{##` start template code; wrap literal text in "
            "{% raw %}…{% endraw %}",
        )
    line = _template_line(exc.__traceback__)
    if isinstance(exc, TemplateBound):
        error = TemplateError(
            f"refused, past a bound: {exc}",
            step_id=step_id,
            what=what,
            template_line=line,
            source=source,
            hint="templates are bounded in output size, loop iterations and time; "
            "make this one smaller",
        )
        error.bound = True
        return error
    if isinstance(exc, SecurityError):
        return TemplateError(
            f"not allowed in the sandbox: {exc}",
            step_id=step_id,
            what=what,
            template_line=line,
            source=source,
            hint="templates cannot read private attributes (_x, __x__) or call methods that "
            "change a value; use filters such as |length, |join, |trim instead",
        )
    if isinstance(exc, jinja2.UndefinedError):
        problem = f"undefined: {exc.message or exc}"
        hint = _available_names(context)
    else:
        problem = f"{type(exc).__name__}: {exc}"
        hint = None
    return TemplateError(
        problem, step_id=step_id, what=what, template_line=line, source=source, hint=hint
    )


def _template_line(tb: TracebackType | None) -> int | None:
    # Jinja rewrites tracebacks so frames of the template carry its filename and line numbers;
    # the innermost such frame is where the error happened (an include or macro may nest).
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _available_names(context: Mapping[str, Any]) -> str:
    hint = "available names: " + (", ".join(sorted(context)) or "(none)")
    steps = context.get("steps")
    if isinstance(steps, Mapping):
        hint += "; steps so far: " + (", ".join(sorted(map(str, steps))) or "(none)")
        hint += "; a step's fields: " + ", ".join(_STEP_FIELDS)
    user_vars = context.get("vars")
    if isinstance(user_vars, Mapping) and user_vars:
        hint += "; vars: " + ", ".join(sorted(map(str, user_vars)))
    return hint


def _source_line(source: str, line: int | None) -> str | None:
    if not line:
        return None
    lines = source.splitlines()
    if not 1 <= line <= len(lines):
        return None
    shown = lines[line - 1].strip()
    return shown if len(shown) <= 120 else shown[:117] + "..."


_STEP_FIELDS = ("text", "ok", "changes", "paths", "diff", "agent", "suggestions", "error")

__all__ = [
    "StepView",
    "TemplateError",
    "Turn",
    "evaluate",
    "make_context",
    "render",
    "render_notebook_vars",
    "unknown_notebook_vars",
]
