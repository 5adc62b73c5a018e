"""What subscribers report to Prometheus, beside the HTTP metrics of ``app.enable_prometheus()``: messages
received, processed, failed, retried, dead-lettered and deduplicated, and handler seconds, per subscriber
(``SubscriberMetrics``). Created on first use, only when prometheus-client is installed; otherwise every call is a
no-op."""

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


class SubscriberMetrics:
    """One subscriber's counters and histogram, labelled once (a label lookup per message costs more than the
    count): ``metrics.received()`` ... ``metrics.handled(seconds)``. ``SubscriberMetrics(None)`` counts nothing."""

    __slots__ = ("_counters", "_seconds")

    def __init__(self, subscriber: str | None) -> None:
        self._counters: dict[str, Any] = {}
        self._seconds: Any = None
        if subscriber is None:
            return
        counters = {name: _metric(name) for name in _COUNTERS}
        self._counters = {name: m.labels(subscriber) for name, m in counters.items() if m is not None}
        seconds = _metric("seconds")
        self._seconds = seconds.labels(subscriber) if seconds is not None else None

    def _count(self, name: str) -> None:
        counter = self._counters.get(name)
        if counter is not None:
            counter.inc()

    def received(self) -> None:
        self._count("received")

    def processed(self) -> None:
        self._count("processed")

    def failed(self) -> None:
        self._count("failed")

    def retried(self) -> None:
        self._count("retried")

    def dead_lettered(self) -> None:
        self._count("dead_lettered")

    def deduplicated(self) -> None:
        self._count("deduplicated")

    def handled(self, seconds: float) -> None:
        if self._seconds is not None:
            self._seconds.observe(seconds)


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
