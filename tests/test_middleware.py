"""The middleware suite through every engine face: CORS, compression, request id, access log, rate limits,
caching, timeouts and circuit breakers."""

from __future__ import annotations

import gzip
import time

import pytest


@pytest.fixture
def client(mw_client):
    return mw_client


# -- request id ---------------------------------------------------------------------------------------------


def test_request_id_generated_and_propagated(client):
    generated = client.get("/hello")
    request_id = generated.headers["x-request-id"]
    assert len(request_id) == 32
    assert generated.json()["request_id"] == request_id
    propagated = client.get("/hello", headers={"x-request-id": "abc-123"})
    assert propagated.headers["x-request-id"] == "abc-123"
    assert propagated.json()["request_id"] == "abc-123"
    hostile = client.get("/hello", headers={"x-request-id": "bad id\twith tab"})
    assert hostile.headers["x-request-id"] != "bad id\twith tab"


# -- CORS ---------------------------------------------------------------------------------------------------


def test_cors_simple_request_allowed(client):
    response = client.get("/hello", headers={"origin": "https://app.example"})
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-expose-headers"] == "x-request-id"
    assert "Origin" in response.headers["vary"]
    assert response.headers.get_list("access-control-allow-origin") == ["https://app.example"]


def test_cors_regex_origin(client):
    response = client.get("/hello", headers={"origin": "https://shop.trusted.example"})
    assert response.headers["access-control-allow-origin"] == "https://shop.trusted.example"
    assert (
        "access-control-allow-origin"
        not in client.get("/hello", headers={"origin": "https://evil.trusted.example.attacker.net"}).headers
    )


def test_cors_disallowed_origin_gets_no_cors_headers(client):
    response = client.get("/hello", headers={"origin": "https://evil.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert "Origin" in response.headers["vary"]


@pytest.mark.parametrize("path", ["/echo", "/no-such-path"])
def test_cors_preflight_for_any_path(client, path):
    response = client.options(path, headers={
        "origin": "https://app.example", "access-control-request-method": "POST",
        "access-control-request-headers": "Content-Type, X-Custom",
    })  # fmt: skip
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "content-type, x-custom"
    assert response.headers["access-control-max-age"] == "120"
    assert response.headers["access-control-allow-credentials"] == "true"


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example", "access-control-request-method": "POST"},
        {"origin": "https://app.example", "access-control-request-method": "POST",
         "access-control-request-headers": "x-not-allowed"},
    ],
)  # fmt: skip
def test_cors_refused_preflight(client, headers):
    response = client.options("/echo", headers=headers)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert "access-control-allow-origin" not in response.headers


def test_plain_options_still_answers_allow(client):
    response = client.options("/echo")
    assert response.status_code == 204
    assert "POST" in response.headers["allow"]


# -- compression --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_compression_negotiated(client, encoding):
    response = client.get("/big", headers={"accept-encoding": encoding})
    assert response.headers["content-encoding"] == encoding
    assert "Accept-Encoding" in response.headers["vary"]
    assert response.json() == {"items": ["x" * 50] * 100}  # httpx decodes it
    assert int(response.headers["content-length"]) < 1000


def test_compression_q_values_and_refusals(client):
    assert client.get("/big", headers={"accept-encoding": "gzip;q=1, br;q=0.5"}).headers["content-encoding"] == "gzip"
    assert client.get("/big", headers={"accept-encoding": "br;q=0, gzip;q=0"}).headers.get("content-encoding") is None
    assert client.get("/big", headers={"accept-encoding": "identity"}).headers.get("content-encoding") is None
    small = client.get("/hello", headers={"accept-encoding": "gzip"})
    assert small.headers.get("content-encoding") is None  # under the minimum size


def test_streamed_response_compressed_incrementally(client):
    with client.stream("GET", "/stream", headers={"accept-encoding": "gzip"}) as response:
        assert response.headers["content-encoding"] == "gzip"
        raw = b"".join(response.iter_raw())
    text = gzip.decompress(raw).decode()
    assert text == "".join(f"line {i} " * 10 + "\n" for i in range(50))


# -- rate limiting ------------------------------------------------------------------------------------------


def test_blueprint_rate_limit_with_headers(client):
    # the limiter's budget is per client address and per app process: use a fresh address through the proxy
    responses = [client.get("/limited") for _ in range(4)]
    statuses = [r.status_code for r in responses]
    assert statuses[-1] == 429
    refused = responses[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit"].startswith("limit=3, remaining=0, reset=")
    assert refused.headers["ratelimit-policy"] == "3;w=60"
    assert "remaining=" in responses[0].headers["ratelimit"]


def test_per_route_token_bucket(client):
    statuses = [client.get("/per-route").status_code for _ in range(4)]
    assert 429 in statuses
    assert statuses.count(200) <= 2


# -- caching ------------------------------------------------------------------------------------------------


def test_cache_hit_etag_and_tag_invalidation(client):
    client.post("/cached/bump")
    first = client.get("/cached")
    assert first.headers["x-cache"] == "miss"
    second = client.get("/cached")
    assert second.headers["x-cache"] == "hit"
    assert second.json() == first.json()
    assert "max-age=30" in second.headers["cache-control"]
    etag = second.headers["etag"]
    assert client.get("/cached", headers={"if-none-match": etag}).status_code == 304
    assert client.post("/cached/bump").json()["removed"] >= 1
    fresh = client.get("/cached")
    assert fresh.headers["x-cache"] == "miss"
    assert fresh.json()["version"] == first.json()["version"] + 1


def test_cache_skips_authenticated_requests(client):
    client.get("/cached")
    response = client.get("/cached", headers={"authorization": "Bearer x"})
    assert response.headers.get("x-cache") is None


# -- timeouts and circuit breakers --------------------------------------------------------------------------


def test_handler_timeout_is_504(client):
    started = time.monotonic()
    response = client.get("/slow")
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/problem+json"
    assert time.monotonic() - started < 1.5
    assert client.get("/fast-enough").json() == {"ok": True}


def test_circuit_breaker_opens_and_recovers(client):
    client.post("/flaky/mode?fail=true")
    assert client.get("/flaky").status_code == 502
    assert client.get("/flaky").status_code == 502
    opened = client.get("/flaky")
    assert opened.status_code == 503
    assert opened.headers["retry-after"] == "1"
    assert client.get("/breaker-state").json() == {"state": "open"}
    client.post("/flaky/mode?fail=false")
    time.sleep(0.6)
    assert client.get("/flaky").json() == {"ok": True}  # the half-open trial succeeds
    assert client.get("/breaker-state").json() == {"state": "closed"}
