"""A library's GraphQL API: books and their authors on the database layer (SQLite by default, no server), queries,
a mutation, a subscription fed by the broadcast hub, and a DataLoader that reads every author of a page of books in
one query instead of one per book (the N+1 problem).

Run it with ``python examples/graphql_api.py`` and try:

    curl http://127.0.0.1:8000/graphql -H 'content-type: application/json' \\
         -d '{"query": "{ books { title author { name } } }"}'
    curl http://127.0.0.1:8000/graphql -H 'content-type: application/json' \\
         -d '{"query": "mutation { addBook(title: \\"Dune\\", authorId: 1) { id title } }"}'
    curl -N http://127.0.0.1:8000/graphql -H 'accept: text/event-stream' -H 'content-type: application/json' \\
         -d '{"query": "subscription { bookAdded { title author { name } } }"}'     # then add a book

``DATABASE_URL=postgresql://localhost/mydb`` uses PostgreSQL, and ``REDIS_URL=redis://localhost:6379`` carries the
subscription's events through Redis, so a book added on one worker (or machine) reaches subscribers on all of them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from typing import Any

import orjson
import strawberry
from strawberry.dataloader import DataLoader

from cello import App, Depends
from cello.enterprise import Database
from cello.graphql import Info
from cello.realtime import Broadcast
from cello.stores import RedisStore

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite:///library.db")
REDIS_URL = os.environ.get("REDIS_URL")

app = App()
db = Database(DATABASE_URL, pool_size=10)
hub = Broadcast(RedisStore(REDIS_URL) if REDIS_URL else None)
app.on_shutdown(hub.close)
author_queries = 0  # how many author lookups reached the database (the DataLoader's proof)


@app.on_startup
async def tables() -> None:
    key = "SERIAL" if db.dialect == "postgresql" else "INTEGER"
    async with db.transaction():
        if db.dialect == "postgresql":  # every worker runs this at startup: one at a time
            await db.execute("SELECT pg_advisory_xact_lock(2)")
        await db.execute(f"CREATE TABLE IF NOT EXISTS authors (id {key} PRIMARY KEY, name text NOT NULL)")
        await db.execute(f"CREATE TABLE IF NOT EXISTS books (id {key} PRIMARY KEY, title text NOT NULL, "
                         "author_id integer NOT NULL REFERENCES authors (id))")  # fmt: skip
        if not await db.fetch_val("SELECT count(*) FROM authors"):
            for name in ("Ursula K. Le Guin", "Frank Herbert", "Octavia E. Butler"):
                await db.execute("INSERT INTO authors (name) VALUES ($1)", name)
            for title, author in (("The Dispossessed", 1), ("A Wizard of Earthsea", 1), ("Kindred", 3)):
                await db.execute("INSERT INTO books (title, author_id) VALUES ($1, $2)", title, author)


db.attach(app)  # after the hooks that use it: the pool closes last


@strawberry.type
class Author:
    id: int
    name: str


@strawberry.type
class Book:
    id: int
    title: str
    author_id: strawberry.Private[int]

    @strawberry.field
    async def author(self, info: Info) -> Author:
        return await info.context.authors.load(self.author_id)  # type: ignore[no-any-return]


async def authors_by_id(ids: list[int]) -> list[Author]:
    """Every author the books of one request ask for, in one query."""
    global author_queries
    author_queries += 1
    marks = ", ".join(f"${n}" for n in range(1, len(ids) + 1))
    rows = await db.fetch_all(f"SELECT id, name FROM authors WHERE id IN ({marks})", *ids)
    found = {row["id"]: Author(id=row["id"], name=row["name"]) for row in rows}
    return [found[i] for i in ids]


def loaders() -> dict[str, DataLoader[int, Author]]:
    """Made for every request (a dependency of the endpoint's context): nothing cached leaks between users."""
    return {"authors": DataLoader(load_fn=authors_by_id)}


def book(row: Any) -> Book:
    return Book(id=row["id"], title=row["title"], author_id=row["author_id"])


@strawberry.type
class Query:
    @strawberry.field
    async def books(self, first: int = 20) -> list[Book]:
        rows = await db.fetch_all("SELECT id, title, author_id FROM books ORDER BY id LIMIT $1", min(first, 100))
        return [book(row) for row in rows]


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def add_book(self, title: str, author_id: int) -> Book:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO books (title, author_id) VALUES ($1, $2)", title, author_id)
            row = await conn.fetch_one("SELECT id, title, author_id FROM books ORDER BY id DESC LIMIT 1")
        added = book(row)
        await hub.publish("books", {"id": added.id, "title": added.title, "author_id": added.author_id})
        return added


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def book_added(self) -> AsyncGenerator[Book, None]:
        async for message in hub.subscribe("books"):  # every worker's additions, through Redis when configured
            yield book(orjson.loads(message))


def context(made: dict[str, Any] = Depends(loaders)) -> dict[str, Any]:
    return made


schema = strawberry.Schema(Query, Mutation, Subscription)
app.graphql("/graphql", schema, context=context)

if __name__ == "__main__":
    app.run()
