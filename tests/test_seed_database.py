"""The seed's "Database & Redis" snippet, as written, against a real PostgreSQL and Redis (a throwaway database and
a redis-server of the test's own: see the ``seed_snippet`` fixture): the first request reads the row from the
database and stores it in Redis, the next one is answered from Redis. And a variant on SQLite that needs no server
at all."""

from __future__ import annotations

import asyncio
import importlib
import sys

import pytest

from cello.testing import AsyncTestClient, TestClient


@pytest.mark.services
def test_the_seed_snippet_reads_through_the_redis_cache(seed_snippet):
    import asyncpg
    import redis

    sys.path.insert(0, str(seed_snippet))
    try:
        seed_app = importlib.import_module("seed_app")
    finally:
        sys.path.remove(str(seed_snippet))
    cached = redis.Redis.from_url(seed_app.cache.url)

    async def rename(name: str) -> None:
        connection = await asyncpg.connect(seed_app.db.url)
        try:
            await connection.execute("UPDATE users SET name = $1 WHERE id = 1", name)
        finally:
            await connection.close()

    with TestClient(seed_app.app) as client:
        first = client.get("/users/1")
        assert first.status_code == 200
        assert first.json() == {"id": 1, "name": "Ada", "email": "ada@example.org"}
        assert cached.exists("user:1")
        asyncio.run(rename("changed in the database"))
        assert client.get("/users/1").json()["name"] == "Ada"  # from Redis now
        assert client.get("/users/2").status_code == 204  # no such user: the handler returns None
    cached.close()


async def test_the_seed_snippet_on_sqlite_needs_no_server():
    from seed_database_sqlite_app import app, db

    await db.execute("CREATE TABLE users (id integer PRIMARY KEY, name text, email text)")
    await db.execute("INSERT INTO users VALUES (1, 'Ada', 'ada@example.org')")
    async with AsyncTestClient(app) as client:
        assert (await client.get("/users/1")).json() == {"id": 1, "name": "Ada", "email": "ada@example.org"}
        assert (await client.get("/users/2")).status_code == 204
    await db.disconnect()
