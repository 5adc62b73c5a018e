"""Cello on the database benchmark shapes, through its own data layer (cello.enterprise.Database and Redis)."""

import random
from operator import itemgetter

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

from cello import App, HTMLResponse
from cello.enterprise import Database, Redis

app = App()
db = Database(DB_URL, pool_size=POOL_SIZE, min_size=POOL_SIZE).attach(app)
cache = Redis(REDIS_URL, prefix=CACHE_PREFIX).attach(app)
randint = random.randint


@app.get("/")
async def hello(request):
    return {"message": "Hello, World!"}


@app.get("/db")
async def single_query(request):
    return await db.fetch_one(WORLD_QUERY, randint(1, WORLD_ROWS))


@app.get("/queries")
async def queries(request):
    count = query_count(request.query.get("queries"))
    return await db.fetch_many(WORLD_QUERY, [(randint(1, WORLD_ROWS),) for _ in range(count)])


@app.get("/fortunes")
async def fortunes(request):
    rows = await db.fetch_all(FORTUNES_QUERY)
    rows.append({"id": 0, "message": EXTRA_FORTUNE})
    rows.sort(key=itemgetter("message"))
    return HTMLResponse(FORTUNES.render(fortunes=rows))


@app.get("/updates")
async def updates(request):
    ids = sorted(random.sample(range(1, WORLD_ROWS + 1), query_count(request.query.get("queries"))))
    worlds = await db.fetch_many(WORLD_QUERY, [(world_id,) for world_id in ids])
    for world in worlds:
        world["randomNumber"] = randint(1, WORLD_ROWS)
    await db.execute_many(UPDATE_QUERY, [(world["id"], world["randomNumber"]) for world in worlds])
    return worlds


@app.get("/cached-queries")
async def cached_queries(request):
    count = query_count(request.query.get("count"))
    return await cache.get_many(*(f"world:{randint(1, WORLD_ROWS)}" for _ in range(count)))
