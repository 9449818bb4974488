"""Prometheus metrics in the project's own registry, tables for the notebook, and /metrics.

The registry is created once per process (:func:`get_metrics`) and never mixed with
``prometheus_client.REGISTRY``, so a kernel that imports other instrumented libraries does not
export their series as ours, and ours never collide with theirs.

Vocabulary: a *task* is one workflow run (``RunFinished``); an *agent call* is one finished
agent step (``StepFinished``), whose attempts count as retries beyond the first.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any, Literal, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import MetricsHandler, generate_latest

from ..errors import ConfigError
from ..events import RetryEvent
from ..lifecycle import AgentEventEmitted, LifecycleEvent, RunFinished, RunStarted, StepFinished
from .redact import redact

BreakerState = Literal["closed", "open", "half_open"]
_BREAKER_VALUE: dict[str, float] = {"closed": 0.0, "open": 1.0, "half_open": 2.0}
# A workflow takes seconds to an hour; one agent call a second to ~15 minutes (the default
# timeout); the buckets are spread over those ranges.
_TASK_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, float("inf"))
_CALL_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900, float("inf"))
LOOPBACK = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1"}


class BreakerStates(Protocol):
    """What the subscriber reads breaker states from (the engine's ``Breakers``)."""

    def states(self) -> Mapping[str, str]: ...


def _label(value: str | None) -> str:
    # A label value is shown on /metrics and in tables: a model name that is a secret is masked.
    return redact(value) if value else "unknown"


class Metrics:
    """Every metric of the project, registered in ``registry`` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.tasks = Counter(
            "orchestrator_tasks_total",
            "Workflow runs finished.",
            ["workflow", "outcome"],
            registry=r,
        )
        self.task_duration = Histogram(
            "orchestrator_task_duration_seconds",
            "Wall time of workflow runs.",
            ["workflow"],
            buckets=_TASK_BUCKETS,
            registry=r,
        )
        self.task_failures = Counter(
            "orchestrator_task_failures_total",
            "Workflow runs that did not complete.",
            ["workflow", "outcome"],
            registry=r,
        )
        self.agent_calls = Counter(
            "orchestrator_agent_calls_total", "Agent steps finished.", ["agent"], registry=r
        )
        self.agent_errors = Counter(
            "orchestrator_agent_errors_total",
            "Agent steps that failed, by error kind.",
            ["agent", "kind"],
            registry=r,
        )
        self.agent_response_time = Histogram(
            "orchestrator_agent_response_time_seconds",
            "Time of agent steps, all attempts included.",
            ["agent"],
            buckets=_CALL_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter(
            "orchestrator_cache_hits_total",
            "Agent steps served from the cache.",
            ["agent"],
            registry=r,
        )
        self.cache_misses = Counter(
            "orchestrator_cache_misses_total",
            "Agent steps that ran the agent (not served from the cache).",
            ["agent"],
            registry=r,
        )
        self.active_sessions = Gauge(
            "orchestrator_active_sessions",
            "Sessions (or runs without a session) with a workflow running now.",
            registry=r,
        )
        self.tokens = Counter(
            "orchestrator_tokens_total",
            "Tokens used, by agent, model and kind (input, output, cached).",
            ["agent", "model", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "orchestrator_cost_usd_total",
            "Cost in USD where the CLI reports it (a rehearsal's scripted cost is not counted).",
            ["agent", "model"],
            registry=r,
        )
        self.retries = Counter(
            "orchestrator_retries_total",
            "Retries: by the engine (another attempt) or inside the CLI (its own retry events).",
            ["agent", "source"],
            registry=r,
        )
        self.rate_limit_waits = Counter(
            "orchestrator_rate_limit_waits_total",
            "Waits caused by rate limits (429s, or the engine's own rate limiter).",
            ["agent"],
            registry=r,
        )
        self.rate_limit_wait_seconds = Counter(
            "orchestrator_rate_limit_wait_seconds_total",
            "Seconds spent waiting on rate limits where known.",
            ["agent"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "orchestrator_circuit_breaker_state",
            "Circuit breaker per agent: 0 closed, 1 open, 2 half-open.",
            ["agent"],
            registry=r,
        )
        self._active: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- calls for code that knows more than the lifecycle events say -----------------------

    def set_breaker_state(self, agent: str, state: BreakerState) -> None:
        self.breaker_state.labels(agent).set(_BREAKER_VALUE[state])

    def rate_limit_wait(self, agent: str, seconds: float | None = None) -> None:
        self.rate_limit_waits.labels(agent).inc()
        if seconds:
            self.rate_limit_wait_seconds.labels(agent).inc(max(seconds, 0.0))

    def session_started(self, key: str) -> None:
        with self._lock:
            self._active[key] = self._active.get(key, 0) + 1
            self.active_sessions.set(len(self._active))

    def session_ended(self, key: str) -> None:
        with self._lock:
            left = self._active.get(key, 0) - 1
            if left > 0:
                self._active[key] = left
            else:
                self._active.pop(key, None)
            self.active_sessions.set(len(self._active))

    def exposition(self) -> bytes:
        """The Prometheus text format of the registry (what /metrics serves), redacted."""
        return generate_latest(RedactedRegistry(self.registry))


class RedactedRegistry:
    """A view of a registry whose label values are redacted: what /metrics and tables read."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Any]:
        for family in self._registry.collect():
            family.samples = [
                s._replace(labels={k: redact(v) for k, v in s.labels.items()})
                for s in family.samples
            ]
            yield family

    def restricted_registry(self, names: Any) -> RedactedRegistry:
        return RedactedRegistry(self._registry.restricted_registry(names))


_metrics: Metrics | None = None
_metrics_lock = threading.Lock()


def get_metrics() -> Metrics:
    """The process-wide metrics, created on first use."""
    global _metrics
    with _metrics_lock:
        if _metrics is None:
            _metrics = Metrics()
        return _metrics


class MetricsSubscriber:
    """Turns lifecycle events into metric updates.

    ``breakers`` (the engine's ``Breakers``) is read after every step, since a breaker changes
    state without an event of its own.
    """

    def __init__(
        self, metrics: Metrics | None = None, *, breakers: BreakerStates | None = None
    ) -> None:
        self.metrics = metrics or get_metrics()
        self.breakers = breakers
        self._session_of: dict[str, str] = {}
        self._rehearsed: set[str] = set()  # runs whose cost is a script's, not money spent
        self._lock = threading.Lock()

    def __call__(self, event: LifecycleEvent) -> None:
        m = self.metrics
        if isinstance(event, RunStarted):
            key = event.session or event.run_id
            with self._lock:
                self._session_of[event.run_id] = key
                if event.rehearsal:
                    self._rehearsed.add(event.run_id)
            m.session_started(key)
        elif isinstance(event, RunFinished):
            m.tasks.labels(event.workflow, event.outcome).inc()
            m.task_duration.labels(event.workflow).observe(max(event.duration_s, 0.0))
            if not event.ok:
                m.task_failures.labels(event.workflow, event.outcome).inc()
            with self._lock:
                ended = self._session_of.pop(event.run_id, None)
                self._rehearsed.discard(event.run_id)
            if ended is not None:
                m.session_ended(ended)
        elif isinstance(event, StepFinished):
            self._step(event)
            self._read_breakers()
        elif isinstance(event, AgentEventEmitted) and isinstance(event.event, RetryEvent):
            retry = event.event
            m.retries.labels(event.agent, retry.source).inc()
            if "rate" in retry.reason.lower() or "429" in retry.reason:
                m.rate_limit_wait(event.agent, retry.delay_s)

    def _read_breakers(self) -> None:
        if self.breakers is None:
            return
        for agent, state in self.breakers.states().items():
            if state in _BREAKER_VALUE:
                self.metrics.breaker_state.labels(agent).set(_BREAKER_VALUE[state])

    def _step(self, event: StepFinished) -> None:
        m, r = self.metrics, event.result
        agent = _label(event.agent or r.agent)
        if r.skipped:
            return
        if event.cached or r.cached:
            m.cache_hits.labels(agent).inc()
            return  # no agent ran: no call, no tokens spent now
        m.cache_misses.labels(agent).inc()
        m.agent_calls.labels(agent).inc()
        m.agent_response_time.labels(agent).observe(max(r.duration_s, 0.0))
        if not r.ok:
            m.agent_errors.labels(agent, _label(r.error_kind or "failed")).inc()
        model = _label(r.model)
        usage = r.usage
        for kind, count in (
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cached", usage.cached_tokens),
        ):
            if count > 0:
                m.tokens.labels(agent, model, kind).inc(count)
        with self._lock:
            scripted = event.run_id in self._rehearsed
        if usage.cost_usd and not scripted:
            m.cost.labels(agent, model).inc(max(usage.cost_usd, 0.0))
        # The engine's retries are counted from their RetryEvent, announced before each wait.


# -- display ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricRow:
    name: str
    labels: dict[str, str]
    value: float
    help: str


class MetricsTable:
    """The current values as a table: ``text/plain`` and inline-styled ``text/html``."""

    def __init__(self, rows: list[MetricRow]) -> None:
        self.rows = rows

    @staticmethod
    def _fmt(value: float) -> str:
        return str(int(value)) if float(value).is_integer() else f"{value:.4g}"

    @staticmethod
    def _labels(labels: dict[str, str]) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))

    def __str__(self) -> str:
        if not self.rows:
            return "no metrics recorded yet"
        cells = [(r.name, self._labels(r.labels), self._fmt(r.value)) for r in self.rows]
        w0 = max(len(c[0]) for c in cells)
        w1 = max([len(c[1]) for c in cells] + [6])
        lines = [f"{'metric':<{w0}}  {'labels':<{w1}}  value"]
        lines += [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in cells]
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        cell = 'style="text-align:left;padding:2px 8px;border-bottom:1px solid #ddd"'
        head = "".join(f"<th {cell}>{h}</th>" for h in ("metric", "labels", "value"))
        body = "".join(
            f'<tr><td {cell} title="{html.escape(r.help)}"><code>{html.escape(r.name)}</code></td>'
            f"<td {cell}>{html.escape(self._labels(r.labels))}</td>"
            f"<td {cell.replace('left', 'right')}>{self._fmt(r.value)}</td></tr>"
            for r in self.rows
        )
        if not self.rows:
            body = f'<tr><td colspan="3" {cell}>no metrics recorded yet</td></tr>'
        table = f'<table style="border-collapse:collapse;font-size:90%">{head}{body}</table>'
        return {"text/plain": str(self), "text/html": table}


