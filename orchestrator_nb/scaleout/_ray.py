"""Ray is optional: imported only here, when a batch asks for it, with an install hint."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from ..batching.executor import is_ray_address
from ..errors import ConfigError

INSTALL_HINT = 'pip install "orchestrator-nb[ray]"   (or: pip install "ray[client]>=2.9")'
EXECUTORS = "'local', 'ray', 'auto', 'ray://host:10001' or 'host:6379'"


def require_ray() -> Any:
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "the Ray executor needs Ray, which is not installed in this environment",
            key="executor",
            hint=f"{INSTALL_HINT}; or run the batch with executor='local'",
        ) from exc
    return ray


def ray_address(executor: str) -> str | None:
    """What ``ray.init(address=...)`` gets for an executor: None starts or joins as Ray does
    by default (``RAY_ADDRESS``, else a new local cluster)."""
    if not isinstance(executor, str):
        raise ConfigError(
            f"executor must be a string, not {type(executor).__name__}",
            key="executor",
            hint=f"use {EXECUTORS}",
        )
    if executor == "ray":
        return None
    if is_ray_address(executor):
        return executor
    if executor == "local":
        raise ConfigError(
            "executor='local' runs without Ray",
            key="executor",
            hint="call orchestrator_nb.batch(...) with executor='local' (the default)",
        )
    raise ConfigError(f"unknown executor {executor!r}", key="executor", hint=f"use {EXECUTORS}")


CONNECT_ATTEMPTS = 3


def connect(ray: Any, address: str | None) -> bool:
    """Join (or start) the cluster unless this process already did; True if this call did."""
    if ray.is_initialized():
        return False
    # Quiet: the workers' logs stay on the nodes, and no "Connecting to..." in the notebook.
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        options["include_dashboard"] = False
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            ray.init(address=address, **options)
            return True
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
            # A failed init leaves half-made state behind; without this every later init in the
            # process fails with a bare AssertionError.
            with contextlib.suppress(Exception):
                ray.shutdown()
            if attempt + 1 == CONNECT_ATTEMPTS:
                where = address or "RAY_ADDRESS or a new local cluster"
                raise ConfigError(
                    f"cannot start or join the Ray cluster ({where}): {type(exc).__name__}: {exc}",
                    key="executor",
                    hint="check the address and that the cluster is up (`ray status` on the "
                    "head); the driver and the cluster need the same Ray and Python versions",
                ) from exc
            # The head starts a client server per connection, which can fail when it is busy.
            time.sleep(2.0 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


__all__ = ["INSTALL_HINT", "connect", "ray_address", "require_ray"]
