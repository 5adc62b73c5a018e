"""Middleware pieces in-process: access log records, log filter, adaptive limits, health checks, Prometheus,
circuit breakers around outbound calls, and the cost-free path for routes without middleware."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging

import pytest

from cello import App, FileResponse, Response
from cello.middleware import (
    AccessLog,
    AdaptiveRateLimitConfig,
    CircuitBreaker,
    CircuitOpenError,
    Compression,
    RateLimit,
    RequestIdLogFilter,
)
from cello.testing import TestClient


def test_access_log_json_with_route_template_and_request_id(caplog):
    app = App()
    app.enable_request_id()
    app.use(AccessLog(format="json"))
    app.get("/users/{user_id:int}")(lambda user_id: {"id": user_id})
    with caplog.at_level(logging.INFO, "cello.access"), TestClient(app) as client:
        response = client.get("/users/7", headers={"x-request-id": "rid-1"})
        client.get("/nope")
    first, second = (json.loads(r.getMessage()) for r in caplog.records if r.name == "cello.access")
    assert first["method"] == "GET"
    assert first["route"] == "/users/{user_id:int}"
    assert first["path"] == "/users/7"
    assert first["status"] == 200
    assert first["bytes"] == len(response.content)
    assert first["client"] == "127.0.0.1"
    assert first["request_id"] == "rid-1"
    assert first["duration_ms"] >= 0
    assert second["status"] == 404 and second["route"] is None


def test_access_log_text_and_silence_when_disabled(caplog):
    app = App()
    app.use(AccessLog(format="text"))
    app.get("/")(lambda: "hi")
    with caplog.at_level(logging.INFO, "cello.access"), TestClient(app) as client:
        client.get("/")
    (record,) = [r for r in caplog.records if r.name == "cello.access"]
    assert "method=GET" in record.getMessage() and "status=200" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, "cello.access"), TestClient(app) as client:
        client.get("/")
    assert not [r for r in caplog.records if r.name == "cello.access"]


def test_request_id_reaches_every_log_line_of_the_request(caplog):
    app = App()
    app.enable_request_id()
    handler_logger = logging.getLogger("tests.handler")
    handler_logger.addFilter(RequestIdLogFilter())

    @app.get("/")
    async def handler():
        handler_logger.warning("inside")
        return "ok"

    with caplog.at_level(logging.WARNING, "tests.handler"), TestClient(app) as client:
        client.get("/", headers={"x-request-id": "trace-9"})
    (record,) = [r for r in caplog.records if r.name == "tests.handler"]
    assert record.request_id == "trace-9"


def test_adaptive_limit_falls_with_load():
    limiter = RateLimit(AdaptiveRateLimitConfig(base_requests=1000, window=60, cpu_threshold=0.8,
                                                memory_threshold=0.9, min_requests=100))  # fmt: skip
    sampler = limiter.sampler
    assert sampler is not None
    sampler.sample = lambda: (0.5, 0.5)
    assert limiter.current_limit() == 1000
    sampler.sample = lambda: (0.9, 0.5)  # halfway from the CPU threshold to 100%
    assert limiter.current_limit() == 550
    sampler.sample = lambda: (0.5, 1.0)
    assert limiter.current_limit() == 100
    sampler.sample = lambda: (1.0, 1.0)
    assert limiter.current_limit() == 100


def test_seed_adaptive_snippet_runs():
    from cello import App as SeedApp
    from cello.middleware import AdaptiveRateLimitConfig as SeedConfig

    app = SeedApp()

    # Adaptive: backs off under load
    app.enable_rate_limit(SeedConfig(
        base_requests=1000,
        window=60,
        cpu_threshold=0.8,
        memory_threshold=0.9,
        min_requests=100
    ))  # fmt: skip
    app.get("/")(lambda: "ok")
    with TestClient(app) as client:
        response = client.get("/")
    assert response.status_code == 200
    limit = int(response.headers["ratelimit"].split(",")[0].removeprefix("limit="))
    assert 100 <= limit <= 1000


def test_health_checks():
    app = App()
    app.enable_health_checks(timeout=0.2)
    state = {"db": True}

    @app.health_check("database")
    async def database():
        if not state["db"]:
            raise ConnectionError("postgres://user:secret@db/app refused")

    @app.health_check("cache")
    def cache_check():
        return True

    @app.health_check("slow", timeout=0.1)
    async def slow():
        await asyncio.sleep(0 if state["db"] else 1)

    with TestClient(app) as client:
        assert client.get("/health/live").json() == {"status": "pass"}
        ready = client.get("/health/ready")
        assert ready.status_code == 200
        assert set(ready.json()["checks"]) == {"database", "cache", "slow"}
        state["db"] = False
        failing = client.get("/health/ready")
        assert failing.status_code == 503
        checks = failing.json()["checks"]
        assert checks["database"] == {"status": "fail", "duration_ms": checks["database"]["duration_ms"],
                                      "error": "ConnectionError"}  # fmt: skip
        assert "secret" not in failing.text
        assert checks["slow"]["error"] == "timed out after 0.1s"
        assert checks["cache"]["status"] == "pass"


def test_prometheus_metrics_by_route_template():
    pytest.importorskip("prometheus_client")
    app = App()
    app.enable_prometheus()
    app.get("/items/{item_id:int}")(lambda item_id: {"id": item_id})
    with TestClient(app) as client:
        for i in range(3):
            client.get(f"/items/{i}")
        client.get("/unknown/path")
        text = client.get("/metrics").text
    assert 'cello_requests_total{method="GET",route="/items/{item_id:int}",status="200"}' in text
    assert 'route="<unmatched>",status="404"' in text
    assert "cello_request_duration_seconds_bucket" in text
    assert "cello_requests_in_progress" in text
    assert 'route="/items/1"' not in text  # templates, not raw paths


async def test_breaker_around_outbound_calls():
    breaker = CircuitBreaker(name="outbound", failure_threshold=2, reset_timeout=0.2)
    calls = {"n": 0}

    @breaker.protect
    async def fetch(ok: bool):
        calls["n"] += 1
        if not ok:
            raise ConnectionError("down")
        return "data"

    for _ in range(2):
        with pytest.raises(ConnectionError):
            await fetch(False)
    with pytest.raises(CircuitOpenError) as refused:
        await fetch(True)
    assert refused.value.status == 503
    assert calls["n"] == 2  # refused without calling
    await asyncio.sleep(0.25)
    async with breaker:
        pass  # the half-open trial succeeds
    assert breaker.state == "closed"
    assert await fetch(True) == "data"


def test_breaker_ratio_mode():
    breaker = CircuitBreaker(name="ratio", failure_threshold=100, failure_ratio=0.5, minimum_calls=4)
    for ok in (True, False, True, False):
        try:
            with breaker:
                if not ok:
                    raise RuntimeError
        except RuntimeError:
            pass
    assert breaker.state == "open"


def test_compression_leaves_files_and_encoded_bodies_alone(tmp_path):
    target = tmp_path / "data.txt"
    target.write_text("x" * 5000)
    app = App()
    app.use(Compression(minimum_size=10))
    app.get("/file")(lambda: FileResponse(target))
    already = gzip.compress(b"already compressed " * 100)
    app.get("/encoded")(lambda: Response(already, headers={"content-encoding": "gzip"}, media_type="text/plain"))
    with TestClient(app) as client:
        assert client.get("/file", headers={"accept-encoding": "gzip"}).headers.get("content-encoding") is None
        encoded = client.get("/encoded", headers={"accept-encoding": "br"})
        assert encoded.headers.get_list("content-encoding") == ["gzip"]
        assert encoded.text == "already compressed " * 100  # compressed once, not twice


def test_a_route_without_middleware_is_its_bare_handler():
    app = App()

    async def plain(request):
        return {"ok": True}

    app.get("/plain")(plain)
    app.get("/other", middleware=[RateLimit(requests=10, window=1)])(plain)
    dispatcher = app.dispatcher
    assert dispatcher.resolve("GET", "/plain")[0].pipeline is plain  # no wrapper at all
    assert dispatcher.resolve("GET", "/other")[0].pipeline is not plain


@pytest.mark.parametrize(
    ("config", "requests", "expected"),
    [
        ({"key": "api_key"}, [{"x-api-key": "a"}, {"x-api-key": "a"}, {"x-api-key": "b"}], [200, 429, 200]),
        ({"key": "user"}, [{"x-user": "ann"}, {"x-user": "ann"}, {"x-user": "bob"}], [200, 429, 200]),
        ({"key": lambda request: request.headers.get("x-tenant")}, [{"x-tenant": "t1"}, {"x-tenant": "t1"}, {}],
         [200, 429, 200]),  # no tenant: not limited
    ],
)  # fmt: skip
def test_rate_limit_keys(config, requests, expected):
    app = App()

    @app.use  # authentication runs before the limiter, as the documented order says
    async def authenticate(request, call_next):
        user = request.headers.get("x-user")
        if user:
            request.context["user"] = user
        return await call_next(request)

    app.use(RateLimit(requests=1, window=60, **config))
    app.get("/")(lambda: "ok")
    with TestClient(app) as client:
        assert [client.get("/", headers=h).status_code for h in requests] == expected


def test_rate_limit_behind_trusted_proxy_uses_forwarded_client():
    app = App(trusted_proxies=["127.0.0.1"])
    app.use(RateLimit(requests=1, window=60))
    app.get("/")(lambda: "ok")
    with TestClient(app) as client:
        assert client.get("/", headers={"x-forwarded-for": "1.1.1.1"}).status_code == 200
        assert client.get("/", headers={"x-forwarded-for": "2.2.2.2"}).status_code == 200
        assert client.get("/", headers={"x-forwarded-for": "1.1.1.1"}).status_code == 429
    untrusted = App()
    untrusted.use(RateLimit(requests=1, window=60))
    untrusted.get("/")(lambda: "ok")
    with TestClient(untrusted) as client:
        client.get("/", headers={"x-forwarded-for": "1.1.1.1"})
        # a client cannot buy a fresh budget by forging the header
        assert client.get("/", headers={"x-forwarded-for": "9.9.9.9"}).status_code == 429


def test_zstd_when_available():
    pytest.importorskip("zstandard")
    app = App()
    app.enable_compression(minimum_size=10)
    app.get("/")(lambda: "z" * 1000)
    with TestClient(app) as client:
        response = client.get("/", headers={"accept-encoding": "zstd"})
    assert response.headers["content-encoding"] == "zstd"
    assert int(response.headers["content-length"]) < 100


@pytest.mark.services
async def test_cache_shared_through_redis():
    import uuid

    from _helpers import require_service
    from cello.stores import RedisStore
    from cello.testing import AsyncTestClient

    require_service("Redis", "127.0.0.1", 6379)
    store = RedisStore(prefix=f"cello-test-{uuid.uuid4().hex}:")
    counter = {"n": 0}
    apps = []
    for _ in range(2):  # two apps, as two workers would be, one cache
        app = App()
        app.enable_caching(store=store, ttl=30)

        @app.get("/value")
        def value():
            counter["n"] += 1
            return {"n": counter["n"]}

        apps.append(app)
    async with AsyncTestClient(apps[0]) as first, AsyncTestClient(apps[1]) as second:
        assert (await first.get("/value")).json() == {"n": 1}
        hit = await second.get("/value")
        assert hit.json() == {"n": 1}
        assert hit.headers["x-cache"] == "hit"
        await apps[1].cache.invalidate("/value")
        assert (await first.get("/value")).json() == {"n": 2}
    await store.close()


def test_breaker_state_in_metrics():
    pytest.importorskip("prometheus_client")
    app = App()
    app.enable_prometheus()
    breaker = CircuitBreaker(name="metrics-visible", failure_threshold=1)

    @app.get("/fail", middleware=[breaker])
    def fail():
        raise RuntimeError("down")

    with TestClient(app) as client:
        client.get("/fail")
        client.get("/fail")  # refused: open
        text = client.get("/metrics").text
    assert 'cello_circuit_breaker_state{breaker="metrics-visible"} 2.0' in text
    assert 'cello_circuit_breaker_rejected_calls_total{breaker="metrics-visible"} 1.0' in text


def test_separate_rate_limit_headers():
    app = App()
    app.use(RateLimit(requests=2, window=10, headers="separate"))
    app.get("/")(lambda: "ok")
    with TestClient(app) as client:
        response = client.get("/")
    assert response.headers["ratelimit-limit"] == "2"
    assert response.headers["ratelimit-remaining"] == "1"
    assert response.headers["ratelimit-policy"] == "2;w=10"
    assert "ratelimit" not in response.headers
