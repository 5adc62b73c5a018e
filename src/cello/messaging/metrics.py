"""What subscribers report to Prometheus, beside the HTTP metrics of ``app.enable_prometheus()``: messages
received, processed, failed, retried, dead-lettered and deduplicated, and handler seconds, per subscriber
(``SubscriberMetrics``). Created on first use, only when prometheus-client is installed; otherwise every call is a
no-op."""

from __future__ import annotations

from collections.abc import Callable
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


def _nothing(*_: Any) -> None:
    """What a metric's update is when prometheus-client is not installed."""


class SubscriberMetrics:
    """One subscriber's counters and histogram, labelled once (a label lookup per message costs more than the
    count): ``metrics.received()`` ... ``metrics.handled(seconds)``, each the labelled metric's own bound method
    (a call less per message) or a no-op. ``timed``: whether ``handled`` records anything, so that a subscriber
    reads no clock for nothing. ``SubscriberMetrics(None)`` counts nothing."""

    __slots__ = ("received", "processed", "failed", "retried", "dead_lettered", "deduplicated", "handled", "timed")

    received: Callable[[], None]
    processed: Callable[[], None]
    failed: Callable[[], None]
    retried: Callable[[], None]
    dead_lettered: Callable[[], None]
    deduplicated: Callable[[], None]
    handled: Callable[[float], None]

    def __init__(self, subscriber: str | None) -> None:
        for name in _COUNTERS:
            counter = _metric(name) if subscriber is not None else None
            setattr(self, name, counter.labels(subscriber).inc if counter is not None else _nothing)
        seconds = _metric("seconds") if subscriber is not None else None
        self.handled = seconds.labels(subscriber).observe if seconds is not None else _nothing
        self.timed = seconds is not None


def lag(subscriber: str, partition: int, value: int | None) -> None:
    """Records of a partition not yet handed to the subscriber (Kafka's consumer lag: the partition's high-water
    mark minus the subscriber's position); ``None`` removes the series when the partition went to another member."""
    if "lag" not in _created:
        try:
            import prometheus_client
        except ImportError:
            _created["lag"] = None
        else:
            _created["lag"] = prometheus_client.Gauge(
                "cello_messages_lag",
                "Records of a partition not yet handed to a subscriber.",
                ["subscriber", "partition"],
            )
    gauge = _created["lag"]
    if gauge is None:
        return
    if value is None:
        try:
            gauge.remove(subscriber, str(partition))
        except KeyError:
            pass  # never set in this process
    else:
        gauge.labels(subscriber, str(partition)).set(value)
