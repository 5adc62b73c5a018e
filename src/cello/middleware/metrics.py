"""Prometheus metrics: request count, latency histogram and in-flight gauge, exported at ``/metrics``.

Labels are the method, the **route template** (``/users/{id}``, never the raw path, so cardinality stays
bounded; unmatched paths count as ``<unmatched>``) and the status. The rate limiters' and circuit breakers'
counters land in the same registry.

Several workers: prometheus-client's multiprocess mode. Give ``multiprocess_dir`` (or set
``PROMETHEUS_MULTIPROC_DIR`` before starting the server): each worker writes its samples to files there, and
``/metrics`` — whichever worker answers — adds them all up, so totals are right across workers. The directory
must be set before anything imports prometheus-client; files of processes that no longer run are removed
when the exporter is created, and a worker's live gauges are dropped when it stops.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..http.exceptions import ConfigurationError
from ..http.response import Response
from ._types import CallNext

DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# called before each export: features that count in plain integers and report in batches (message subscribers)
# hand over what they have counted
before_export: list[Callable[[], None]] = []


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigurationError("metrics need prometheus-client: pip install 'cello[metrics]'") from None
    return prometheus_client


def prepare_multiprocess_dir(directory: str | os.PathLike[str]) -> None:
    """Point prometheus-client at ``directory`` and drop the files of processes that are gone."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    current = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if current and Path(current).resolve() != path.resolve():
        raise ConfigurationError(f"PROMETHEUS_MULTIPROC_DIR is already {current!r}")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    for file in path.glob("*.db"):
        pid = file.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            file.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Prometheus:
    """``app.enable_prometheus()`` / ``app.use(Prometheus())`` plus the ``/metrics`` route it adds."""

    def __init__(
        self,
        path: str = "/metrics",
        *,
        prefix: str = "cello",
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
        multiprocess_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if multiprocess_dir is not None:
            prepare_multiprocess_dir(multiprocess_dir)
        prometheus = _prometheus()
        self.path = path
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.requests = _registered(
            prometheus.Counter, f"{prefix}_requests", "HTTP requests answered.", ["method", "route", "status"]
        )
        self.latency = _registered(
            prometheus.Histogram, f"{prefix}_request_duration_seconds", "Time to answer a request.",
            ["method", "route"], buckets=buckets,
        )  # fmt: skip
        self.in_flight = _registered(
            prometheus.Gauge, f"{prefix}_requests_in_progress", "Requests being handled now.", ["method"],
            multiprocess_mode="livesum",
        )  # fmt: skip

    async def __call__(self, request: Any, call_next: CallNext) -> Response:
        if request.path == self.path:
            return await call_next(request)
        method = request.method
        gauge = self.in_flight.labels(method)
        gauge.inc()
        started = time.perf_counter()
        status = 500
        try:
            response: Response = await call_next(request)
            status = response.status
            return response
        finally:
            route = request.route
            template = route.path if route is not None and not route.meta.get("internal") else "<unmatched>"
            self.requests.labels(method, template, str(status)).inc()
            self.latency.labels(method, template).observe(time.perf_counter() - started)
            gauge.dec()

    def export(self) -> bytes:
        """The text exposition of every metric (all workers' in multiprocess mode)."""
        prometheus = _prometheus()
        for flush in before_export:
            flush()
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = prometheus.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return prometheus.generate_latest(registry)  # type: ignore[no-any-return]
        return prometheus.generate_latest()  # type: ignore[no-any-return]

    def worker_stopped(self) -> None:
        """Drop this worker's live gauges (shutdown hook, multiprocess mode)."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


_METRICS: dict[str, Any] = {}


def _registered(kind: Any, name: str, documentation: str, labels: list[str], **options: Any) -> Any:
    """One metric object per name for the process: several apps (or tests) share the default registry."""
    metric = _METRICS.get(name)
    if metric is None:
        metric = _METRICS[name] = kind(name, documentation, labels, **options)
    return metric