def metrics_table(metrics: Metrics | None = None) -> MetricsTable:
    """A table of every series with a value (histograms as their count and sum)."""
    m = metrics or get_metrics()
    rows: list[MetricRow] = []
    for family in RedactedRegistry(m.registry).collect():
        for sample in family.samples:
            if sample.name.endswith(("_created", "_bucket")):
                continue
            rows.append(
                MetricRow(sample.name, dict(sample.labels), sample.value, family.documentation)
            )
    rows.sort(key=lambda r: (r.name, sorted(r.labels.items())))
    return MetricsTable(rows)


@dataclass
class AgentUsage:
    """One agent's line of ``%orchestrate metrics``: what a user asks of the counters."""

    agent: str
    models: list[str]
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None  # None: no call of this agent reported a cost
    errors: dict[str, int] | None = None  # by error kind

    @property
    def error_count(self) -> int:
        return sum((self.errors or {}).values())


@dataclass
class UsageSummary:
    """Per agent, and the runs: the readable form of the registry (the raw one is
    :meth:`Metrics.exposition`)."""

    agents: list[AgentUsage]
    runs: int = 0
    runs_not_completed: int = 0
    retries: int = 0


def usage_summary(metrics: Metrics | None = None) -> UsageSummary:
    """The counters added up per agent: calls, tokens, cost, errors, and the models seen."""
    m = metrics or get_metrics()
    rows: dict[str, AgentUsage] = {}
    summary = UsageSummary([])

    def row(agent: str) -> AgentUsage:
        return rows.setdefault(agent, AgentUsage(agent, []))

    for family in RedactedRegistry(m.registry).collect():
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            if sample.name == "orchestrator_agent_calls_total":
                row(labels["agent"]).calls += int(value)
            elif sample.name == "orchestrator_agent_errors_total" and value:
                errors = row(labels["agent"]).errors
                errors = row(labels["agent"]).errors = errors or {}
                errors[labels["kind"]] = errors.get(labels["kind"], 0) + int(value)
            elif sample.name == "orchestrator_tokens_total" and value:
                line = row(labels["agent"])
                field = f"{labels['kind']}_tokens"
                if hasattr(line, field):
                    setattr(line, field, getattr(line, field) + int(value))
                if labels["model"] not in line.models:
                    line.models.append(labels["model"])
            elif sample.name == "orchestrator_cost_usd_total" and value:
                line = row(labels["agent"])
                line.cost_usd = (line.cost_usd or 0.0) + value
                if labels["model"] not in line.models:
                    line.models.append(labels["model"])
            elif sample.name == "orchestrator_tasks_total":
                summary.runs += int(value)
            elif sample.name == "orchestrator_task_failures_total":
                summary.runs_not_completed += int(value)
            elif sample.name == "orchestrator_retries_total":
                summary.retries += int(value)
    summary.agents = [rows[a] for a in sorted(rows)]
    for line in summary.agents:
        line.models.sort()
    return summary


