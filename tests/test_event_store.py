"""The event store (cello.patterns) on the real databases — a SQLite file and a throwaway PostgreSQL database:
typed events read back as themselves, optimistic concurrency with exactly one winner among racing writers, a global
order a reader never sees out of order, idempotent retries, the request's transaction shared, a 409 from a
handler."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from cello import App, Depends
from cello.enterprise.database import Database
from cello.http.exceptions import NotFound
from cello.middleware.request_id import current_request_id
from cello.patterns import ANY, Aggregate, ConcurrencyError, EventStore, Repository, StreamDeleted
from cello.testing import AsyncTestClient


class OrderPlaced(msgspec.Struct):
    order_id: str
    total: int


@dataclasses.dataclass
class ItemAdded:
    sku: str
    quantity: int


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    async with Database(database_url, pool_size=8) as db:
        events = EventStore(db, events=[OrderPlaced, ItemAdded])
        await events.setup()
        yield events


async def test_typed_events_come_back_as_themselves(store: EventStore) -> None:
    token = current_request_id.set("req-7")
    try:
        recorded = await store.append("order-1", [OrderPlaced("o1", 250), ItemAdded("pen", 2)], expected_version=0,
                                      user="ada")  # fmt: skip
    finally:
        current_request_id.reset(token)
    assert [(event.version, event.type) for event in recorded] == [(1, "OrderPlaced"), (2, "ItemAdded")]
    read = await store.read_stream("order-1")
    assert [event.data for event in read] == [OrderPlaced("o1", 250), ItemAdded("pen", 2)]
    assert read == recorded
    assert read[0].metadata == {"correlation_id": "req-7", "user": "ada"}  # the request's id, automatically
    assert read[0].recorded_at.tzinfo is not None and read[0].position < read[1].position
    assert await store.version("order-1") == 2 and await store.version("nothing") == 0
    assert [event.version for event in await store.read_stream("order-1", from_version=2)] == [2]


async def test_a_stale_writer_gets_a_concurrency_error(store: EventStore) -> None:
    await store.append("order-2", [OrderPlaced("o2", 10)], expected_version=0)
    with pytest.raises(ConcurrencyError) as stale:
        await store.append("order-2", [ItemAdded("ink", 1)], expected_version=0)
    assert (stale.value.status, stale.value.expected, stale.value.actual) == (409, 0, 1)
    await store.append("order-2", [ItemAdded("ink", 1)], expected_version=ANY)
    assert await store.version("order-2") == 2


async def test_of_racing_writers_exactly_one_wins(store: EventStore) -> None:
    async def attempt(n: int) -> bool:
        try:
            await store.append("contested", [ItemAdded(f"sku-{n}", n)], expected_version=0)
            return True
        except ConcurrencyError:
            return False

    won = await asyncio.gather(*(attempt(n) for n in range(20)))
    assert won.count(True) == 1
    assert len(await store.read_stream("contested")) == 1


async def test_a_reader_following_the_global_order_misses_nothing(store: EventStore) -> None:
    """Writers on many streams at once; a reader that only ever asks for positions after the last it saw still
    sees every event, once."""
    writers, appends = 8, 15
    done = asyncio.Event()
    seen: list[int] = []

    async def write(n: int) -> None:
        for version in range(appends):
            await store.append(f"stream-{n}", [ItemAdded(f"s{n}", version)], expected_version=version)

    async def read() -> None:
        last = 0
        while True:
            finished = done.is_set()
            for event in await store.read_all(after=last, limit=50):
                seen.append(event.position)
                last = event.position
            if finished:
                return
            await asyncio.sleep(0)

    reader = asyncio.create_task(read())
    await asyncio.gather(*(write(n) for n in range(writers)))
    done.set()
    await reader
    everything = [event.position for event in await store.read_all(limit=10_000)]
    assert seen == everything and len(everything) == writers * appends


async def test_a_retried_append_is_answered_with_the_first(store: EventStore) -> None:
    first = await store.append("order-3", [OrderPlaced("o3", 5)], expected_version=0, event_ids=["cmd-1"])
    again = await store.append("order-3", [OrderPlaced("o3", 5)], expected_version=0, event_ids=["cmd-1"])
    assert again == first and await store.version("order-3") == 1
    with pytest.raises(ConcurrencyError):  # the id is another stream's event
        await store.append("order-4", [OrderPlaced("o4", 5)], expected_version=0, event_ids=["cmd-1"])


async def test_appends_share_the_transaction_they_run_in(store: EventStore) -> None:
    db = store.db

    async def failing_work() -> None:
        async with db.transaction():
            await store.append("order-5", [OrderPlaced("o5", 1)], expected_version=0)
            raise RuntimeError("the rest of the work failed")

    with pytest.raises(RuntimeError):
        await failing_work()
    assert await store.version("order-5") == 0
    async with db.transaction():
        await store.append("order-5", [OrderPlaced("o5", 1)], expected_version=0)
    assert await store.version("order-5") == 1


async def test_an_unknown_type_is_read_as_its_document(store: EventStore, database_url: str) -> None:
    await store.append("order-6", [OrderPlaced("o6", 3)])
    stranger = EventStore(store.db)  # knows no classes
    [event] = await stranger.read_stream("order-6")
    assert event.type == "OrderPlaced" and event.data == {"order_id": "o6", "total": 3}


async def test_a_handler_that_loses_the_race_answers_409(store: EventStore) -> None:
    app = App()

    async def unit_of_work() -> AsyncIterator[None]:
        async with store.db.transaction():
            yield

    @app.post("/orders/{order_id}/items")
    async def add_item(order_id: str, expected: int, _: Any = Depends(unit_of_work)) -> dict[str, int]:
        recorded = await store.append(order_id, [ItemAdded("pen", 1)], expected_version=expected)
        return {"version": recorded[-1].version}

    async with AsyncTestClient(app) as client:
        assert (await client.post("/orders/o7/items?expected=0")).json() == {"version": 1}
        lost = await client.post("/orders/o7/items?expected=0")
        assert lost.status_code == 409 and lost.headers["content-type"] == "application/problem+json"
        assert "stream" not in lost.text and "o7" not in lost.json()["detail"]
    assert isinstance((await store.read_stream("o7"))[0].recorded_at, dt.datetime)


# -- aggregates, snapshots, upcasting --------------------------------------------------------------------------


class Order(Aggregate):
    placed: bool = False
    total: int = 0
    items: list[str] = []

    def apply(self, event: Any) -> None:
        match event:
            case OrderPlaced(total=total):
                self.placed, self.total = True, total
            case ItemAdded(sku=sku, quantity=quantity):
                self.items.extend([sku] * quantity)

    def add(self, sku: str, quantity: int = 1) -> None:
        if not self.placed:
            raise ValueError("not placed")
        self.record(ItemAdded(sku, quantity))


async def test_an_aggregate_is_what_its_events_made_it(store: EventStore) -> None:
    orders = Repository(store, Order)
    order = Order.new("1")
    order.record(OrderPlaced("1", 300))
    order.add("pen", 2)
    assert order.items == ["pen", "pen"] and order.version == 0 and len(order.pending) == 2
    await orders.save(order)
    assert order.version == 2 and order.pending == []
    again = await orders.load("1")
    assert (again.placed, again.total, again.items, again.version) == (True, 300, ["pen", "pen"], 2)
    assert [event.stream_id for event in await store.read_stream("order-1")] == ["order-1", "order-1"]
    assert await orders.get("missing") is None
    with pytest.raises(NotFound):
        await orders.load("missing")
    # two loads of one order, two saves: the second is stale
    first, second = await orders.load("1"), await orders.load("1")
    first.add("ink")
    second.add("cap")
    await orders.save(first)
    with pytest.raises(ConcurrencyError):
        await orders.save(second)
    assert (await orders.load("1")).items == ["pen", "pen", "ink"]


async def test_snapshots_shorten_loading_and_match_a_full_replay(store: EventStore) -> None:
    orders = Repository(store, Order, snapshot_every=5)
    order = Order.new("2")
    order.record(OrderPlaced("2", 10))
    await orders.save(order)
    for n in range(11):  # versions 2..12: snapshots at 5 and 10
        order.add(f"sku-{n}")
        await orders.save(order)
    snapshot = await store.load_snapshot("order-2")
    assert snapshot is not None and snapshot[:2] == (10, 1)
    replayed = await Repository(store, Order).load("2")  # no snapshots: every event
    loaded = await orders.load("2")
    assert loaded == replayed and loaded.version == replayed.version == 12
    # a snapshot of an older shape is ignored: rebuilt from the events
    await store.save_snapshot("order-2", 12, 1, '{"placed": true, "total": -1, "items": []}')

    class Reshaped(Order):
        snapshot_version = 2

    reshaped = await Repository(store, Reshaped, prefix="order", snapshot_every=5).load("2")
    assert reshaped.total == 10 and len(reshaped.items) == 11


async def test_old_events_are_upcast_to_todays_class(database_url: str) -> None:
    class PriceSet(msgspec.Struct):  # version 1: a price in whole euros
        euros: int

    async with Database(database_url) as db:
        old = EventStore(db, table="upcast_events")
        await old.setup()
        old.event(PriceSet, name="PriceSet")
        await old.append("price-1", [PriceSet(3)])

        class PriceSetV2(msgspec.Struct):  # version 2: cents and a currency
            cents: int
            currency: str

        new = EventStore(db, table="upcast_events")
        new.event(PriceSetV2, name="PriceSet", version=2)

        @new.upcaster("PriceSet", 1)
        def to_cents(document: dict[str, Any]) -> dict[str, Any]:
            return {"cents": document["euros"] * 100, "currency": "EUR"}

        await new.append("price-1", [PriceSetV2(450, "USD")])
        events = await new.read_stream("price-1")
        assert [event.data for event in events] == [PriceSetV2(300, "EUR"), PriceSetV2(450, "USD")]
        assert events[1].metadata == {"event_version": 2}


async def test_following_replays_then_waits_for_new_events(store: EventStore) -> None:
    await store.append("order-8", [OrderPlaced("o8", 1), ItemAdded("pen", 1)])
    seen: list[str] = []

    async def follow() -> None:
        async for event in store.follow(types=["ItemAdded"], poll=5.0):
            seen.append(event.data.sku)
            if len(seen) == 2:
                return

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    assert seen == ["pen"]
    await store.append("order-8", [ItemAdded("ink", 1)])  # wakes the follower long before its 5 s poll
    await asyncio.wait_for(follower, 2)
    assert seen == ["pen", "ink"]


# -- deletion and crypto-shredding -----------------------------------------------------------------------------


async def test_a_deleted_stream_is_gone_and_takes_no_more_events(store: EventStore) -> None:
    await store.append("order-9", [OrderPlaced("o9", 1), ItemAdded("pen", 1)])
    await store.append("order-10", [OrderPlaced("o10", 2)])
    assert await store.delete_stream("order-9") == 2
    assert await store.read_stream("order-9") == [] and await store.version("order-9") == 0
    assert [event.stream_id for event in await store.read_all()] == ["order-10"]
    with pytest.raises(StreamDeleted) as gone:
        await store.append("order-9", [OrderPlaced("o9", 1)])
    assert gone.value.status == 410


async def test_shredding_a_streams_key_makes_its_data_unreadable(database_url: str) -> None:
    pytest.importorskip("cryptography")
    async with Database(database_url) as db:
        store = EventStore(db, events=[OrderPlaced], encrypt=lambda stream: stream.startswith("customer-"))
        await store.setup()
        await store.append("customer-1", [OrderPlaced("o1", 100)], user="ada")
        await store.append("order-1", [OrderPlaced("o1", 100)])
        raw = await db.fetch_val("SELECT data FROM cello_events WHERE stream_id = 'customer-1'")
        assert "o1" not in raw  # encrypted at rest
        [secret] = await store.read_stream("customer-1")
        assert secret.data == OrderPlaced("o1", 100)
        assert await store.shred("customer-1") is True
        [shredded] = await store.read_stream("customer-1")
        assert shredded.data is None and shredded.type == "OrderPlaced" and shredded.metadata["user"] == "ada"
        assert (await store.read_stream("order-1"))[0].data == OrderPlaced("o1", 100)  # not encrypted, untouched
        # moved to another event, a ciphertext does not decrypt
        await store.append("customer-2", [OrderPlaced("o2", 5), OrderPlaced("o3", 6)])
        first, second = await store.read_stream("customer-2")
        await db.execute("UPDATE cello_events SET data = (SELECT data FROM cello_events WHERE event_id = $1) "
                         "WHERE event_id = $2", first.event_id, second.event_id)  # fmt: skip
        from cryptography.exceptions import InvalidTag

        with pytest.raises(InvalidTag):
            await store.read_stream("customer-2")


WRITER = """
import asyncio, sys
import msgspec
from cello.enterprise.database import Database
from cello.patterns import ConcurrencyError, EventStore

class ItemAdded(msgspec.Struct):
    sku: str
    quantity: int

async def main(url, name, count):
    async with Database(url) as db:
        store = EventStore(db, events=[ItemAdded])
        written = lost = 0
        while written < count:
            version = await store.version("shared")
            try:
                await store.append("shared", [ItemAdded(f"{name}-{written}", 1)], expected_version=version)
                written += 1
            except ConcurrencyError:
                lost += 1
        print(lost)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_two_processes_racing_on_one_stream(store: EventStore, database_url: str) -> None:
    """Two processes append to one stream as fast as they can, each retrying what it loses: every version exactly
    once, each process's events all there, positions in version order."""
    import subprocess
    import sys

    count = 60
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, database_url, name, str(count)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for name in ("p", "q")]  # fmt: skip
    results = [await asyncio.to_thread(writer.communicate, None, 120) for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], [err.decode()[-500:] for _, err in results]
    events = await store.read_stream("shared")
    assert [event.version for event in events] == list(range(1, 2 * count + 1))
    assert sorted(event.data.sku for event in events) == sorted(f"{name}-{n}" for name in "pq" for n in range(count))
    positions = [event.position for event in events]
    assert positions == sorted(positions)
