"""The app every host of the scale-out tests runs (tests/live/test_scaleout.py), its shared state in the Redis of
REDIS_URL: a rate limit budget per client address (read from X-Forwarded-For, the balancer being a trusted proxy),
server-side sessions, the response cache, CSRF tokens signed with one secret, a broadcast hub; its workers' metrics
added up (PROMETHEUS_MULTIPROC_DIR, one per host); every answer saying which host served it (``X-Served-By``:
CELLO_HOST_NAME); and /secure taking tokens signed by the keys of the JWKS at JWKS_URL."""

from __future__ import annotations

import os
from typing import Any

from cello import App, Request, WebSocket
from cello.enterprise.redis import Redis
from cello.middleware import JwtAuth, JwtConfig
from cello.realtime import Broadcast, EventSourceResponse
from cello.stores.redis import RedisStore

HOST = os.environ.get("CELLO_HOST_NAME", "?")
redis = Redis(os.environ["REDIS_URL"])
store = RedisStore(redis, prefix="scaleout:")


async def served_by(request: Request, call_next: Any) -> Any:
    response = await call_next(request)
    response.headers["x-served-by"] = HOST  # NOTE: also on answers the cache or the rate limiter gave
    return response


app = App(trusted_proxies=[os.environ.get("TRUSTED_PROXIES", "10.77.0.0/16")])
app.use(served_by)
app.enable_health_checks()
app.enable_prometheus()
# NOTE: Redis is left out of the readiness check on purpose: were it in, a Redis outage would take every host out
# of the balancer at once; this way each feature degrades as configured (rate limits open, session writes 503)
app.on_shutdown(redis.close)
app.enable_sessions(secret=b"scale-out-session-secret-0123456789", store=store)
# NOTE: /fact is left out of CSRF: an answer setting its token cookie could not be cached
app.enable_csrf(secret=b"scale-out-csrf-secret-0123456789-ab", exempt_paths=["/session", "/news", "/fact", "/rooms/*"])
app.enable_caching(store, ttl=60, exclude_paths=["/whoami", "/session", "/news", "/limited", "/csrf", "/rooms/*",
                                                 "/plain", "/stateful"])  # fmt: skip
# only /limited and /stateful count against a client's budget
UNLIMITED = ("/session", "/whoami", "/news", "/fact", "/csrf", "/transfer", "/rooms/lobby", "/secure", "/plain")
app.enable_rate_limit(requests=int(os.environ.get("RATE_LIMIT", "10")), window=60, key="ip", store=store,
                      exempt_paths=UNLIMITED)  # fmt: skip
hub = Broadcast(store)
app.on_shutdown(hub.close)


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


@app.get("/fact")
async def fact() -> dict[str, Any]:
    """A cacheable answer: whichever host fills the shared cache, every host serves its copy."""
    return {"filled_by": HOST}


@app.get("/csrf")
async def csrf_token(request: Request) -> dict[str, str]:
    return {"host": HOST}  # the CSRF middleware sets its token cookie on this safe request


@app.post("/transfer")
async def transfer() -> dict[str, str]:
    return {"host": HOST}


@app.get("/news")
async def news() -> EventSourceResponse:
    async def items() -> Any:
        yield {"host": HOST, "ready": True}
        async for message in hub.subscribe("news"):
            yield {"host": HOST, "news": message}

    return EventSourceResponse(items())


@app.post("/news")
async def publish(request: Request) -> dict[str, str]:
    await hub.publish("news", (await request.json())["text"])
    return {"host": HOST}


@app.websocket("/rooms/{room}")
async def room(ws: WebSocket, room: str) -> None:
    """A WebSocket room: what is published to it on any host reaches every member, on every host."""
    await ws.accept()
    await hub.join(room, ws)
    try:
        await ws.send_json({"host": HOST, "joined": room})
        async for _ in ws:  # until the client leaves
            pass
    finally:
        await hub.leave(room, ws)


@app.post("/rooms/{room}")
async def say(room: str, request: Request) -> dict[str, str]:
    await hub.publish(room, {"text": (await request.json())["text"]})
    return {"host": HOST}


# tokens checked against the keys published at JWKS_URL: kept a second, fetched again at once (at most every 0.2 s)
# when a token names a key not seen yet
tokens = JwtAuth(JwtConfig(jwks=os.environ.get("JWKS_URL", "http://127.0.0.1:9/none"), jwks_ttl=1.0,
                           jwks_min_refresh=0.2))  # fmt: skip


@app.get("/secure", middleware=[tokens])
async def secure(request: Request) -> dict[str, Any]:
    return {"host": HOST, "user": request.user.id}


@app.get("/plain")
async def plain() -> dict[str, str]:
    """No shared state: the baseline of the benchmark's added-latency figure (benchmarks/scaleout.py)."""
    return {"host": HOST}


@app.get("/stateful")
async def stateful(request: Request) -> dict[str, Any]:
    """A rate-limit hit and a session read, both in Redis: what the shared state adds to a request."""
    return {"host": HOST, "name": request.session.get("name")}
