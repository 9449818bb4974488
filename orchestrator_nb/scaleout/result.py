"""What a batch on Ray returns, and the budget that can stop it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..batching.result import BatchResult
from ..errors import ConfigError
from ..workflow.policies import BudgetExceeded
from .caps import AgentCall
from .coordinator import Spend


@dataclass(frozen=True)
class BatchBudget:
    """Limits on what the whole batch may spend; crossing one stops the batch."""

    max_cost_usd: float | None = None
    max_tokens: int | None = None

    @classmethod
    def from_arg(cls, value: BatchBudget | Mapping[str, Any] | None) -> BatchBudget:
        if value is None or isinstance(value, BatchBudget):
            return value or cls()
        unknown = set(value) - {"max_cost_usd", "max_tokens"}
        if unknown:
            raise ConfigError(
                f"unknown batch budget key(s) {', '.join(sorted(unknown))}",
                key="batch_budget",
                hint="accepted: max_cost_usd, max_tokens",
            )
        for key, limit in value.items():
            if limit is not None and (isinstance(limit, bool) or not limit > 0):
                raise ConfigError(
                    f"batch_budget {key} must be a positive number, not {limit!r}",
                    key=f"batch_budget.{key}",
                    hint="leave it out for no limit",
                )
        tokens = value.get("max_tokens")
        cost = value.get("max_cost_usd")
        return cls(
            float(cost) if cost is not None else None, int(tokens) if tokens is not None else None
        )

    def exceeded(self, spent: Spend) -> BudgetExceeded | None:
        if self.max_cost_usd is not None and spent.cost_usd > self.max_cost_usd:
            return BudgetExceeded("max_cost_usd", spent.cost_usd, self.max_cost_usd)
        if self.max_tokens is not None and spent.tokens > self.max_tokens:
            return BudgetExceeded("max_tokens", spent.tokens, self.max_tokens)
        return None


@dataclass
class RayBatchResult(BatchResult):
    """A :class:`BatchResult` that also says where each task ran and when agents held caps."""

    executor: str = "ray"
    nodes: dict[str, str] = field(default_factory=dict)  # task id → Ray node id
    calls: list[AgentCall] = field(default_factory=list)  # this run's agent calls
    caps: dict[str, dict[str, int]] = field(default_factory=dict)  # agent → cap, peak, waited

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["executor"] = self.executor
        out["nodes"] = dict(self.nodes)
        out["caps"] = {agent: dict(stats) for agent, stats in self.caps.items()}
        return out


__all__ = ["BatchBudget", "RayBatchResult"]
