"""The Ray executor's arguments, and what happens without Ray installed (no cluster needed)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import orchestrator_nb.scaleout as scaleout
from orchestrator_nb.errors import ConfigError
from orchestrator_nb.scaleout._ray import ray_address
from orchestrator_nb.scaleout.coordinator import Spend
from orchestrator_nb.scaleout.result import BatchBudget


def test_without_ray_the_executor_says_how_to_install_it(tmp_path: Path) -> None:
    # A fresh interpreter in which `import ray` fails, whether or not Ray is installed here.
    code = textwrap.dedent(
        """
        import json, sys
        sys.modules["ray"] = None
        from orchestrator_nb.errors import ConfigError
        from orchestrator_nb.scaleout import batch_ray
        try:
            batch_ray(["a task"], executor="ray", workspace=sys.argv[1])
        except ConfigError as exc:
            print(json.dumps({"message": exc.message, "hint": exc.hint, "key": exc.key}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    error = json.loads(done.stdout)
    assert "needs Ray, which is not installed" in error["message"]
    assert 'pip install "orchestrator-nb[ray]"' in error["hint"]
    assert error["key"] == "executor"


def test_importing_the_package_does_not_import_ray() -> None:
    code = "import sys, orchestrator_nb.scaleout; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_executor_addresses() -> None:
    assert ray_address("ray") is None
    assert ray_address("auto") == "auto"
    assert ray_address("ray://head:10001") == "ray://head:10001"
    assert ray_address("10.0.0.5:6379") == "10.0.0.5:6379"
    with pytest.raises(ConfigError, match="runs without Ray"):
        ray_address("local")
    for bad in ("", "kubernetes", "http://head:8265", 42):
        with pytest.raises(ConfigError, match="executor"):
            ray_address(bad)  # type: ignore[arg-type]


def test_batch_budgets() -> None:
    assert BatchBudget.from_arg(None) == BatchBudget()
    budget = BatchBudget.from_arg({"max_cost_usd": 1, "max_tokens": 100})
    assert budget == BatchBudget(1.0, 100)
    assert budget.exceeded(Spend(50, 50, 1.0)) is None  # at the limit is not past it
    over = budget.exceeded(Spend(60, 50, 0.5))
    assert over is not None and over.budget == "max_tokens"
    over = budget.exceeded(Spend(1, 1, 1.25))
    assert over is not None and "max_cost_usd exceeded" in over.message
    with pytest.raises(ConfigError, match="unknown batch budget"):
        BatchBudget.from_arg({"max_wall_s": 5})
    with pytest.raises(ConfigError, match="positive"):
        BatchBudget.from_arg({"max_cost_usd": 0})


def test_the_public_api_is_small() -> None:
    assert sorted(scaleout.__all__) == [
        "AgentCall",
        "BatchBudget",
        "RayBatchResult",
        "abatch_ray",
        "batch_ray",
        "overlaps",
    ]
    for name in scaleout.__all__:
        assert getattr(scaleout, name) is not None
