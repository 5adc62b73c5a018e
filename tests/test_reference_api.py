"""A program written only from the reference API's documentation runs unchanged (tests/apps/reference_app.py):
its ``enable_*`` keywords, ``app.render`` / ``render_string``, ``Response.html``/``json``/``text``,
``add_guard``, ``register_singleton`` and ``invalidate_cache(tags=...)`` — on every engine face. And a keyword
neither API knows is a ConfigurationError naming the valid ones."""

from __future__ import annotations

import gzip

import pytest

from cello import App, ConfigurationError


@pytest.fixture
def client(reference_client):
    return reference_client


def test_handlers_written_for_the_reference_api(client):
    assert client.get("/users/1").json() == {"id": 1, "name": "Ada"}  # the registered singleton, by name
    missing = client.get("/users/9")
    assert (missing.status_code, missing.json()) == (404, {"error": "no such user"})
    page = client.get("/page")
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.strip() == "<h1>Shop: &lt;Welcome&gt;</h1>"  # globals, and autoescaping
    assert client.get("/greeting", params={"name": "Bob"}).text == "Hello, Bob!"
    assert client.get("/users/1", headers={"x-client": "banned"}).status_code == 401  # add_guard


def test_the_cache_and_its_invalidation_by_tag(client):
    first = client.get("/price").json()
    again = client.get("/price")
    assert again.headers["x-cache"] == "hit" and again.json() == first
    assert client.get("/time").headers.get("x-cache") is None  # exclude_paths
    assert client.post("/prices/refresh").json() == {"refreshed": True}  # a sync handler: done when it answers
    assert client.get("/price").json()["computed"] == first["computed"] + 1


def test_the_middleware_named_as_the_reference_names_them(client):
    preflight = client.options(
        "/users/1", headers={"origin": "https://shop.example", "access-control-request-method": "GET"}
    )
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    big = client.get("/big", headers={"accept-encoding": "gzip"})
    assert big.headers["content-encoding"] == "gzip"
    assert len(gzip.compress(b"x")) > 0
    metrics = client.get("/metrics").text
    assert "shop_http_requests_total" in metrics  # namespace and subsystem
    document = client.get("/openapi.json").json()
    assert document["info"] == {"title": "Shop API", "version": "2.0.0"}
    report = client.get("/health").json()
    assert report["version"] == "2.0.0" and report["system"]["pid"] > 0
    assert client.get("/health/startup").json() == {"status": "pass"}
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    handed_on = client.get("/trace", headers={"traceparent": parent}).json()["traceparent"]
    assert handed_on.startswith("00-0af7651916cd43dd8448eb211c80319c-")  # enable_telemetry: the trace goes on


def test_an_app_wide_circuit_breaker_opens_per_route(client):
    assert client.get("/flaky").status_code == 500
    assert client.get("/flaky").status_code == 500
    opened = client.get("/flaky")
    assert opened.status_code == 503 and "retry-after" in opened.headers
    for path in ("/users/1", "/metrics", "/health/ready", "/openapi.json"):  # the rest of the app goes on
        assert client.get(path).status_code == 200, path


@pytest.mark.parametrize(
    ("call", "unknown", "named"),
    [
        (lambda app: app.enable_cors(origin=["x"]), "origin", "origins"),
        (lambda app: app.enable_compression(min_bytes=10), "min_bytes", "min_size"),
        (lambda app: app.enable_caching(ttl=1, compress=True), "compress", "exclude_paths"),
        (lambda app: app.enable_circuit_breaker(threshold=1), "threshold", "half_open_target"),
        (lambda app: app.enable_prometheus(route="/m"), "route", "endpoint"),
        (lambda app: app.enable_openapi(titel="x"), "titel", "title"),
        (lambda app: app.enable_rate_limit(requests=1, windw=2), "windw", "window"),
        (lambda app: app.enable_templates(auto_escaping=False), "auto_escaping", "auto_escape"),
    ],
)
def test_a_keyword_neither_api_knows_is_named_with_the_valid_ones(call, unknown, named):
    with pytest.raises(ConfigurationError, match=unknown) as refused:
        call(App())
    assert named in str(refused.value)
