"""The Strawberry schema every GraphQL benchmark app serves unchanged (benchmarks/graphql.py): a one-field query,
a list of 100 objects with 5 fields, and an async resolver reading one random ``world`` row from PostgreSQL
through an asyncpg pool the app opens at startup (``open_pool`` / ``close_pool``)."""

import random

import asyncpg
import strawberry
from db_common import DB_URL, POOL_SIZE, WORLD_QUERY, WORLD_ROWS

pool = None


async def open_pool() -> None:
    global pool
    pool = await asyncpg.create_pool(DB_URL, min_size=POOL_SIZE, max_size=POOL_SIZE)


async def close_pool() -> None:
    if pool is not None:
        await pool.close()


@strawberry.type
class Item:
    id: int
    name: str
    price: float
    quantity: int
    available: bool


ITEMS = [Item(id=n, name=f"item {n}", price=n * 1.5, quantity=n % 7, available=n % 2 == 0) for n in range(100)]


@strawberry.type
class World:
    id: int
    random_number: int


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "Hello, World!"

    @strawberry.field
    def items(self) -> list[Item]:
        return ITEMS

    @strawberry.field
    async def world(self) -> World:
        row = await pool.fetchrow(WORLD_QUERY, random.randint(1, WORLD_ROWS))
        return World(id=row["id"], random_number=row["randomNumber"])


schema = strawberry.Schema(Query)
