"""Creates the database benchmark's data (run by benchmarks/db.py with the cello venv's Python): a database
``cello_bench`` with TechEmpower's ``world`` (10,000 rows) and ``fortune`` (12 rows, one with markup to escape)
tables, and every world row cached in Redis as JSON."""

import asyncio
import json
import random
import sys

import asyncpg
import redis.asyncio

sys.path.insert(0, "apps")
from db_common import CACHE_PREFIX, DB_URL, REDIS_URL, WORLD_ROWS

FORTUNES = [
    "fortune: No such file or directory",
    "A computer scientist is someone who fixes things that aren't broken.",
    "After enough decimal places, nobody gives a damn.",
    "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1",
    "A computer program does what you tell it to do, not what you want it to do.",
    "Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen",
    "Any program that runs right is obsolete.",
    "A list is only as strong as its weakest link. — Donald Knuth",
    "Feature: A bug with seniority.",
    "Computers make very fast, very accurate mistakes.",
    '<script>alert("This should not be displayed in a browser alert box.");</script>',
    "フレームワークのベンチマーク",
]


async def main() -> None:
    admin_url = DB_URL.rsplit("/", 1)[0] + "/postgres"
    name = DB_URL.rsplit("/", 1)[1]
    admin = await asyncpg.connect(admin_url)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    db = await asyncpg.connect(DB_URL)
    try:
        await db.execute("DROP TABLE IF EXISTS world; DROP TABLE IF EXISTS fortune")
        await db.execute("CREATE TABLE world (id integer PRIMARY KEY, randomnumber integer NOT NULL DEFAULT 0)")
        await db.execute("CREATE TABLE fortune (id integer PRIMARY KEY, message varchar(2048) NOT NULL)")
        rows = [(n, random.randint(1, WORLD_ROWS)) for n in range(1, WORLD_ROWS + 1)]
        await db.copy_records_to_table("world", records=rows)
        await db.copy_records_to_table("fortune", records=list(enumerate(FORTUNES, 1)))
        await db.execute("VACUUM ANALYZE world")  # one statement each: VACUUM runs outside a transaction
        await db.execute("VACUUM ANALYZE fortune")
    finally:
        await db.close()
    cache = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        async with cache.pipeline(transaction=False) as pipe:
            for world_id, number in rows:
                pipe.set(f"{CACHE_PREFIX}world:{world_id}", json.dumps({"id": world_id, "randomNumber": number}))
            await pipe.execute()
    finally:
        await cache.aclose()


asyncio.run(main())
