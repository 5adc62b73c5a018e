"""Every app-wide convenience that can refuse or hold a request, at its strictest, next to the framework's own
endpoints (metrics, health, OpenAPI and its pages, static files) — which must keep answering
(tests/test_framework_routes.py). And the conveniences called out of their canonical order."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cello import App

SECRET = "framework-routes-test-secret-0123456789"

app = App()
# called in an order that would let cached answers bypass the rate limit if order followed calls
app.enable_caching(ttl=60)
app.enable_circuit_breaker(failure_threshold=1, reset_timeout=60)
app.enable_timeout(0.3)
app.enable_rate_limit(requests=3, window=60, per_route=True)
app.enable_csrf(secret=SECRET)
app.enable_sessions(secret=SECRET)
app.add_guard(lambda request: request.headers.get("x-member") == "yes")
app.enable_prometheus()
app.enable_health_checks()
app.static("/static", Path(__file__).resolve().parent / "site" / "public")


@app.health_check("slowish")
async def slowish():
    await asyncio.sleep(0.4)  # longer than the app's timeout: a health check is not an app route


@app.get("/cached")
def cached():
    return {"cached": True}


@app.get("/fails")
def fails():
    raise RuntimeError("down")


@app.get("/ok")
def ok():
    return {"ok": True}


# -- the canonical order --------------------------------------------------------------------------------------

ordered = App()
ordered.enable_caching(ttl=60)  # called first: it still runs inside the rate limit
ordered.enable_rate_limit(requests=3, window=60, exempt_paths=("/__ready",))  # the live servers poll it


@ordered.get("/__ready")
def ordered_ready():
    return "ok"


@ordered.get("/cached")
def ordered_cached():
    return {"cached": True}