# -- /metrics over HTTP -------------------------------------------------------------------


class MetricsServer:
    """A running /metrics endpoint; ``stop()`` closes the port."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread, host: str) -> None:
        self._server = server
        self._thread = thread
        self.host, self.port = host, int(server.server_address[1])
        self.url = f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<MetricsServer {self.url}>"


def serve_metrics(
    port: int = 0, host: str = "127.0.0.1", *, metrics: Metrics | None = None
) -> MetricsServer:
    """Serve /metrics of the project's registry from this kernel, on the loopback only.

    ``port=0`` picks a free port (see ``.url``). To reach it from elsewhere, tunnel to it (for
    example ``ssh -L``); exposing it on other interfaces is deliberately not offered.
    """
    if host not in LOOPBACK:
        raise ConfigError(
            f"refusing to serve metrics on {host!r}",
            key="host",
            hint="metrics are served on 127.0.0.1 only; use an SSH tunnel to reach them",
        )
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"invalid port {port!r}", key="port", hint="a number from 1 to 65535")
    registry = RedactedRegistry((metrics or get_metrics()).registry)

    class _Quiet(MetricsHandler.factory(registry)):  # type: ignore[misc]
        def log_message(self, format: str, *args: Any) -> None:
            pass  # request lines would land in the notebook's stderr

    try:
        server = ThreadingHTTPServer((LOOPBACK[host], port), _Quiet)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}",
            key="port",
            hint="pick another port, or 0 for any free one",
        ) from exc
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="orchestrator-metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread, LOOPBACK[host])


__all__ = [
    "AgentUsage",
    "BreakerState",
    "BreakerStates",
    "MetricRow",
    "Metrics",
    "MetricsServer",
    "MetricsSubscriber",
    "MetricsTable",
    "UsageSummary",
    "get_metrics",
    "metrics_table",
    "serve_metrics",
    "usage_summary",
]
