"""A worker catching a projection up on the SQLite file PROJECTION_DB (tests/test_projections.py): the read model
``totals`` gets one row per event, keyed by the event's id, so applying an event twice would fail. With HANG set,
the worker stops for good inside a batch — for the test to kill it there.

    python projection_worker.py      # catches up, prints how many events it applied
"""

from __future__ import annotations

import asyncio
import os

import msgspec

from cello.enterprise.database import Connection, Database
from cello.patterns import EventStore, Projection, Projector, RecordedEvent

db = Database(f"sqlite:///{os.environ['PROJECTION_DB']}")


class Deposited(msgspec.Struct):
    amount: int


totals = Projection("totals")


@totals.on(Deposited)
async def deposited(event: Deposited, recorded: RecordedEvent, conn: Connection) -> None:
    await conn.execute("INSERT INTO totals (event_id, amount) VALUES ($1, $2)", recorded.event_id, event.amount)
    if os.environ.get("HANG") and recorded.version == int(os.environ["HANG"]):
        await conn.execute("INSERT INTO progress (version) VALUES ($1)", recorded.version)  # in the batch too
        await asyncio.sleep(3600)  # killed here, mid-batch


async def main() -> None:
    async with db:
        store = EventStore(db, events=[Deposited])
        print(await Projector(store, totals, batch=10).catch_up())


if __name__ == "__main__":
    asyncio.run(main())
