"""The middleware suite on one app, served on every face by the tests."""

from __future__ import annotations

import asyncio
import logging
import time

from cello import App, Blueprint, HTTPException, StreamingResponse
from cello.middleware import CircuitBreaker, RateLimit, Timeout, cache

app = App(trusted_proxies=["10.0.0.0/8"])
app.enable_request_id()
app.enable_cors(
    allow_origins=["https://app.example"],
    allow_origin_regex=r"https://[a-z]+\.trusted\.example",
    allow_headers=["x-custom", "content-type"],
    allow_credentials=True,
    expose_headers=["x-request-id"],
    max_age=120,
)
app.enable_compression(minimum_size=200)
access_log = app.enable_logging(format="json")
logging.getLogger("cello.access").setLevel(logging.INFO)


@app.get("/__ready")
def ready():
    return "ok"


@app.get("/hello")
def hello(request):
    return {"message": "Hello", "request_id": request.id}


@app.get("/big")
def big():
    return {"items": ["x" * 50] * 100}


@app.get("/big-text")
def big_text():
    return "lorem ipsum " * 200


@app.get("/stream")
def stream():
    def produce():
        for i in range(50):
            yield f"line {i} " * 10 + "\n"

    return StreamingResponse(produce(), media_type="text/plain")


@app.post("/echo")
async def echo(request):
    return request.json()


limited = Blueprint("/limited")
limited.use(RateLimit(requests=3, window=60, name="limited-bp"))


@limited.get("/")
def limited_root():
    return {"ok": True}


app.register_blueprint(limited)


@app.get("/per-route", middleware=[RateLimit(requests=2, window=60, algorithm="token_bucket", name="per-route")])
def per_route():
    return {"ok": True}


calls = {"count": 0, "version": 1}


@app.get("/cached")
@cache(ttl=30, tags=["numbers"])
def cached(request):
    calls["count"] += 1
    return {"version": calls["version"], "count": calls["count"]}


@app.post("/cached/bump")
async def bump():
    calls["version"] += 1
    return {"removed": await app.cache.invalidate_tag("numbers")}


@app.get("/slow", middleware=[Timeout(0.3)])
async def slow():
    await asyncio.sleep(2)
    return {"late": True}


@app.get("/fast-enough", middleware=[Timeout(2)])
async def fast_enough():
    return {"ok": True}


flaky_state = {"fail": True}
breaker = CircuitBreaker(name="flaky", failure_threshold=2, reset_timeout=0.5)


@app.get("/flaky", middleware=[breaker])
def flaky():
    if flaky_state["fail"]:
        raise HTTPException(502, "upstream broke")
    return {"ok": True}


@app.post("/flaky/mode")
def flaky_mode(fail: bool):
    flaky_state["fail"] = fail
    return {"fail": fail}


@app.get("/breaker-state")
def breaker_state():
    return {"state": breaker.state}


@app.get("/sleep-sync")
def sleep_sync():
    time.sleep(0.01)
    return {"ok": True}
