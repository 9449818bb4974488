"""A batch's summary: one row per task, shown as a table (text and HTML), saved as CSV or JSON."""

from __future__ import annotations

import csv
import html
import io
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..display import REHEARSAL_MARK, cost, cost_reported, number, usage_line
from ..events import FileChange, StepResult, Usage
from ..fsio import write_json, write_text
from ..workflow.result import WorkflowResult

_GREEN, _RED = "#1a7f37", "#cf222e"
_CELL = "padding:2px 8px;border-bottom:1px solid #d0d7de;text-align:left"
_NUM = "padding:2px 8px;border-bottom:1px solid #d0d7de;text-align:right"


@dataclass(frozen=True)
class BatchRow:
    """One task's line in the summary."""

    id: str
    workflow: str
    task: str
    outcome: str  # completed | failed | cancelled | budget_exceeded
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    seconds: float = 0.0
    where: str = ""  # its branch (git) or its folder relative to the workspace
    error: str | None = None
    resumed: bool = False  # taken from the journal of an earlier run of the batch
    # agent -> whether it reported a cost: whom the batch total covers (kept in the journal)
    agents: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome == "completed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchRow:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def cells(self) -> list[str]:
        outcome = self.outcome + ("*" if self.resumed else "")
        return [
            self.id,
            outcome,
            number(self.input_tokens),
            number(self.output_tokens),
            cost(self.cost_usd),
            f"{self.seconds:.1f}",
            self.where,
        ]


HEADERS = ["task", "outcome", "tokens in", "tokens out", "cost", "seconds", "branch / folder"]
CSV_FIELDS = [
    "id",
    "workflow",
    "outcome",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "seconds",
    "where",
    "error",
    "resumed",
    "task",
]


@dataclass
class BatchResult:
    """Every task's outcome, tokens, cost and time; ``results`` holds each WorkflowResult."""

    batch_id: str
    workspace: str
    journal: str
    isolation: str
    rows: list[BatchRow] = field(default_factory=list)
    results: dict[str, WorkflowResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every task completed."""
        return all(row.ok for row in self.rows)

    @property
    def failed(self) -> list[BatchRow]:
        return [row for row in self.rows if not row.ok]

    def row(self, task_id: str) -> BatchRow:
        for row in self.rows:
            if row.id == task_id:
                return row
        raise KeyError(f"no task {task_id!r} in batch {self.batch_id}")

    def __iter__(self) -> Iterator[BatchRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    # -- files ----------------------------------------------------------------------------

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """One line per task (``id, workflow, outcome, tokens, cost_usd, seconds, ...``)."""
        target = Path(path)
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: v for k, v in row.to_dict().items() if k in CSV_FIELDS})
        # An export like any other: atomic and redacted (fsio).
        return write_text(target, out.getvalue(), anchor=target.parent)

    def to_dict(self) -> dict[str, Any]:
        totals = self._totals()
        return {
            "batch_id": self.batch_id,
            "workspace": self.workspace,
            "journal": self.journal,
            "isolation": self.isolation,
            "ok": self.ok,
            "totals": totals,
            "tasks": [row.to_dict() for row in self.rows],
            "notes": list(self.notes),
        }

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        target = Path(path)
        return write_json(target, self.to_dict(), anchor=target.parent)

    # -- display --------------------------------------------------------------------------

    def _totals(self) -> dict[str, Any]:
        costs = [r.cost_usd for r in self.rows if r.cost_usd is not None]
        return {
            "tasks": len(self.rows),
            "completed": sum(1 for r in self.rows if r.ok),
            "input_tokens": sum(r.input_tokens for r in self.rows),
            "output_tokens": sum(r.output_tokens for r in self.rows),
            "cost_usd": sum(costs) if costs else None,
            "seconds": sum(r.seconds for r in self.rows),
        }

    @property
    def rehearsal(self) -> bool:
        """True when the tasks ran under rehearsal (their cost is a script's, not money spent)."""
        return any(result.rehearsal for result in self.results.values())

    def summary(self) -> str:
        t = self._totals()
        scripted = self.rehearsal
        total = Usage(t["input_tokens"], t["output_tokens"], cost_usd=t["cost_usd"])
        # Whom the cost covers, as a run's total says it: an agent with no cost is named.
        covered: dict[str, bool] = {}
        for row in self.rows:
            cost_reported(row.agents, into=covered)
        spent = usage_line(total, covered, scripted=scripted)
        mark = f" ({REHEARSAL_MARK})" if scripted else ""
        return f"batch {self.batch_id}{mark}: {t['completed']}/{t['tasks']} completed — {spent}"

    def __str__(self) -> str:
        table = [HEADERS, *(row.cells() for row in self.rows)]
        widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS))]
        numeric = {2, 3, 4, 5}
        lines = [self.summary()]
        for n, cells in enumerate(table):
            parts = [
                c.rjust(w) if i in numeric and n else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ]
            lines.append("  ".join(parts).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.extend(f"{row.id}: {row.error}" for row in self.failed if row.error)
        if any(row.resumed for row in self.rows):
            lines.append("* from the journal of an earlier run of this batch")
        lines.extend(f"note: {note}" for note in self.notes)
        lines.append(f"journal: {self.journal}")
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        colour = _GREEN if self.ok else _RED
        head = "".join(f'<th style="{_CELL}">{html.escape(h)}</th>' for h in HEADERS)
        body = []
        for row in self.rows:
            cells = row.cells()
            tint = _GREEN if row.ok else _RED
            tds = []
            for i, cell in enumerate(cells):
                style = _NUM if i in (2, 3, 4, 5) else _CELL
                if i == 1:
                    style += f";color:{tint};font-weight:bold"
                title = f' title="{html.escape(row.error)}"' if i == 1 and row.error else ""
                tds.append(f'<td style="{style}"{title}>{html.escape(cell)}</td>')
            body.append(f"<tr>{''.join(tds)}</tr>")
        notes = "".join(
            f'<div style="color:#57606a">{html.escape(line)}</div>'
            for line in [
                *(f"{r.id}: {r.error}" for r in self.failed if r.error),
                *(f"note: {n}" for n in self.notes),
                f"journal: {self.journal}",
            ]
        )
        out = (
            f'<div style="border-left:4px solid {colour};padding:4px 8px;font-family:sans-serif">'
            f"<div><b>{html.escape(self.summary())}</b></div>"
            f'<table style="border-collapse:collapse;font-size:13px;margin:4px 0">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"{notes}</div>"
        )
        return {"text/plain": str(self), "text/html": out}


def workflow_result_from_dict(data: dict[str, Any], workspace: str | None) -> WorkflowResult:
    """Rebuild a finished task's WorkflowResult from the journal (``WorkflowResult.to_dict``)."""
    return WorkflowResult(
        run_id=str(data.get("run_id", "")),
        workflow=str(data.get("workflow", "")),
        task=str(data.get("task", "")),
        outcome=data.get("outcome", "failed"),
        steps=[StepResult.from_dict(s) for s in data.get("steps", [])],
        changes=[FileChange(c["path"], c.get("kind", "modified")) for c in data.get("changes", [])],
        diff=str(data.get("diff", "")),
        error=data.get("error"),
        duration_s=float(data.get("duration_s", 0.0)),
        notes=list(data.get("notes", [])),
        workspace=workspace,
    )


__all__ = ["BatchResult", "BatchRow", "workflow_result_from_dict"]
