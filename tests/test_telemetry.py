"""OpenTelemetry with the SDK's in-memory exporter: server spans named by route template with the HTTP semantic
conventions, W3C trace context continued from the caller and handed on, client spans for database statements,
Redis commands and circuit-breaker calls, sampling, excluded paths, errors, trace ids in the access log — and
nothing at all without enable_telemetry."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from _helpers import redis_server
from cello import App, OpenTelemetryConfig
from cello.enterprise import Database, Redis
from cello.middleware import CircuitBreaker, CircuitOpenError
from cello.testing import TestClient

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


def traced_app(**options) -> tuple[App, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    app = App()
    app.enable_telemetry(OpenTelemetryConfig(service_name="test", exporter=exporter, **options))
    return app, exporter


def test_a_server_span_per_request_continuing_the_callers_trace():
    from cello.telemetry import inject

    app, exporter = traced_app()

    @app.get("/users/{user_id:int}")
    async def get_user(user_id: int):
        return {"next": inject()}

    with TestClient(app) as client:
        answer = client.get("/users/7?x=1", headers={"traceparent": f"00-{TRACE}-{PARENT}-01",
                                                      "tracestate": "vendor=abc"})  # fmt: skip
    [span] = exporter.get_finished_spans()
    assert span.name == "GET /users/{user_id:int}" and span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE and format(span.parent.span_id, "016x") == PARENT
    assert dict(span.attributes) == {
        "http.request.method": "GET", "url.path": "/users/7", "url.scheme": "http",
        "http.route": "/users/{user_id:int}", "network.protocol.version": "1.1", "server.address": "testserver",
        "client.address": "127.0.0.1", "user_agent.original": client.headers["user-agent"],
        "http.response.status_code": 200,
    }  # fmt: skip
    handed_on = answer.json()["next"]
    assert handed_on["traceparent"] == f"00-{TRACE}-{format(span.context.span_id, '016x')}-01"
    assert handed_on["tracestate"] == "vendor=abc"
    assert span.resource.attributes["service.name"] == "test"


def test_client_spans_for_statements_commands_and_breaker_calls(tmp_path):
    app, exporter = traced_app()
    db = Database(f"sqlite:///{tmp_path}/app.db")
    payments = CircuitBreaker("payments", failure_threshold=1, reset_timeout=60)

    @payments.protect
    async def charge(ok: bool) -> str:
        if not ok:
            raise RuntimeError("declined")
        return "paid"

    with redis_server(tmp_path) as server:
        cache = Redis(server.url)

        @app.get("/order")
        async def order():
            await db.fetch_val("SELECT 1")
            await cache.set("cello-test:order", {"n": 1})
            for ok in (True, False, True):
                try:
                    await charge(ok)
                except (RuntimeError, CircuitOpenError):
                    pass
            return "done"

        with TestClient(app) as client:
            assert client.get("/order").status_code == 200
    spans = exporter.get_finished_spans()
    server = next(span for span in spans if span.kind is SpanKind.SERVER)
    children = [span for span in spans if span.kind is SpanKind.CLIENT]
    assert all(span.parent.span_id == server.context.span_id for span in children)
    assert [span.name for span in children] == ["SELECT app.db", "SET", *["circuit_breaker payments"] * 3]
    statement, command, paid, declined, refused = children
    assert statement.attributes["db.system"] == "sqlite" and statement.attributes["db.query.text"] == "SELECT 1"
    assert command.attributes["db.system"] == "redis" and command.attributes["db.operation.name"] == "SET"
    assert paid.status.status_code is StatusCode.UNSET
    assert declined.status.status_code is StatusCode.ERROR  # the call failed
    assert refused.status.status_code is StatusCode.ERROR  # the open circuit refused it
    assert refused.events[0].attributes["exception.type"].endswith("CircuitOpenError")


def test_sampling_exclusions_and_errors():
    app, exporter = traced_app(sampling_rate=0.0, excluded_paths=["/health*"])

    @app.get("/boom")
    def boom():
        raise RuntimeError("broken")

    @app.get("/healthz")
    def healthz():
        return "ok"

    with TestClient(app) as client:
        client.get("/boom")  # a new trace, not sampled
        client.get("/healthz", headers={"traceparent": f"00-{TRACE}-{PARENT}-01"})  # excluded
        client.get("/boom", headers={"traceparent": f"00-{TRACE}-{PARENT}-01"})  # the caller sampled it: followed
    [span] = exporter.get_finished_spans()
    assert span.name == "GET /boom" and span.status.status_code is StatusCode.ERROR
    assert span.attributes["http.response.status_code"] == 500


def test_the_access_log_carries_the_trace_ids(caplog):
    app, exporter = traced_app()
    app.enable_logging()

    @app.get("/")
    def index():
        return "ok"

    with caplog.at_level(logging.INFO, logger="cello.access"), TestClient(app) as client:
        client.get("/", headers={"traceparent": f"00-{TRACE}-{PARENT}-01"})
    [span] = exporter.get_finished_spans()
    record = json.loads(caplog.records[-1].getMessage())
    assert record["trace_id"] == TRACE and record["span_id"] == format(span.context.span_id, "016x")


def test_without_telemetry_nothing_is_traced(tmp_path):
    from cello import telemetry

    app = App()
    db = Database(f"sqlite:///{tmp_path}/app.db")

    @app.get("/")
    async def index():
        return {"one": await db.fetch_val("SELECT 1"), "headers": dict(telemetry.inject())}

    with TestClient(app) as client:
        assert client.get("/").json() == {"one": 1, "headers": {}}
    assert telemetry.tracer is None
    asyncio.run(db.disconnect())


def test_the_reference_config_and_a_wrong_keyword():
    from cello import ConfigurationError

    with pytest.raises(ConfigurationError, match="sampling_rate"):
        OpenTelemetryConfig(service_name="x", sampling_rate=2)
    with pytest.raises(ConfigurationError, match="service_name"):
        App().enable_telemetry(servce_name="x")
