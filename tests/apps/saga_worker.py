"""A worker running the payment saga of tests/test_sagas.py on a SQLite file (SAGA_DB): its participants record
each effect once per idempotency key, in the table ``effects``.

    python saga_worker.py start     # starts a saga, whose second step hangs (the test kills -9 this process)
    python saga_worker.py resume    # takes over what the dead worker left, prints the saga's end as JSON
"""

from __future__ import annotations

import asyncio
import os
import sys

import msgspec

from cello.enterprise.database import Database
from cello.patterns import Saga, SagaContext, Sagas

db = Database(f"sqlite:///{os.environ['SAGA_DB']}")
payment = Saga("payment")


async def effect(saga: SagaContext, what: str) -> None:
    """A participant that honours the idempotency key: a repeated call has no second effect."""
    await db.execute("INSERT INTO effects (key, what) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", saga.key, what)


@payment.step(timeout=30.0)
async def reserve(saga: SagaContext) -> None:
    await effect(saga, "reserved")


@payment.step(timeout=30.0)
async def charge(saga: SagaContext) -> None:
    await db.execute("INSERT INTO attempts (step) VALUES ('charge')")
    if os.environ.get("HANG") == "1":
        await asyncio.sleep(3600)  # the worker dies here
    await effect(saga, "charged")


@payment.step(timeout=30.0)
async def ship(saga: SagaContext) -> None:
    await effect(saga, "shipped")


async def main(mode: str) -> None:
    async with db:
        sagas = Sagas(db, payment, lease=1.0, interval=0.2)
        await sagas.open()
        if mode == "start":
            await db.execute("CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, what TEXT)")
            await db.execute("CREATE TABLE IF NOT EXISTS attempts (step TEXT)")
            await sagas.start("payment", {"order": "42"}, saga_id="saga-42")
            await asyncio.sleep(3600)
        state = await sagas.wait("saga-42", timeout=30)
        sys.stdout.write(msgspec.json.encode(state).decode() + "\n")
        await sagas.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
