"""The executor seam: where a batch's tasks run, chosen by name, like papermill's engines.

An executor gets a batch the preamble (:mod:`.preamble`) has already checked, journaled and
resumed, and runs the pending tasks: ``"local"`` in this process (:mod:`.local`), ``"ray"`` on a
Ray cluster (:mod:`orchestrator_nb.scaleout.ray_executor`). A third party registers its own::

    executors = default_executors()
    executors.register("slurm", SlurmExecutor, options=("partition",))
    batch(tasks, executor="slurm", executors=executors, partition="gpu")

A factory is called with the name as given and the options the executor declared (taken out
of the batch's keyword arguments; the rest go to every run as workflow overrides). It takes its
policies there, in its constructor: nothing is patched onto an executor afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError

if TYPE_CHECKING:
    from .preamble import Batch
    from .result import BatchResult
    from .tasks import BatchTask


class Executor(Protocol):
    """Runs a batch's pending tasks; the preamble has done everything else."""

    name: str  # recorded in the journal's header

    def start(self, batch: Batch) -> BatchResult:
        """Before the journal's header is written: check what this executor needs of the
        batch (raise a ConfigError), and return the result it will fill."""
        ...

    async def run(self, batch: Batch, pending: list[BatchTask]) -> None:
        """Run ``pending`` (never empty); hand each finished task to :meth:`Batch.record`."""
        ...


ExecutorFactory = Callable[..., Executor]  # (name: str, **options) -> Executor


@dataclass(frozen=True)
class ExecutorEntry:
    name: str
    factory: ExecutorFactory
    options: frozenset[str]
    claims: Callable[[str], bool] | None  # other spellings it answers to ("ray://...")
    forms: str  # how the user may spell it, for error messages


class ExecutorRegistry:
    """Executors by name; ``create`` picks one and splits its options from the overrides."""

    def __init__(self) -> None:
        self._entries: dict[str, ExecutorEntry] = {}

    def register(
        self,
        name: str,
        factory: ExecutorFactory,
        *,
        options: Iterable[str] = (),
        claims: Callable[[str], bool] | None = None,
        forms: str | None = None,
    ) -> None:
        """Make ``executor=name`` call ``factory(name, **options)``; ``claims`` answers for
        other spellings (an address, say). A later registration under a name replaces it."""
        if not isinstance(name, str) or not name:
            raise ConfigError("an executor needs a name", key="executor")
        self._entries[name] = ExecutorEntry(
            name, factory, frozenset(options), claims, forms or repr(name)
        )

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, executor: str) -> ExecutorEntry:
        if not isinstance(executor, str):
            raise ConfigError(
                f"executor must be a string, not {type(executor).__name__}",
                key="executor",
                hint=f"use one of: {self._known()}",
            )
        found = self._entries.get(executor)
        if found is None:
            found = next(
                (e for e in self._entries.values() if e.claims and e.claims(executor)), None
            )
        if found is None:
            raise ConfigError(
                f"unknown executor {executor!r}",
                key="executor",
                hint=f"known executors: {self._known()}; or register one in an "
                "ExecutorRegistry and pass it as executors=",
            )
        return found

    def create(self, executor: str, options: Mapping[str, Any]) -> tuple[Executor, dict[str, Any]]:
        """The executor for ``executor``, made with its own options; and the other options."""
        entry = self.entry(executor)
        own = {k: v for k, v in options.items() if k in entry.options}
        rest = {k: v for k, v in options.items() if k not in entry.options}
        return entry.factory(executor, **own), rest

    def _known(self) -> str:
        return ", ".join(self._entries[n].forms for n in self.names()) or "none"


_HOST_PORT = re.compile(r"[A-Za-z0-9_.\-\[\]:]+:\d{1,5}")
RAY_OPTIONS = (
    "caps",
    "batch_budget",
    "cancel",
    "cancel_grace_s",
    "worker_dir",
    "task_options",
)


def is_ray_address(executor: str) -> bool:
    """``auto``, ``ray://host:port`` or a ``host:port`` GCS address: Ray's, besides ``ray``."""
    return (
        executor == "auto" or executor.startswith("ray://") or bool(_HOST_PORT.fullmatch(executor))
    )


def _local(name: str) -> Executor:
    from .local import LocalExecutor

    return LocalExecutor()


def _ray(name: str, **options: Any) -> Executor:
    from ..scaleout.ray_executor import RayExecutor  # Ray is imported only when asked for

    return RayExecutor(name, **options)


def default_executors() -> ExecutorRegistry:
    """A fresh registry with ``local`` and ``ray`` (also ``auto``, ``ray://...``, ``host:port``)."""
    registry = ExecutorRegistry()
    registry.register("local", _local, forms="'local'")
    registry.register(
        "ray",
        _ray,
        options=RAY_OPTIONS,
        claims=is_ray_address,
        forms="'ray' (or 'auto', 'ray://host:10001', 'host:6379')",
    )
    return registry


__all__ = [
    "RAY_OPTIONS",
    "Executor",
    "ExecutorEntry",
    "ExecutorFactory",
    "ExecutorRegistry",
    "default_executors",
    "is_ray_address",
]
