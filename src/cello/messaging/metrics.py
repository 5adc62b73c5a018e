"""What subscribers report to Prometheus, beside the HTTP metrics of ``app.enable_prometheus()``: messages
received, processed, failed, retried, dead-lettered and deduplicated, and handler seconds, per subscriber
(``SubscriberMetrics``). Created on first use, only when prometheus-client is installed; otherwise nothing is
reported.

A subscriber counts in plain integers and adds them to prometheus-client's metrics at most ``FLUSH_AFTER`` seconds
later, when it stops, and whenever ``/metrics`` is exported in its process: prometheus-client's own calls (a lock
each, a bucket search in Python) cost a quarter of what a message costs a subscriber, and four of them come per
message. In multiprocess mode (several workers) another worker's last second may be missing from a scrape.
"""

from __future__ import annotations

import asyncio
import bisect
import weakref
from typing import Any

from ..middleware import metrics as exporter

_created: dict[str, Any] = {}

_COUNTERS = {
    "received": "Messages handed to a subscriber.",
    "processed": "Messages a subscriber's handler finished.",
    "failed": "Handler runs that raised or found the message invalid.",
    "retried": "Messages tried again after a failure.",
    "dead_lettered": "Messages given up on and sent to the dead letter.",
    "deduplicated": "Messages acked without handling: their id was handled before.",
}
RECEIVED, PROCESSED, FAILED, RETRIED, DEAD_LETTERED, DEDUPLICATED = range(len(_COUNTERS))
FLUSH_AFTER = 1.0  # seconds a count waits at most before prometheus-client has it

_counting: weakref.WeakSet[SubscriberMetrics] = weakref.WeakSet()  # what a scrape flushes first


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
    """One subscriber's counts (see the module): ``received()`` ... ``deduplicated()``, ``handled(seconds)``;
    ``timed``: whether ``handled`` records anything, so that a subscriber reads no clock for nothing.
    ``SubscriberMetrics(None)`` reports nothing."""

    __slots__ = ("pending", "seconds", "seconds_sum", "bounds", "counters", "histogram", "timer", "timed",
                 "__weakref__")  # fmt: skip

    def __init__(self, subscriber: str | None) -> None:
        self.pending = [0] * len(_COUNTERS)
        self.counters: list[Any] = []
        self.histogram: Any = None
        self.bounds: list[float] = [float("inf")]
        self.timer: Any = False  # False: nothing to report to, never armed
        if subscriber is not None and _metric("received") is not None:
            self.counters = [_metric(name).labels(subscriber) for name in _COUNTERS]
            self.histogram = _metric("seconds").labels(subscriber)
            self.bounds = list(self.histogram._upper_bounds)  # NOTE: prometheus-client's, to fill its buckets
            self.timer = None
            _counting.add(self)
        self.seconds = [0] * len(self.bounds)  # observations per bucket (not cumulative), not reported yet
        self.seconds_sum = 0.0
        self.timed = self.histogram is not None

    def _count(self, index: int) -> None:
        self.pending[index] += 1
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(FLUSH_AFTER, self.flush)

    def received(self) -> None:
        self._count(RECEIVED)

    def processed(self) -> None:
        self._count(PROCESSED)

    def failed(self) -> None:
        self._count(FAILED)

    def retried(self) -> None:
        self._count(RETRIED)

    def dead_lettered(self) -> None:
        self._count(DEAD_LETTERED)

    def deduplicated(self) -> None:
        self._count(DEDUPLICATED)

    def handled(self, seconds: float) -> None:
        self.seconds[bisect.bisect_left(self.bounds, seconds)] += 1  # prometheus' bucket: the first bound >= it
        self.seconds_sum += seconds
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(FLUSH_AFTER, self.flush)

    def flush(self) -> None:
        """Add what was counted since the last flush to prometheus-client's metrics."""
        if self.timer is False:
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for counter, count in zip(self.counters, self.pending, strict=True):
            if count:
                counter.inc(count)
        self.pending = [0] * len(self.pending)
        if any(self.seconds):
            for bucket, count in zip(self.histogram._buckets, self.seconds, strict=True):
                if count:
                    bucket.inc(count)
            self.histogram._sum.inc(self.seconds_sum)
            self.seconds = [0] * len(self.seconds)
            self.seconds_sum = 0.0


def flush_all() -> None:
    """Every subscriber's counts into prometheus-client's metrics (before an export)."""
    for counting in list(_counting):
        counting.flush()


exporter.before_export.append(flush_all)


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
