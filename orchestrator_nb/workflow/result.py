"""What a workflow run produced: every step's result, the summed usage, the run's diff."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import RunError
from ..events import FileChange, StepResult, Usage
from ..observe.redact import redact

Outcome = Literal["completed", "failed", "cancelled", "budget_exceeded", "timeout", "circuit_open"]
DIFF_FOLD_LINES = 80


@dataclass(frozen=True)
class PlannedStep:
    """One line of a dry run's plan."""

    step_id: str
    kind: str
    agent: str | None
    depth: int
    prompt: str | None = None
    note: str = ""


@dataclass
class WorkflowResult:
    run_id: str
    workflow: str
    task: str
    outcome: Outcome
    steps: list[StepResult] = field(default_factory=list)
    changes: list[FileChange] = field(default_factory=list)
    diff: str = ""
    error: RunError | None = None  # why it did not complete; ``error.kind`` matches the outcome
    duration_s: float = 0.0
    plan: list[PlannedStep] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # gate decisions, merges, conflicts
    workspace: str | None = None
    rehearsal: bool = False  # scripted agents answered: its cost is a script's, not money spent

    def revert(self, step: str | None = None, *, force: bool = False) -> Any:
        """Undo the run's changes (or one step's: its id, or ``loop/2/review`` inside loops).

        Refuses files that changed again since, unless ``force``; returns a RevertResult.
        """
        from .api import revert

        if self.workspace is None:
            raise ValueError(
                "this result has no workspace to revert: a dry run changes nothing, and a batch "
                "task's changes live on its own branch (delete the branch to drop them)"
            )
        return revert(self.run_id, workspace=self.workspace, step=step, force=force)

    @property
    def ok(self) -> bool:
        return self.outcome == "completed"

    def raise_for_error(self) -> WorkflowResult:
        """Raise the run's error if it did not complete; return self otherwise (for chaining)."""
        if self.error is not None:
            raise self.error
        if not self.ok:
            raise RunError.for_kind(self.outcome, f"the run ended {self.outcome}")
        return self

    @property
    def usage(self) -> Usage:
        total = Usage()
        for step in self.steps:
            if not step.cached:
                total = total + step.usage
        return total

    @property
    def text(self) -> str:
        """The final answer: the last successful agent step's text."""
        for step in reversed(self.steps):
            if step.ok and step.text and not step.skipped:
                return step.text
        return ""

    def step(self, step_id: str) -> StepResult:
        """The last result of ``step_id`` (loops run a step more than once)."""
        for step in reversed(self.steps):
            if step.step_id == step_id:
                return step
        raise KeyError(f"no step {step_id!r} ran; steps: {[s.step_id for s in self.steps]}")

    def to_dict(self) -> dict[str, Any]:
        usage = self.usage
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "task": self.task,
            "outcome": self.outcome,
            "ok": self.ok,
            "error": self.error.message if self.error is not None else None,
            "error_kind": self.error.kind if self.error is not None else None,
            "error_hint": self.error.hint if self.error is not None else None,
            "text": self.text,
            "usage": {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cached_tokens": usage.cached_tokens,
                "cost_usd": usage.cost_usd,
            },
            "steps": [s.to_dict() for s in self.steps],
            "changes": [{"path": c.path, "kind": c.kind} for c in self.changes],
            "diff": self.diff,
            "notes": list(self.notes),
            "duration_s": self.duration_s,
            "workspace": self.workspace,
            "rehearsal": self.rehearsal,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkflowResult:
        """The result :meth:`to_dict` described (a journal, an export, a batch row)."""
        message = data.get("error")
        error = None
        if message:
            error = RunError.for_kind(
                data.get("error_kind") or data.get("outcome") or "failed",
                str(message),
                hint=data.get("error_hint"),
            )
        return cls(
            run_id=str(data["run_id"]),
            workflow=str(data["workflow"]),
            task=str(data["task"]),
            outcome=data["outcome"],
            steps=[StepResult.from_dict(s) for s in data.get("steps") or []],
            changes=[FileChange(c["path"], c["kind"]) for c in data.get("changes") or []],
            diff=str(data.get("diff") or ""),
            error=error,
            duration_s=float(data.get("duration_s") or 0.0),
            notes=list(data.get("notes") or []),
            workspace=data.get("workspace"),
            rehearsal=bool(data.get("rehearsal", False)),
        )

    # -- display: no temp paths, and times in one format that nbval's sanitizer masks ------

    def summary(self) -> str:
        """``workflow w (rehearsal): completed in 12.3s — 3 steps, 2 files changed, <usage>``."""
        from ..display import REHEARSAL_MARK, duration, plural, usage_line

        mark = f" ({REHEARSAL_MARK})" if self.rehearsal else ""
        when = "in" if self.ok else "after"
        timed = f" {when} {duration(self.duration_s)}" if self.steps else ""
        return (
            f"workflow {self.workflow}{mark}: {self.outcome}{timed} — "
            f"{plural(len(self.steps), 'step')}, {plural(len(self.changes), 'file')} changed, "
            f"{usage_line(self.usage, self.agent_usage(), scripted=self.rehearsal)}"
        )

    def step_line(self, step: StepResult) -> str:
        """A step's line in this run's views: its summary (cost scripted under rehearsal), time."""
        from ..display import duration

        line = step._summary_line(scripted=self.rehearsal)
        return f"{line}, {duration(step.duration_s)}" if not step.cached else line

    def agent_usage(self) -> list[tuple[str, Usage]]:
        """The (agent, usage) parts of :attr:`usage`, for the line that says whom it covers."""
        return [(s.agent, s.usage) for s in self.steps if not s.cached]

    def __str__(self) -> str:
        return redact(self._text())

    def _text(self) -> str:
        if self.plan and not self.steps:
            lines = [f"plan of workflow {self.workflow} (dry run):"]
            for p in self.plan:
                who = f" [{p.agent}]" if p.agent else ""
                lines.append(f"{'  ' * (p.depth + 1)}{p.step_id} ({p.kind}){who} {p.note}".rstrip())
                if p.prompt:
                    lines.extend(f"{'  ' * (p.depth + 3)}{line}" for line in p.prompt.splitlines())
            return "\n".join(lines)
        lines = [self.summary()]
        if self.error:
            lines.append(f"error: {self.error}")
        for step in self.steps:
            lines.append(f"  {self.step_line(step)}")
        lines.extend(f"  note: {n}" for n in self.notes)
        if self.changes:
            lines.append("changes:")
            lines.extend(f"  {c.kind:<8} {c.path}" for c in self.changes)
        if self.text:
            lines += ["", self.text]
        if self.diff:
            lines += ["", self.diff]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return redact(self._markdown())

    def _markdown(self) -> str:
        parts = [f"**{self.summary()}**", ""]
        if self.error:
            parts.append(f"> {self.error}")
        for step in self.steps:
            parts.append(f"- {self.step_line(step)}")
        if self.text:
            parts += ["", self.text]
        if self.diff:
            parts += ["", "```diff", self.diff.rstrip("\n"), "```"]
        return "\n".join(parts)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from ..display import result_html

        return {
            "text/plain": str(self),
            "text/markdown": self._repr_markdown_(),
            "text/html": result_html(self),
        }
