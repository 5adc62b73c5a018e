"""OpenTelemetry tracing (and request metrics): ``app.enable_telemetry(OpenTelemetryConfig(...))``.

    app.enable_telemetry(OpenTelemetryConfig(
        service_name="shop",
        otlp_endpoint="http://collector:4318",      # OTLP over HTTP (protobuf); /v1/traces and /v1/metrics
        sampling_rate=0.1,
    ))

Every request gets a server span named by its route template (``GET /users/{id}``) with the HTTP semantic
conventions' attributes, continuing the caller's trace from its W3C ``traceparent`` / ``tracestate`` headers;
``inject(headers)`` puts the current trace into the headers of a call the handler makes, so the next service
continues it. Database statements, Redis commands and calls through a ``CircuitBreaker`` (``@breaker.protect``,
``async with breaker``) get client spans under it, and the access log records carry the trace and span ids.
``sampling_rate`` samples new traces (a caller's decision is followed); ``excluded_paths`` are never traced
(exact, or ``prefix*``). Requests are also measured as the ``http.server.request.duration`` histogram, exported
with ``export_metrics``.

Without ``enable_telemetry`` nothing of this runs and OpenTelemetry is never imported: the database and Redis
layers test one module attribute. It needs ``pip install 'cello[telemetry]'``. The SDK's provider is made in each
worker when the app starts (a provider made before the server forks would lose its export thread) and shut down,
spans flushed, when it stops.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from .http.exceptions import ConfigurationError
from .http.response import Response
from .middleware.base import HookMiddleware

if TYPE_CHECKING:
    from .app import App

__all__ = ["OpenTelemetryConfig", "Telemetry", "inject", "tracer"]

# the tracer of this worker while telemetry is on; None otherwise (checked by the database and Redis layers)
tracer: Any = None


@dataclasses.dataclass
class OpenTelemetryConfig:
    """``service_name`` / ``service_version``: the resource every span carries. ``otlp_endpoint``: an OTLP/HTTP
    collector (``http://host:4318``; ``/v1/traces`` and ``/v1/metrics`` are added); None exports nothing unless an
    ``exporter`` is given. ``sampling_rate``: the share of new traces recorded. ``export_traces`` /
    ``export_metrics``: what goes to the collector. ``excluded_paths``: never traced. ``exporter``: a span
    exporter of your own (the SDK's ``InMemorySpanExporter`` in tests, say), used with a simple processor.
    ``metrics_interval``: seconds between metric exports (they are also flushed at shutdown)."""

    service_name: str = "cello-service"
    service_version: str = "0.1.0"
    otlp_endpoint: str | None = None
    sampling_rate: float = 1.0
    export_traces: bool = True
    export_metrics: bool = True
    excluded_paths: Iterable[str] | None = None
    exporter: Any = None
    metrics_interval: float = 60.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.sampling_rate <= 1.0:
            raise ConfigurationError("sampling_rate is a share of traces: between 0 and 1")


def enable(app: App, config: OpenTelemetryConfig) -> Telemetry:
    """What ``app.enable_telemetry`` does: the middleware, and the providers made (and shut down) per worker."""
    try:
        import opentelemetry.sdk.trace  # noqa: F401 - fail now, at registration, not in every worker
    except ImportError:
        raise ConfigurationError("telemetry needs the OpenTelemetry SDK: pip install 'cello[telemetry]'") from None
    middleware = Telemetry(config)
    app.on_startup(middleware.start)
    app.on_shutdown(middleware.stop)
    return middleware


class Telemetry(HookMiddleware):
    """The server span and duration of every request (see the module)."""

    # the framework's own endpoints (probes, metrics scrapes, documentation) would be traced every few seconds
    framework_routes = False

    def __init__(self, config: OpenTelemetryConfig) -> None:
        self.config = config
        paths = list(config.excluded_paths or ())
        self.excluded = frozenset(path for path in paths if not path.endswith("*"))
        self.excluded_prefixes = tuple(path[:-1] for path in paths if path.endswith("*"))
        self.tracer: Any = None
        self.duration: Any = None
        self._providers: list[Any] = []
        self._api: Any = None

    def start(self) -> None:
        """Make this worker's tracer (and meter) provider; runs at app startup."""
        global tracer
        from opentelemetry import context, propagate, trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        config = self.config
        resource = Resource.create({"service.name": config.service_name, "service.version": config.service_version})
        provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(config.sampling_rate)))
        if config.exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(config.exporter))
        if config.otlp_endpoint and config.export_traces:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=_url(config, "traces"))))
        self._providers = [provider]
        self.tracer = tracer = provider.get_tracer("cello")
        self._api = (context, propagate, trace)
        if config.otlp_endpoint and config.export_metrics:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=_url(config, "metrics")),
                export_interval_millis=config.metrics_interval * 1000,
            )
            meters = MeterProvider(resource=resource, metric_readers=[reader])
            self._providers.append(meters)
            self.duration = meters.get_meter("cello").create_histogram(
                "http.server.request.duration", unit="s", description="Duration of HTTP server requests."
            )

    def stop(self) -> None:
        """Flush and shut the providers down; runs at app shutdown."""
        global tracer
        tracer = self.tracer = self.duration = None
        for provider in self._providers:
            provider.shutdown()
        self._providers = []

    def enter(self, request: Any) -> Any:
        if self.tracer is None:
            return None
        path = request.path
        if path in self.excluded or (self.excluded_prefixes and path.startswith(self.excluded_prefixes)):
            return None
        context, propagate, trace = self._api
        route = request.route
        template = route.path if route is not None and not route.meta.get("internal") else None
        method = request.method
        url = request.url
        client = request.client
        attributes = {
            "http.request.method": method,
            "url.path": path,
            "url.scheme": url.scheme,
            "network.protocol.version": request.http_version,
            "server.address": url.hostname,
            "user_agent.original": request.header("user-agent") or "",
        }
        if url.port is not None:
            attributes["server.port"] = url.port
        if client is not None:
            attributes["client.address"] = client.host
        if template is not None:
            attributes["http.route"] = template
        parent = propagate.extract(request.headers)  # W3C traceparent / tracestate
        span = self.tracer.start_span(
            f"{method} {template}" if template else method, context=parent, kind=trace.SpanKind.SERVER,
            attributes=attributes,
        )  # fmt: skip
        token = context.attach(trace.set_span_in_context(span, parent))
        return span, token, time.perf_counter(), template

    def leave(self, request: Any, response: Response, state: Any) -> Response:
        if state is None:
            return response
        span, token, started, template = state
        context, _, trace = self._api
        status = response.status
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(trace.Status(trace.StatusCode.ERROR))
            span.set_attribute("error.type", str(status))
        span.end()
        context.detach(token)
        if self.duration is not None:
            attributes: dict[str, Any] = {"http.request.method": request.method, "http.response.status_code": status}
            if template is not None:
                attributes["http.route"] = template
            self.duration.record(time.perf_counter() - started, attributes)
        return response


def inject(headers: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """``headers`` (a new dict when None) with the current trace's W3C ``traceparent`` and ``tracestate``, for a
    call this service makes: ``httpx.get(url, headers=inject())``. Without telemetry, unchanged."""
    headers = {} if headers is None else headers
    if tracer is not None:
        from opentelemetry import propagate

        propagate.inject(headers)
    return headers


def client_span(name: str, attributes: dict[str, Any]) -> Any:
    """A client span around an outbound call, current while it runs (``with client_span(...)``); only called
    while telemetry is on."""
    from opentelemetry import trace

    return tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT, attributes=attributes)


def current_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex of the span being recorded now, for log records; None without one."""
    if tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _url(config: OpenTelemetryConfig, signal: str) -> str:
    endpoint = (config.otlp_endpoint or "").rstrip("/")
    suffix = f"/v1/{signal}"
    if endpoint.endswith(("/v1/traces", "/v1/metrics")):
        endpoint = endpoint.rsplit("/v1/", 1)[0]
    return endpoint + suffix
