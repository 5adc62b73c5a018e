"""The store contract, against the memory store and a real Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from _helpers import require_service
from cello import App
from cello.stores import MemoryStore, RedisStore, StoreUnavailable
from cello.testing import TestClient


@pytest.fixture(params=["memory", "redis"])
async def store(request):
    if request.param == "memory":
        yield MemoryStore(max_keys=1000)
        return
    require_service("Redis", "127.0.0.1", 6379)
    redis_store = RedisStore("redis://127.0.0.1:6379", prefix=f"cello-test-{uuid.uuid4().hex}:")
    try:
        yield redis_store
    finally:
        client = redis_store.redis.client
        keys = [key async for key in client.scan_iter(match=redis_store.prefix + "*")]
        if keys:
            await client.delete(*keys)
        await redis_store.close()


pytestmark = pytest.mark.services


async def test_get_set_delete_ttl(store):
    assert await store.get("a") is None
    await store.set("a", b"1")
    await store.set("b", b"2", ttl=0.05)
    assert await store.get("a") == b"1"
    assert await store.get("b") == b"2"
    await asyncio.sleep(0.12)
    assert await store.get("b") is None
    assert await store.delete("a", "missing") == 1
    assert await store.get("a") is None


async def test_incr_is_a_counter_with_ttl_on_creation(store):
    assert await store.incr("n", ttl=0.1) == 1
    assert await store.incr("n", 5) == 6
    await asyncio.sleep(0.2)
    assert await store.incr("n") == 1


async def test_sliding_window_limits_and_reports(store):
    results = [await store.sliding_window("w", limit=3, window=0.5) for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert [r.remaining for r in results[:3]] == [2, 1, 0]
    refused = results[3]
    assert refused.limit == 3
    assert 0 < refused.retry_after <= 0.5
    assert 0 < refused.reset_after <= 0.5
    await asyncio.sleep(1.1)  # two windows later, the budget is back
    assert (await store.sliding_window("w", limit=3, window=0.5)).allowed


async def test_token_bucket_refills(store):
    results = [await store.token_bucket("b", capacity=2, refill_per_second=10) for _ in range(3)]
    assert [r.allowed for r in results] == [True, True, False]
    assert 0 < results[2].retry_after <= 0.1 + 1e-6
    await asyncio.sleep(0.15)
    assert (await store.token_bucket("b", capacity=2, refill_per_second=10)).allowed


async def test_concurrent_hits_never_exceed_the_limit(store):
    results = await asyncio.gather(*(store.sliding_window("c", limit=10, window=5) for _ in range(50)))
    assert sum(r.allowed for r in results) == 10


async def test_tags(store):
    await store.tag("users", "k1", ttl=10)
    await store.tag("users", "k2", ttl=10)
    assert await store.tagged("users") == {"k1", "k2"}
    assert await store.tagged("none") == set()


async def test_pub_sub(store):
    received: list[bytes] = []
    subscription = store.subscribe("news")

    async def listen():
        async for message in subscription:
            received.append(message)
            if len(received) == 2:
                return

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.1)  # let the subscription reach the backend
    await store.publish("news", b"one")
    await store.publish("news", b"two")
    await asyncio.wait_for(listener, 5)
    await subscription.aclose()
    assert received == [b"one", b"two"]


async def test_memory_store_is_bounded():
    store = MemoryStore(max_keys=100)
    for i in range(1000):
        await store.set(f"k{i}", b"x")
    assert len(store) <= 100
    assert await store.get("k999") == b"x"  # the newest survive


async def test_unreachable_redis_raises_store_unavailable():
    store = RedisStore("redis://127.0.0.1:1", prefix="x:")
    with pytest.raises(StoreUnavailable):
        await store.get("a")
    with pytest.raises(StoreUnavailable):
        await store.sliding_window("a", 1, 1)
    await store.close()


def test_an_unhandled_store_outage_is_a_503_that_names_no_backend():
    app = App()

    @app.get("/counter")
    async def needs_redis():
        raise StoreUnavailable("Redis at redis://:hunter2@cache.internal:6379 did not answer: TimeoutError")

    with TestClient(app) as client:
        response = client.get("/counter")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    assert "redis" not in response.text.lower() and "hunter2" not in response.text
