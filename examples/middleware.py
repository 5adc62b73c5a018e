"""The middleware suite on one app: request ids, access log, CORS, compression, rate limits, caching, circuit
breaker, Prometheus metrics and health checks.

Run it with ``python examples/middleware.py`` (set ``REDIS_URL=redis://127.0.0.1:6379`` to share rate limits and
the cache between workers and machines), then try:

    curl -i http://127.0.0.1:8000/quotes/1          # X-Request-ID, RateLimit-*, X-Cache: miss, then hit
    curl -H 'Accept-Encoding: gzip' -i http://127.0.0.1:8000/quotes
    curl -i -X OPTIONS http://127.0.0.1:8000/quotes -H 'Origin: https://app.example' \\
         -H 'Access-Control-Request-Method: GET'
    curl http://127.0.0.1:8000/metrics
    curl http://127.0.0.1:8000/health/ready
"""

from __future__ import annotations

import asyncio
import logging
import os
import random

from cello import App, HTTPException
from cello.middleware import CircuitBreaker, RateLimit, RateLimitConfig, RequestIdLogFilter, cache

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(request_id)s %(name)s %(message)s")
for handler in logging.getLogger().handlers:
    handler.addFilter(RequestIdLogFilter())

REDIS_URL = os.environ.get("REDIS_URL")
store = None
if REDIS_URL:
    from cello.stores import RedisStore

    store = RedisStore(REDIS_URL, prefix="example:")

app = App()
app.enable_request_id()
app.enable_logging(format="text", skip_paths=("/health/live",))
app.enable_cors(allow_origins=["https://app.example"], allow_credentials=True, expose_headers=["x-request-id"])
app.enable_compression(minimum_size=300)
app.enable_rate_limit(RateLimitConfig(requests=120, window=60, store=store, exempt_paths=("/health/live",)))
app.enable_caching(store=store, ttl=30)
app.enable_prometheus()
app.enable_health_checks()

QUOTES = {
    1: "Simplicity is prerequisite for reliability.",
    2: "Make it work, make it right, make it fast.",
    3: "Premature optimization is the root of all evil.",
}
quotes_service = CircuitBreaker(name="quotes-upstream", failure_threshold=3, reset_timeout=10)


@quotes_service.protect
async def fetch_quote(quote_id: int) -> str:
    """An outbound call that sometimes fails: the breaker stops calling it when it keeps failing."""
    await asyncio.sleep(0.01)
    if random.random() < float(os.environ.get("UPSTREAM_FAILURE_RATE", "0")):
        raise ConnectionError("upstream unavailable")
    return QUOTES[quote_id]


@app.get("/quotes")
def list_quotes():
    return [{"id": key, "text": text} for key, text in QUOTES.items()] * 5


@app.get("/quotes/{quote_id:int}")
@cache(ttl=60, tags=["quotes"])
async def get_quote(quote_id: int):
    if quote_id not in QUOTES:
        raise HTTPException(404, "No such quote.")
    return {"id": quote_id, "text": await fetch_quote(quote_id)}


@app.post("/quotes/{quote_id:int}", middleware=[RateLimit(requests=5, window=60, name="writes", store=store)])
async def update_quote(quote_id: int, text: str):
    QUOTES[quote_id] = text
    await app.cache.invalidate_tag("quotes")
    return {"id": quote_id, "text": text}


@app.health_check("quotes-upstream")
def upstream_ready():
    return quotes_service.state != "open"


if __name__ == "__main__":
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")),
            workers=int(os.environ.get("WORKERS", "1")))  # fmt: skip
