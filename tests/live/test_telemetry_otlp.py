"""OpenTelemetry through the real exporter: two Cello services, the first calling the second with the trace in its
headers, both exporting over OTLP/HTTP to a receiver the test runs on loopback. The protobuf requests are decoded:
one trace across both services, the second service's server span a child of the first's, its database span a
child of its own; the request duration histogram exported as metrics; the access log carrying the trace id."""

from __future__ import annotations

import http.server
import json
import threading

import httpx
import pytest

pytestmark = pytest.mark.live


class Receiver(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP collector: keeps the bodies of every export, answers success."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.received.append((self.path, body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver():
    pytest.importorskip("opentelemetry.proto")
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def spans_of(received):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    found = []
    for path, body in received:
        if path != "/v1/traces":
            continue
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = next(a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append((service, span))
    return found


def test_a_trace_crosses_two_services_over_otlp(live, receiver):
    otlp = f"http://127.0.0.1:{receiver.server_address[1]}"
    stock_env = {"CELLO_TEST_OTLP": otlp, "CELLO_TEST_SERVICE": "stock"}
    downstream = live("traced_app:app", env=stock_env, ready_path="/__ready").start()
    shop_env = {"CELLO_TEST_OTLP": otlp, "CELLO_TEST_SERVICE": "shop", "CELLO_TEST_DOWNSTREAM": downstream.url}
    upstream = live("traced_app:app", env=shop_env, ready_path="/__ready").start()
    assert httpx.get(upstream.url + "/call", timeout=10).json() == {"downstream": {"answer": 42}}
    upstream_log = upstream.stop()  # shutting down flushes the spans and metrics
    downstream.stop()

    spans = spans_of(receiver.received)
    shop = next(span for service, span in spans if service == "shop" and span.name == "GET /call")
    stock = next(span for service, span in spans if service == "stock" and span.name == "GET /work")
    statement = next(span for service, span in spans if service == "stock" and span.name.startswith("SELECT"))
    assert stock.trace_id == shop.trace_id  # one trace across both services
    assert stock.parent_span_id == shop.span_id  # continued from the traceparent the call carried
    assert statement.parent_span_id == stock.span_id and statement.trace_id == shop.trace_id
    attributes = {a.key: a.value for a in stock.attributes}
    assert attributes["http.route"].string_value == "/work"
    assert attributes["http.response.status_code"].int_value == 200

    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    names = {
        metric.name
        for path, body in receiver.received
        if path == "/v1/metrics"
        for resource in ExportMetricsServiceRequest.FromString(body).resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert "http.server.request.duration" in names

    trace_hex = shop.trace_id.hex()
    records = [
        json.loads(line) for line in upstream_log.splitlines() if line.startswith("{") and '"route":"/call"' in line
    ]
    assert records and records[0]["trace_id"] == trace_hex
