"""What subscribers report to Prometheus, beside the HTTP metrics of ``app.enable_prometheus()``: messages
received, processed, failed, retried and dead-lettered, and handler seconds, per subscriber. Created on first use,
only when prometheus-client is installed; otherwise every call is a no-op."""

from __future__ import annotations

from typing import Any

_created: dict[str, Any] = {}

_COUNTERS = {
    "received": "Messages handed to a subscriber.",
    "processed": "Messages a subscriber's handler finished.",
    "failed": "Handler runs that raised or found the message invalid.",
    "retried": "Messages tried again after a failure.",
    "dead_lettered": "Messages given up on and sent to the dead letter.",
    "deduplicated": "Messages acked without handling: their id was handled before.",
}


def _metric(name: str) -> Any:
    if name in _created:
        return _created[name]
    try:
        import prometheus_client
    except ImportError:
        _created[name] = None
        return None
    metric: Any
    if name == "seconds":
        metric = prometheus_client.Histogram(
            "cello_message_handler_seconds", "Time a subscriber's handler took.", ["subscriber"]
        )
    else:
        metric = prometheus_client.Counter(f"cello_messages_{name}", _COUNTERS[name], ["subscriber"])
    _created[name] = metric
    return metric


def _count(name: str, subscriber: str) -> None:
    metric = _metric(name)
    if metric is not None:
        metric.labels(subscriber).inc()


def received(subscriber: str) -> None:
    _count("received", subscriber)


def processed(subscriber: str) -> None:
    _count("processed", subscriber)


def failed(subscriber: str) -> None:
    _count("failed", subscriber)


def retried(subscriber: str) -> None:
    _count("retried", subscriber)


def dead_lettered(subscriber: str) -> None:
    _count("dead_lettered", subscriber)


def deduplicated(subscriber: str) -> None:
    _count("deduplicated", subscriber)


def handled(subscriber: str, seconds: float) -> None:
    metric = _metric("seconds")
    if metric is not None:
        metric.labels(subscriber).observe(seconds)
