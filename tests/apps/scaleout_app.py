"""The app every host of the scale-out tests runs (tests/live/test_scaleout.py), its shared state in the Redis of
REDIS_URL: a rate limit budget per client address (read from X-Forwarded-For, the balancer being a trusted proxy),
server-side sessions, and every answer saying which host served it (``X-Served-By``: CELLO_HOST_NAME)."""

from __future__ import annotations

import os
from typing import Any

from cello import App, Request
from cello.enterprise.redis import Redis
from cello.stores.redis import RedisStore

HOST = os.environ.get("CELLO_HOST_NAME", "?")
redis = Redis(os.environ["REDIS_URL"])
store = RedisStore(redis, prefix="scaleout:")

app = App(trusted_proxies=[os.environ.get("TRUSTED_PROXIES", "10.77.0.0/16")])
app.enable_health_checks()
redis.attach(app)
app.enable_sessions(secret=b"scale-out-session-secret-0123456789", store=store)
app.enable_rate_limit(requests=10, window=60, key="ip", store=store, exempt_paths=("/session", "/whoami"))


@app.after_request
async def served_by(request: Request, response: Any) -> Any:
    response.headers["x-served-by"] = HOST
    return response


@app.get("/limited")
async def limited() -> dict[str, str]:
    return {"host": HOST}


@app.get("/whoami")
async def whoami(request: Request) -> dict[str, Any]:
    return {"host": HOST, "client": request.client.host if request.client else None}


@app.post("/session")
async def remember(request: Request) -> dict[str, str]:
    request.session["name"] = (await request.json())["name"]
    return {"host": HOST}


@app.get("/session")
async def recall(request: Request) -> dict[str, Any]:
    return {"host": HOST, "name": request.session.get("name")}
