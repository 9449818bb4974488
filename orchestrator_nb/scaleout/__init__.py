"""Scale a batch out to a Ray cluster: every task runs its whole workflow on a worker.

::

    from orchestrator_nb.scaleout import batch_ray

    result = batch_ray(tasks, "quick", executor="ray://head:10001", max_concurrency=50)

Ray is an extra (``pip install "orchestrator-nb[ray]"``); it is imported only when a batch
runs on it, and asking for it without it installed raises a ConfigError with the command.
"""

from __future__ import annotations

from .caps import AgentCall, overlaps
from .ray_executor import abatch_ray, batch_ray
from .result import BatchBudget, RayBatchResult

__all__ = ["AgentCall", "BatchBudget", "RayBatchResult", "abatch_ray", "batch_ray", "overlaps"]
