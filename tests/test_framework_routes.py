"""The framework's own endpoints keep answering whatever the app-wide conveniences do to the app's routes: a
circuit opened by a failing route, a rate limit spent, a timeout, the cache, sessions, CSRF and a guard that
refuses everyone (tests/apps/framework_routes_app.py). And the conveniences take their canonical order whatever
order they were called in. On every engine face."""

from __future__ import annotations

MEMBER = {"x-member": "yes"}
FRAMEWORK = ["/health/live", "/health/ready", "/health/startup", "/health", "/metrics", "/openapi.json", "/docs",
             "/static/notes.txt"]  # fmt: skip


def test_the_framework_endpoints_answer_whatever_the_app_routes_do(framework_client):
    client = framework_client
    assert client.get("/ok").status_code == 401  # the app-wide guard refuses a non-member
    assert client.get("/fails", headers=MEMBER).status_code == 500
    assert client.get("/fails", headers=MEMBER).status_code == 503  # its circuit is open now
    for _ in range(4):  # past the rate limit of 3, the timeout (the readiness check takes 0.4 s), the guard
        for path in FRAMEWORK:
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code, response.text[:200])
            assert "x-cache" not in response.headers, path  # not cached
            assert not any(name.startswith("ratelimit") for name in response.headers), path
            assert "set-cookie" not in response.headers, path  # no session or CSRF cookie
    assert client.get("/ok", headers=MEMBER).status_code == 200  # one route's open circuit is its own


def test_a_cached_answer_still_counts_against_the_rate_limit(ordered_client):
    # enable_caching() was called before enable_rate_limit(): the limit still comes first
    statuses = [ordered_client.get("/cached") for _ in range(5)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
    assert statuses[1].headers["x-cache"] == "hit"
