"""FastAPI on the database benchmark shapes: asyncpg and redis-py directly, orjson responses (as FastAPI's own
TechEmpower entry does), served by uvicorn with uvloop and httptools."""

import contextlib
import random
from operator import itemgetter

import asyncpg
import orjson
import redis.asyncio
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
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, ORJSONResponse

state = {}


@contextlib.asynccontextmanager
async def lifespan(app):
    state["pool"] = await asyncpg.create_pool(DB_URL, min_size=POOL_SIZE, max_size=POOL_SIZE)
    state["redis"] = redis.asyncio.Redis.from_url(REDIS_URL)
    yield
    await state["pool"].close()
    await state["redis"].aclose()


app = FastAPI(lifespan=lifespan, default_response_class=ORJSONResponse)
randint = random.randint


@app.get("/")
async def hello():
    return {"message": "Hello, World!"}


@app.get("/db")
async def single_query():
    async with state["pool"].acquire() as conn:
        return dict(await conn.fetchrow(WORLD_QUERY, randint(1, WORLD_ROWS)))


@app.get("/queries")
async def queries(queries=None):
    count = query_count(queries)
    async with state["pool"].acquire() as conn:
        rows = await conn.fetchmany(WORLD_QUERY, [(randint(1, WORLD_ROWS),) for _ in range(count)])
    return [dict(row) for row in rows]


@app.get("/fortunes", response_class=HTMLResponse)
async def fortunes():
    async with state["pool"].acquire() as conn:
        rows = [dict(row) for row in await conn.fetch(FORTUNES_QUERY)]
    rows.append({"id": 0, "message": EXTRA_FORTUNE})
    rows.sort(key=itemgetter("message"))
    return HTMLResponse(FORTUNES.render(fortunes=rows))


@app.get("/updates")
async def updates(queries=None):
    ids = sorted(random.sample(range(1, WORLD_ROWS + 1), query_count(queries)))
    async with state["pool"].acquire() as conn:
        worlds = [dict(row) for row in await conn.fetchmany(WORLD_QUERY, [(world_id,) for world_id in ids])]
        for world in worlds:
            world["randomNumber"] = randint(1, WORLD_ROWS)
        await conn.executemany(UPDATE_QUERY, [(world["id"], world["randomNumber"]) for world in worlds])
    return worlds


@app.get("/cached-queries")
async def cached_queries(count=None):
    keys = [f"{CACHE_PREFIX}world:{randint(1, WORLD_ROWS)}" for _ in range(query_count(count))]
    return [orjson.loads(value) for value in await state["redis"].mget(keys)]
