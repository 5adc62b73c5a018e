"""The patterns benchmarks' measuring loops (benchmarks/patterns.py), run pinned to one core in the cello venv
against PostgreSQL (BENCH_DB_URL): one JSON line per figure on stdout.

    python patterns_bench.py appends cello|raw|lockfree WRITERS EVENTS SECONDS
    python patterns_bench.py catchup EVENTS
    python patterns_bench.py sagas SAGAS
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec

from cello.enterprise.database import Database
from cello.patterns import EventStore, Projection, Projector, Saga, SagaContext, Sagas

URL = os.environ["BENCH_DB_URL"]


class Deposited(msgspec.Struct):
    account: str
    amount: int


async def fresh_store(db: Database, table: str) -> EventStore:
    for suffix in ("", "_snapshots", "_checkpoints", "_keys", "_tombstones"):
        await db.execute(f"DROP TABLE IF EXISTS {table}{suffix}")
    store = EventStore(db, table=table, events=[Deposited])
    await store.setup()
    return store


async def appends_cello(writers: int, events: int, seconds: float) -> float:
    async with Database(URL, pool_size=max(writers, 2)) as db:
        store = await fresh_store(db, "bench_events")
        batch = [Deposited("a", 1)] * events
        deadline = time.perf_counter() + seconds

        async def write(n: int) -> int:
            stream, version = f"account-{n}-{uuid.uuid4().hex[:6]}", 0
            while time.perf_counter() < deadline:
                await store.append(stream, batch, expected_version=version)
                version += events
            return version

        started = time.perf_counter()
        appended = sum(await asyncio.gather(*(write(n) for n in range(writers))))
        return appended / (time.perf_counter() - started)


async def appended_per_second(pool: asyncpg.Pool, writers: int, events: int, seconds: float,
                              append: Callable[[Any, str, list[str], int], Awaitable[list[Any]]]) -> float:  # fmt: skip
    """Events appended per second by ``writers`` tasks for ``seconds``, each on a connection and a stream of its
    own, ``events`` at a time, with ``append(connection, stream, event ids, expected version)``."""

    async def write(n: int) -> int:
        stream, version = f"account-{n}-{uuid.uuid4().hex[:6]}", 0
        async with pool.acquire() as conn:
            while time.perf_counter() < deadline:
                if len(await append(conn, stream, [uuid.uuid4().hex for _ in range(events)], version)) != events:
                    raise RuntimeError("lost a race")
                version += events
        return version

    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    appended = sum(await asyncio.gather(*(write(n) for n in range(writers))))
    return appended / (time.perf_counter() - started)


async def appends_raw(writers: int, events: int, seconds: float) -> float:
    """The statement the event store runs for an append outside a transaction (the lock, the version check, the
    inserts), sent with asyncpg directly."""
    async with Database(URL) as db:
        store = await fresh_store(db, "bench_raw")
    statement = store.sql["append_at_once"]
    pool = await asyncpg.create_pool(URL, min_size=writers, max_size=max(writers, 2))
    try:
        payload = msgspec.json.encode(Deposited("a", 1)).decode()
        names, datas, metas = ["Deposited"] * events, [payload] * events, ["{}"] * events

        return await appended_per_second(pool, writers, events, seconds, lambda conn, stream, ids, version: conn.fetch(
            statement, 0x63656C6C6F, stream, ids, names, datas, metas, dt.datetime.now(dt.UTC), version))  # fmt: skip
    finally:
        await pool.close()


LOCK_FREE = """
INSERT INTO bench_lockfree (stream_id, version, event_id, type, data, metadata, recorded_at)
SELECT $1, current.version + e.n, e.event_id, e.type, e.data, e.metadata, $6
FROM (SELECT coalesce(max(version), 0) AS version FROM bench_lockfree WHERE stream_id = $1) AS current,
     unnest($2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS e(event_id, type, data, metadata, n)
WHERE current.version = $7
ORDER BY e.n RETURNING position, version"""


async def appends_lockfree(writers: int, events: int, seconds: float) -> float:
    """The other design for a global order: no commit-order lock, each row tagged with its transaction's id for
    readers to stop before transactions in flight (they would follow (transaction id, position)); the same
    statement otherwise, sent with asyncpg."""
    pool = await asyncpg.create_pool(URL, min_size=writers, max_size=max(writers, 2))
    try:
        async with pool.acquire() as conn:
            await conn.execute("DROP TABLE IF EXISTS bench_lockfree")
            await conn.execute(
                "CREATE TABLE bench_lockfree (position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                "tx xid8 NOT NULL DEFAULT pg_current_xact_id(), stream_id TEXT NOT NULL, version INTEGER NOT NULL, "
                "event_id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL, "
                "recorded_at TIMESTAMPTZ NOT NULL, UNIQUE (stream_id, version))"
            )
            await conn.execute("CREATE INDEX ON bench_lockfree (tx, position)")
        payload = msgspec.json.encode(Deposited("a", 1)).decode()
        names, datas, metas = ["Deposited"] * events, [payload] * events, ["{}"] * events

        return await appended_per_second(pool, writers, events, seconds, lambda conn, stream, ids, version: conn.fetch(
            LOCK_FREE, stream, ids, names, datas, metas, dt.datetime.now(dt.UTC), version))  # fmt: skip
    finally:
        await pool.close()


async def catchup(count: int) -> float:
    async with Database(URL, pool_size=4) as db:
        store = await fresh_store(db, "bench_catchup")
        await db.execute("DROP TABLE IF EXISTS bench_balances")
        await db.execute("CREATE TABLE bench_balances (account TEXT PRIMARY KEY, balance BIGINT NOT NULL)")
        for start in range(0, count, 100):
            await store.append(f"account-{start % 50}", [Deposited(f"a{start % 50}", 1)] * 100)
        balances = Projection("bench_balances")

        @balances.on(Deposited)
        async def deposited(event: Deposited, recorded: object, conn: object) -> None:
            await conn.execute(  # type: ignore[attr-defined]
                "INSERT INTO bench_balances (account, balance) VALUES ($1, $2) "
                "ON CONFLICT (account) DO UPDATE SET balance = bench_balances.balance + excluded.balance",
                event.account, event.amount,
            )  # fmt: skip

        projector = Projector(store, balances, batch=500)
        started = time.perf_counter()
        applied = await projector.catch_up()
        elapsed = time.perf_counter() - started
        assert applied == count, applied
        return count / elapsed


async def sagas(count: int) -> float:
    async with Database(URL, pool_size=10) as db:
        await db.execute("DROP TABLE IF EXISTS bench_sagas")
        saga = Saga("noop")
        for name in ("one", "two", "three"):

            @saga.step(name)
            async def step(context: SagaContext) -> None:
                context.data[context.step] = True

        runner = Sagas(db, saga, table="bench_sagas")
        await runner.setup()
        started = time.perf_counter()
        ids = [await runner.start("noop") for _ in range(count)]
        for saga_id in ids:
            assert (await runner.wait(saga_id)).status == "completed"
        elapsed = time.perf_counter() - started
        await runner.close()
        return 3 * count / elapsed


async def main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "appends":
        implementation, writers, events, seconds = argv[1], int(argv[2]), int(argv[3]), float(argv[4])
        measure = {"cello": appends_cello, "raw": appends_raw, "lockfree": appends_lockfree}[implementation]
        print(json.dumps({"events_per_s": await measure(writers, events, seconds)}))
    elif kind == "catchup":
        print(json.dumps({"events_per_s": await catchup(int(argv[1]))}))
    elif kind == "sagas":
        print(json.dumps({"steps_per_s": await sagas(int(argv[1]))}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
