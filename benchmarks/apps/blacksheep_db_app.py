"""BlackSheep on the database benchmark shapes: asyncpg and redis-py directly, served by granian (ASGI)."""

import random
from operator import itemgetter

import asyncpg
import orjson
import redis.asyncio
from blacksheep import Application, Content, Response, get, json
from db_common import (
    CACHE_PREFIX,
    DB_URL,
    EXTRA_FORTUNE,
    FORTUNES,
    FORTUNES_QUERY,
    POOL_SIZE,
    REDIS_URL,
    UPDATE_QUERY,
    WORLD_QUERY,
    WORLD_ROWS,
    query_count,
)  # fmt: skip

app = Application()
state = {}
randint = random.randint


async def start(application):
    state["pool"] = await asyncpg.create_pool(DB_URL, min_size=POOL_SIZE, max_size=POOL_SIZE)
    state["redis"] = redis.asyncio.Redis.from_url(REDIS_URL)


async def stop(application):
    await state["pool"].close()
    await state["redis"].aclose()


app.on_start += start
app.on_stop += stop


def json_response(value):
    return Response(200, content=Content(b"application/json", orjson.dumps(value)))


@get("/")
async def hello():
    return json({"message": "Hello, World!"})


@get("/db")
async def single_query():
    async with state["pool"].acquire() as conn:
        return json_response(dict(await conn.fetchrow(WORLD_QUERY, randint(1, WORLD_ROWS))))


@get("/queries")
async def queries(request):
    count = query_count(request.query.get("queries", [None])[0])
    async with state["pool"].acquire() as conn:
        rows = await conn.fetchmany(WORLD_QUERY, [(randint(1, WORLD_ROWS),) for _ in range(count)])
    return json_response([dict(row) for row in rows])


@get("/fortunes")
async def fortunes():
    async with state["pool"].acquire() as conn:
        rows = [dict(row) for row in await conn.fetch(FORTUNES_QUERY)]
    rows.append({"id": 0, "message": EXTRA_FORTUNE})
    rows.sort(key=itemgetter("message"))
    return Response(200, content=Content(b"text/html; charset=utf-8", FORTUNES.render(fortunes=rows).encode()))


@get("/updates")
async def updates(request):
    ids = sorted(random.sample(range(1, WORLD_ROWS + 1), query_count(request.query.get("queries", [None])[0])))
    async with state["pool"].acquire() as conn:
        worlds = [dict(row) for row in await conn.fetchmany(WORLD_QUERY, [(world_id,) for world_id in ids])]
        for world in worlds:
            world["randomNumber"] = randint(1, WORLD_ROWS)
        await conn.executemany(UPDATE_QUERY, [(world["id"], world["randomNumber"]) for world in worlds])
    return json_response(worlds)


@get("/cached-queries")
async def cached_queries(request):
    keys = [
        f"{CACHE_PREFIX}world:{randint(1, WORLD_ROWS)}"
        for _ in range(query_count(request.query.get("count", [None])[0]))
    ]
    return json_response([orjson.loads(value) for value in await state["redis"].mget(keys)])
