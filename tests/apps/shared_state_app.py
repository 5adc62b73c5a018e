"""Middleware whose state lives in Redis, for the multi-process tests.

Environment: ``CELLO_TEST_REDIS_URL`` (the Redis to use), ``CELLO_TEST_PREFIX`` (a key prefix per test),
``CELLO_TEST_FAIL_OPEN`` ("1"/"0"), ``PROMETHEUS_MULTIPROC_DIR`` (for the metrics test).
"""

from __future__ import annotations

import os

from cello import App
from cello.enterprise import Redis
from cello.middleware import RateLimit, RateLimitConfig
from cello.stores import RedisStore

REDIS_URL = os.environ.get("CELLO_TEST_REDIS_URL", "redis://127.0.0.1:6379")
PREFIX = os.environ.get("CELLO_TEST_PREFIX", "cello-test:")

app = App()
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    app.enable_prometheus(multiprocess_dir=os.environ["PROMETHEUS_MULTIPROC_DIR"])

store = RedisStore(Redis(REDIS_URL, socket_timeout=0.3, connect_timeout=0.3), prefix=PREFIX)
shared = RateLimit(RateLimitConfig(requests=5, window=60, store=store, name="shared",
                                   fail_open=os.environ.get("CELLO_TEST_FAIL_OPEN", "1") == "1"))  # fmt: skip


@app.on_shutdown
async def close_store():
    await store.close()


@app.get("/__ready")
def ready():
    return "ok"


@app.get("/limited", middleware=[shared])
def limited():
    return {"pid": os.getpid()}


@app.get("/pid")
def pid():
    return {"pid": os.getpid()}
