"""The transactional outbox and the inbox (cello.patterns.outbox) on the real databases: routed events leave with
their append's commit and never without it, in order, with the event's id as the message id; a crash between the
commit and the publish (the message still goes out), and after a publish before its mark (it goes out again, and
the consumer's inbox makes its effect happen once); and a message added with the work it announces. The real
brokers are in tests/live/test_outbox_brokers.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from cello import App
from cello.enterprise.database import Database
from cello.messaging import Broker, Message
from cello.patterns import EventStore, Inbox, Outbox
from cello.testing import AsyncTestClient


class OrderPlaced(msgspec.Struct):
    order_id: str
    total: int


class OrderNoted(msgspec.Struct):  # not routed: stays in the store
    order_id: str


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    async with Database(database_url, pool_size=4) as db:
        events = EventStore(db, events=[OrderPlaced, OrderNoted])
        await events.setup()
        yield events


def shop(store: EventStore, broker: Broker, topic: str) -> tuple[App, Outbox, list[tuple[str, Any, str]]]:
    """An app whose subscriber records (message id, order, correlation id) of what reaches ``topic``."""
    app = App()
    app.include_broker(broker)
    received: list[tuple[str, Any, str]] = []

    @broker.subscriber(topic, group="shipping")
    async def ship(order: OrderPlaced, message: Message) -> None:
        received.append((message.id, order, message.correlation_id))

    outbox = Outbox(store, broker)
    outbox.route(OrderPlaced, topic)
    return app, outbox, received


async def until(condition: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_routed_events_leave_with_their_commit_in_order(store: EventStore) -> None:
    broker = Broker("memory://")
    app, outbox, received = shop(store, broker, "orders.placed")
    async with AsyncTestClient(app):
        await outbox.setup()
        recorded = await store.append("order-1", [OrderPlaced("1", 10), OrderNoted("1"), OrderPlaced("2", 20)],
                                      correlation_id="req-1")  # fmt: skip

        async def failing_request() -> None:
            async with store.db.transaction(immediate=True):
                await store.append("order-3", [OrderPlaced("3", 30)])
                raise RuntimeError("the request failed after its append")

        with pytest.raises(RuntimeError):
            await failing_request()
        assert await outbox.pending() == 2  # the rolled-back append left nothing to send
        assert await outbox.relay() == 2
        await until(lambda: len(received) == 2)
    assert received == [(recorded[0].event_id, OrderPlaced("1", 10), "req-1"),
                        (recorded[2].event_id, OrderPlaced("2", 20), "req-1")]  # fmt: skip
    assert await outbox.pending() == 0


async def test_a_crash_before_the_publish_and_after_it(store: EventStore) -> None:
    """Committed but not yet published when the worker dies: the next relay sends it. Published but not yet
    marked: sent again — and the consumer's inbox keeps its effect to one."""
    broker = Broker("memory://")
    app = App()
    app.include_broker(broker)
    inbox = Inbox(store.db)
    effects: list[str] = []

    @broker.subscriber("orders.paid", group="billing")
    async def bill(order: OrderPlaced, message: Message) -> None:
        async with store.db.transaction(immediate=True):
            if await inbox.first("billing", message.id or ""):
                effects.append(order.order_id)

    class Dying(Outbox):
        """Dies once, between publishing its second message and marking it sent."""

        died = False

        async def _publish(self, row: Any) -> None:
            await super()._publish(row)
            if row["message_id"] == second and not Dying.died:
                Dying.died = True
                raise ConnectionResetError("the worker died here")

    async with AsyncTestClient(app):
        await inbox.setup()
        outbox = Dying(store, broker)
        outbox.route(OrderPlaced, "orders.paid")
        await outbox.setup()
        recorded = await store.append("order-5", [OrderPlaced("5", 1), OrderPlaced("6", 2), OrderPlaced("7", 3)])
        second = recorded[1].event_id
        with pytest.raises(ConnectionResetError):
            await outbox.relay()
        assert await outbox.pending() == 2  # the first went out and stays marked; the second must go again
        restarted = Outbox(store, broker)  # the next worker: a new relay over the same table
        assert await restarted.relay() == 2
        await until(lambda: len(effects) == 3)
        await asyncio.sleep(0.1)  # the redelivered second message has been handled too
    assert effects == ["5", "6", "7"]


async def test_messages_added_with_the_work_they_announce(store: EventStore) -> None:
    broker = Broker("memory://")
    app = App()
    app.include_broker(broker)
    got: list[Any] = []

    @broker.subscriber("emails", group="mailer")
    async def mail(payload: dict[str, Any]) -> None:
        got.append(payload)

    async with AsyncTestClient(app):
        outbox = Outbox(store, broker)
        await outbox.setup()
        async with store.db.transaction(immediate=True):
            await outbox.add("emails", {"to": "ada@example.com"}, message_id="welcome-ada")
        await outbox.add("emails", {"to": "ada@example.com"}, message_id="welcome-ada")  # the same id: once
        assert await outbox.relay() == 1
        await until(lambda: got == [{"to": "ada@example.com"}])
