"""A notes API on the database layer: SQLite by default (no server), PostgreSQL and a Redis cache when asked.

Run it with ``python examples/database.py`` and try:

    curl -X POST http://127.0.0.1:8000/notes -H 'content-type: application/json' -d '{"title": "hi", "body": "…"}'
    curl http://127.0.0.1:8000/notes/1
    curl http://127.0.0.1:8000/health/ready

``DATABASE_URL=postgresql://localhost/mydb`` uses PostgreSQL instead (the table is created at startup), and
``REDIS_URL=redis://localhost:6379`` caches single notes in Redis for a minute.
"""

from __future__ import annotations

import os
from typing import Annotated

import msgspec

from cello import App, Depends, HTTPException, Query
from cello.enterprise import Connection, Database, Redis

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite:///notes.db")
REDIS_URL = os.environ.get("REDIS_URL")

app = App()
app.enable_health_checks()
db = Database(DATABASE_URL, pool_size=10)
cache = Redis(REDIS_URL) if REDIS_URL else None


class NoteIn(msgspec.Struct, forbid_unknown_fields=True):
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    body: Annotated[str, msgspec.Meta(max_length=10_000)] = ""


@app.on_startup
async def schema() -> None:
    key = "SERIAL" if db.dialect == "postgresql" else "INTEGER"  # both hand out ids on insert
    async with db.transaction():
        if db.dialect == "postgresql":  # every worker runs this at startup: one at a time, or their DDL collides
            await db.execute("SELECT pg_advisory_xact_lock(1)")
        await db.execute(f"CREATE TABLE IF NOT EXISTS notes (id {key} PRIMARY KEY, title text NOT NULL, body text)")


db.attach(app)  # after the hooks that use it: the pool closes last
if cache is not None:
    cache.attach(app)


@app.post("/notes", status_code=201)
async def create_note(note: NoteIn, conn: Connection = Depends(db.request_transaction)):
    """Insert and read back in one transaction: committed when the handler returns."""
    await conn.execute("INSERT INTO notes (title, body) VALUES ($1, $2)", note.title, note.body)
    return await conn.fetch_one("SELECT * FROM notes ORDER BY id DESC LIMIT 1")


@app.get("/notes")
async def list_notes(limit: Annotated[int, Query(ge=1, le=100)] = 20):
    return await db.fetch_all("SELECT * FROM notes ORDER BY id LIMIT $1", limit)


@app.get("/notes/{note_id:int}")
async def get_note(note_id: int):
    if cache is not None and (cached := await cache.get(f"note:{note_id}")):
        return cached
    note = await db.fetch_one("SELECT * FROM notes WHERE id = $1", note_id)
    if note is None:
        raise HTTPException(404, f"There is no note {note_id}.")
    if cache is not None:
        await cache.set(f"note:{note_id}", note, ttl=60)
    return note


@app.delete("/notes/{note_id:int}", status_code=204)
async def delete_note(note_id: int):
    if not await db.execute("DELETE FROM notes WHERE id = $1", note_id):
        raise HTTPException(404, f"There is no note {note_id}.")
    if cache is not None:
        await cache.delete(f"note:{note_id}")


if __name__ == "__main__":
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")),
            workers=int(os.environ.get("WORKERS", "1")))  # fmt: skip
