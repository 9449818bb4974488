"""Metrics: the named series, updated from lifecycle events, shown as a table and over HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import prometheus_client
import pytest
import yaml

from orchestrator_nb.errors import AgentRateLimited, ConfigError
from orchestrator_nb.events import Attempt, RetryEvent, StepResult, TextEvent, Usage
from orchestrator_nb.lifecycle import (
    AgentEventEmitted,
    RunFinished,
    RunStarted,
    StepFinished,
)
from orchestrator_nb.observe.metrics import (
    Metrics,
    MetricsSubscriber,
    get_metrics,
    metrics_table,
    serve_metrics,
)

NAMED = [
    "orchestrator_tasks_total",
    "orchestrator_task_duration_seconds",
    "orchestrator_task_failures_total",
    "orchestrator_agent_calls_total",
    "orchestrator_agent_errors_total",
    "orchestrator_agent_response_time_seconds",
    "orchestrator_cache_hits_total",
    "orchestrator_cache_misses_total",
    "orchestrator_active_sessions",
    "orchestrator_tokens_total",
    "orchestrator_cost_usd_total",
    "orchestrator_retries_total",
    "orchestrator_rate_limit_waits_total",
    "orchestrator_circuit_breaker_state",
]


def _value(m: Metrics, name: str, **labels: str) -> float | None:
    value: float | None = m.registry.get_sample_value(name, labels)
    return value


def _ok_step(**kw: object) -> StepResult:
    base: dict[str, object] = {
        "agent": "claude",
        "ok": True,
        "model": "sonnet",
        "usage": Usage(100, 20, 5, 0.01),
        "duration_s": 3.0,
        "attempts": [Attempt(1, True, 3.0)],
    }
    base.update(kw)
    return StepResult(**base)  # type: ignore[arg-type]


def test_every_named_metric_is_exported() -> None:
    text = Metrics().exposition().decode()
    for name in NAMED:
        assert f"# TYPE {name.removesuffix('_total')}" in text, name


def test_registry_is_own_and_created_once() -> None:
    assert get_metrics() is get_metrics()
    assert get_metrics().registry is not prometheus_client.REGISTRY
    default = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "orchestrator_" not in default


def test_subscriber_counts_a_run() -> None:
    m = Metrics()
    sub = MetricsSubscriber(m)
    sub(RunStarted("r1", "flow", "task", "/ws", session="s1"))
    sub(RunStarted("r2", "flow", "task", "/ws", session="s1"))
    sub(RunStarted("r3", "flow", "task", "/ws"))
    assert _value(m, "orchestrator_active_sessions") == 2  # s1 and the session-less r3
    sub(StepFinished("r1", "impl", "claude", _ok_step()))
    limited = AgentRateLimited("429", agent="codex")
    failed = _ok_step(
        agent="codex",
        ok=False,
        model=None,
        error=limited,
        usage=Usage(),
        attempts=[Attempt(1, False, 1, "rate_limit"), Attempt(2, False, 1, "rate_limit")],
    )
    # The engine announces its own retry before waiting; that is what counts it.
    engine_retry = RetryEvent(1, "rate_limit: 429", 1.0, source="engine")
    sub(AgentEventEmitted("r1", "review", "codex", engine_retry))
    sub(StepFinished("r1", "review", "codex", failed))
    sub(StepFinished("r1", "impl2", "claude", _ok_step(), cached=True))
    sub(AgentEventEmitted("r1", "impl", "claude", RetryEvent(2, "rate limited (429)", 4.0)))
    sub(AgentEventEmitted("r1", "impl", "claude", TextEvent("hi")))
    sub(RunFinished("r1", "flow", "completed", True, Usage(), 12.0))
    sub(RunFinished("r2", "flow", "failed", False, Usage(), 2.0, "boom"))
    sub(RunFinished("r3", "flow", "budget_exceeded", False, Usage(), 1.0))

    assert _value(m, "orchestrator_active_sessions") == 0
    assert _value(m, "orchestrator_tasks_total", workflow="flow", outcome="completed") == 1
    assert _value(m, "orchestrator_task_failures_total", workflow="flow", outcome="failed") == 1
    assert _value(m, "orchestrator_task_duration_seconds_count", workflow="flow") == 3
    assert _value(m, "orchestrator_task_duration_seconds_sum", workflow="flow") == 15.0
    assert _value(m, "orchestrator_agent_calls_total", agent="claude") == 1
    assert _value(m, "orchestrator_agent_calls_total", agent="codex") == 1
    assert _value(m, "orchestrator_agent_errors_total", agent="codex", kind="rate_limit") == 1
    assert _value(m, "orchestrator_agent_response_time_seconds_sum", agent="claude") == 3.0
    assert _value(m, "orchestrator_cache_hits_total", agent="claude") == 1
    assert _value(m, "orchestrator_cache_misses_total", agent="claude") == 1
    tokens = {"agent": "claude", "model": "sonnet"}
    assert _value(m, "orchestrator_tokens_total", kind="input", **tokens) == 100
    assert _value(m, "orchestrator_tokens_total", kind="output", **tokens) == 20
    assert _value(m, "orchestrator_tokens_total", kind="cached", **tokens) == 5
    assert _value(m, "orchestrator_cost_usd_total", **tokens) == pytest.approx(0.01)
    assert _value(m, "orchestrator_retries_total", agent="codex", source="engine") == 1
    assert _value(m, "orchestrator_retries_total", agent="claude", source="cli") == 1
    assert _value(m, "orchestrator_rate_limit_waits_total", agent="codex") == 1
    assert _value(m, "orchestrator_rate_limit_waits_total", agent="claude") == 1
    assert _value(m, "orchestrator_rate_limit_wait_seconds_total", agent="claude") == 4.0


def test_a_rehearsals_scripted_cost_is_not_counted_as_money_spent() -> None:
    m = Metrics()
    sub = MetricsSubscriber(m)
    sub(RunStarted("rehearsed", "flow", "task", "/ws", rehearsal=True))
    sub(StepFinished("rehearsed", "impl", "claude", _ok_step()))
    sub(RunFinished("rehearsed", "flow", "completed", True, Usage(), 1.0))
    tokens = {"agent": "claude", "model": "sonnet"}
    assert _value(m, "orchestrator_tokens_total", kind="input", **tokens) == 100
    assert not _value(m, "orchestrator_cost_usd_total", **tokens)
    sub(RunStarted("real", "flow", "task", "/ws"))
    sub(StepFinished("real", "impl", "claude", _ok_step()))
    assert _value(m, "orchestrator_cost_usd_total", **tokens) == pytest.approx(0.01)


def test_breaker_state_and_direct_calls() -> None:
    m = Metrics()
    m.set_breaker_state("gemini", "open")
    assert _value(m, "orchestrator_circuit_breaker_state", agent="gemini") == 1
    m.set_breaker_state("gemini", "half_open")
    assert _value(m, "orchestrator_circuit_breaker_state", agent="gemini") == 2
    m.rate_limit_wait("gemini", 1.5)
    assert _value(m, "orchestrator_rate_limit_wait_seconds_total", agent="gemini") == 1.5


def test_table_text_and_html() -> None:
    m = Metrics()
    empty = metrics_table(m)
    assert "orchestrator_active_sessions" in str(empty)
    m.agent_calls.labels("<claude>").inc(3)
    m.task_duration.labels("flow").observe(2.5)
    table = metrics_table(m)
    text = str(table)
    assert "orchestrator_agent_calls_total" in text and "agent=<claude>" in text
    assert "_bucket" not in text and "_created" not in text
    assert "orchestrator_task_duration_seconds_sum" in text and "2.5" in text
    bundle = table._repr_mimebundle_()
    assert bundle["text/plain"] == text
    assert "&lt;claude&gt;" in bundle["text/html"] and "<claude>" not in bundle["text/html"]
    assert "<style" not in bundle["text/html"] and "<script" not in bundle["text/html"]
    assert metrics_table().rows is not None  # the process-wide registry works too


def test_serve_metrics_over_http_on_loopback() -> None:
    m = Metrics()
    m.agent_calls.labels("claude").inc(7)
    server = serve_metrics(0, metrics=m)
    try:
        assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/metrics")
        assert server.port > 0 and "127.0.0.1" in repr(server)
        with urllib.request.urlopen(server.url, timeout=10) as response:
            assert response.status == 200
            body = response.read().decode()
        assert 'orchestrator_agent_calls_total{agent="claude"} 7.0' in body
        for name in NAMED:
            assert name.removesuffix("_total") in body
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url, timeout=2)


def test_serve_metrics_as_context_manager_with_localhost() -> None:
    with serve_metrics(0, "localhost", metrics=Metrics()) as server:
        assert server.host == "127.0.0.1"
        with urllib.request.urlopen(server.url, timeout=10) as response:
            assert b"orchestrator_tasks_total" in response.read()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
def test_serve_metrics_refuses_other_interfaces(host: str) -> None:
    with pytest.raises(ConfigError, match="refusing"):
        serve_metrics(0, host)


def test_serve_metrics_bad_and_busy_ports() -> None:
    with pytest.raises(ConfigError):
        serve_metrics(70000)
    with (
        serve_metrics(0, metrics=Metrics()) as first,
        pytest.raises(ConfigError, match="another port"),
    ):
        serve_metrics(first.port)


DEPLOY = Path(__file__).parents[2] / "deploy"


def test_grafana_dashboard_covers_every_metric() -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for name in [*NAMED, "orchestrator_rate_limit_wait_seconds_total"]:
        assert name in exprs, name
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    datasource = yaml.safe_load((DEPLOY / "grafana" / "datasource.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert all(p["datasource"]["uid"] == uid for p in dashboard["panels"])


def test_prometheus_and_compose_stay_on_loopback() -> None:
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert all(t.startswith("127.0.0.1:") for t in targets)
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"prometheus", "grafana"}
    assert "--web.listen-address=127.0.0.1:9090" in services["prometheus"]["command"]
    assert services["grafana"]["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    assert ":?" in services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    for service in services.values():
        assert "ports" not in service  # host network, loopback listeners: nothing published
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).is_file(), source


class _Breakers:
    def __init__(self) -> None:
        self.now: dict[str, str] = {"claude": "closed"}

    def states(self) -> dict[str, str]:
        return self.now


def test_subscriber_reads_breaker_states_after_each_step() -> None:
    m, breakers = Metrics(), _Breakers()
    sub = MetricsSubscriber(m, breakers=breakers)
    sub(StepFinished("r", "s", "claude", _ok_step()))
    assert _value(m, "orchestrator_circuit_breaker_state", agent="claude") == 0
    breakers.now = {"claude": "open", "codex": "half_open", "odd": "unknown-state"}
    sub(StepFinished("r", "s", "claude", _ok_step(ok=False)))
    assert _value(m, "orchestrator_circuit_breaker_state", agent="claude") == 1
    assert _value(m, "orchestrator_circuit_breaker_state", agent="codex") == 2
    assert _value(m, "orchestrator_circuit_breaker_state", agent="odd") is None


def test_metrics_read_as_a_table_per_agent_with_the_raw_series_behind_a_flag() -> None:
    from orchestrator_nb.notebook.commands import metrics_view
    from orchestrator_nb.observe.metrics import usage_summary

    m = Metrics()
    empty = str(metrics_view(usage_summary(m)))
    assert "0 runs (0 not completed), 0 retries; no agent has run yet" in empty
    m.tasks.labels("default", "completed").inc(2)
    m.task_failures.labels("default", "failed").inc()
    m.agent_calls.labels("claude").inc(3)
    m.agent_calls.labels("codex").inc(2)
    m.agent_errors.labels("codex", "timeout").inc()
    m.tokens.labels("claude", "sonnet", "input").inc(12_000)
    m.tokens.labels("claude", "sonnet", "output").inc(340)
    m.tokens.labels("claude", "sonnet", "cached").inc(800)
    m.cost.labels("claude", "sonnet").inc(0.0421)
    m.tokens.labels("codex", "gpt-5.5", "input").inc(2400)
    m.retries.labels("codex", "engine").inc()
    table = metrics_view(usage_summary(m))
    lines = str(table).splitlines()
    assert lines[0].startswith("metrics of this kernel: 2 runs (1 not completed), 1 retry")
    assert lines[0].endswith("every series: %orchestrate metrics --raw")
    words = [" ".join(line.split()) for line in lines[1:]]
    assert words[0] == "agent model calls tokens in / out cached cost errors"
    assert words[1] == "claude sonnet 3 12,000 / 340 800 $0.0421 0"
    assert words[2] == "codex gpt-5.5 2 2,400 / 0 0 not reported 1 timeout"
    assert "orchestrator_" not in str(table)  # the series names are for --raw
    assert "| claude | sonnet | 3 |" in table._repr_mimebundle_()["text/markdown"]
