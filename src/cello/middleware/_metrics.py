"""Counters other middleware report to Prometheus (rate-limit refusals, circuit-breaker states).

The metric objects are created on first use and only when prometheus-client is installed; without it every call
here is a no-op. They live in prometheus-client's default registry, which the ``Prometheus`` middleware exports
(and aggregates across workers in multiprocess mode).
"""

from __future__ import annotations

from typing import Any

_created: dict[str, Any] = {}
_BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


def _metric(name: str) -> Any:
    metric = _created.get(name)
    if metric is None and name not in _created:
        try:
            import prometheus_client
        except ImportError:
            _created[name] = None
            return None
        if name == "rate_limited":
            metric = prometheus_client.Counter(
                "cello_rate_limited_requests", "Requests refused by a rate limiter.", ["limiter"]
            )
        elif name == "breaker_state":
            metric = prometheus_client.Gauge(
                "cello_circuit_breaker_state", "Circuit state: 0 closed, 1 half-open, 2 open.", ["breaker"],
                multiprocess_mode="max",
            )  # fmt: skip
        elif name == "breaker_rejected":
            metric = prometheus_client.Counter(
                "cello_circuit_breaker_rejected_calls", "Calls refused while a circuit was open.", ["breaker"]
            )
        _created[name] = metric
    return metric


def rate_limited(limiter: str) -> None:
    metric = _metric("rate_limited")
    if metric is not None:
        metric.labels(limiter).inc()


def breaker_state(breaker: str, state: str) -> None:
    metric = _metric("breaker_state")
    if metric is not None:
        metric.labels(breaker).set(_BREAKER_STATES[state])


def breaker_rejected(breaker: str) -> None:
    metric = _metric("breaker_rejected")
    if metric is not None:
        metric.labels(breaker).inc()
