"""Statements whose arguments the database refuses, on PostgreSQL and SQLite: a client's bad value is a 422
naming the argument, a fault of the statement itself stays a 500 (tests/live/test_data_errors.py)."""

from __future__ import annotations

import os
import tempfile

from cello import App
from cello.enterprise import Database

app = App()
pg = Database(os.environ.get("CELLO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
lite = Database(f"sqlite:///{tempfile.mkdtemp(prefix='cello-data-errors-')}/app.db")
pg.attach(app)
lite.attach(app)


@app.on_startup
async def tables() -> None:
    await lite.execute("CREATE TABLE IF NOT EXISTS strict_items (id INTEGER PRIMARY KEY, qty INT NOT NULL) STRICT")
    await lite.execute("CREATE TABLE IF NOT EXISTS loose_items (id INTEGER PRIMARY KEY, name)")


@app.get("/__ready")
def ready():
    return "ok"


# -- PostgreSQL ----------------------------------------------------------------------------------------------


@app.get("/pg/cast/{value}")
async def pg_cast(request):
    return {"value": await pg.fetch_val("SELECT $1::text::int", request.params["value"])}


@app.get("/pg/number/{value:int}")
async def pg_number(value: int):
    return {"value": await pg.fetch_val("SELECT $1::int4", value)}


@app.post("/pg/names")
async def pg_names(request):
    async with pg.transaction():
        await pg.execute("CREATE TEMP TABLE names (name varchar(5)) ON COMMIT DROP")
        await pg.execute("INSERT INTO names VALUES ($1)", request.json()["name"])
    return {"saved": True}


@app.get("/pg/day")
async def pg_day(request):
    return {"day": str(await pg.fetch_val("SELECT $1::text::date", request.query["at"]))}


@app.get("/pg/broken")
async def pg_broken():
    return {"value": await pg.fetch_val("SELECT 'abc'::int")}  # the statement's own fault: no argument


# -- SQLite --------------------------------------------------------------------------------------------------


@app.get("/sqlite/items/{id}")
async def sqlite_item(request):
    return await lite.fetch_one("SELECT * FROM loose_items WHERE id = $1", request.params["id"])


@app.get("/sqlite/huge/{value:int}")
async def sqlite_huge(value: int):
    return await lite.fetch_one("SELECT * FROM loose_items WHERE id = $1", value)


@app.post("/sqlite/strict")
async def sqlite_strict(request):
    body = request.json()
    await lite.execute("INSERT INTO strict_items (qty) VALUES ($1)", body["qty"])
    return {"saved": True}


@app.post("/sqlite/many")
async def sqlite_many(request):
    await lite.execute_many("INSERT INTO strict_items (qty) VALUES ($1)", [(qty,) for qty in request.json()["qty"]])
    return {"saved": True}


@app.get("/sqlite/broken")
async def sqlite_broken():
    await lite.execute("INSERT INTO strict_items (qty) VALUES ('abc')")  # the statement's own fault
    return {"saved": True}
