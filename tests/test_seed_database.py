"""The seed's "Database & Redis" snippet, unchanged, against the real PostgreSQL and Redis: the first request
reads the row from the database and stores it in Redis, the next one is answered from Redis. And a variant on
SQLite that needs no server at all."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from _helpers import require_service
from cello.testing import AsyncTestClient, TestClient


async def prepare(name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect("postgresql://localhost/postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = 'mydb'"):
            await admin.execute("CREATE DATABASE mydb")
    finally:
        await admin.close()
    mydb = await asyncpg.connect("postgresql://localhost/mydb")
    try:
        await mydb.execute("CREATE TABLE IF NOT EXISTS users (id integer PRIMARY KEY, name text, email text)")
        await mydb.execute("DELETE FROM users WHERE id = 1")
        await mydb.execute("INSERT INTO users VALUES (1, $1, 'ada@example.org')", name)
    finally:
        await mydb.close()


@pytest.mark.services
def test_the_seed_snippet_reads_through_the_redis_cache():
    pytest.importorskip("asyncpg")
    require_service("PostgreSQL", "127.0.0.1", 5432)
    require_service("Redis", "127.0.0.1", 6379)
    import redis

    name = f"Ada {uuid.uuid4().hex[:6]}"
    asyncio.run(prepare(name))
    redis.Redis.from_url("redis://localhost:6379").delete("user:1")
    from seed_database_app import app

    with TestClient(app) as client:
        first = client.get("/users/1")
        assert first.status_code == 200
        assert first.json() == {"id": 1, "name": name, "email": "ada@example.org"}
        assert redis.Redis.from_url("redis://localhost:6379").exists("user:1")
        asyncio.run(prepare("changed in the database"))
        assert client.get("/users/1").json()["name"] == name  # from Redis now
        assert client.get("/users/2").status_code == 204  # no such user: the handler returns None


async def test_the_seed_snippet_on_sqlite_needs_no_server():
    from seed_database_sqlite_app import app, db

    await db.execute("CREATE TABLE users (id integer PRIMARY KEY, name text, email text)")
    await db.execute("INSERT INTO users VALUES (1, 'Ada', 'ada@example.org')")
    async with AsyncTestClient(app) as client:
        assert (await client.get("/users/1")).json() == {"id": 1, "name": "Ada", "email": "ada@example.org"}
        assert (await client.get("/users/2")).status_code == 204
    await db.disconnect()
