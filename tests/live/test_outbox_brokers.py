"""The transactional outbox (cello.patterns.outbox) relaying to each real broker the messaging tests run —
RabbitMQ, Kafka (tansu), NATS JetStream, Redis Streams, SQS (moto) — with a crash between commit and publish: the
events were committed while no relay ran, and the next worker's relay sends them, each once, in order per key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from _brokers import BROKERS, BrokerTarget, serving

from cello import App
from cello.enterprise.database import Database
from cello.messaging import Broker, Message
from cello.patterns import EventStore, Outbox
from cello.testing import AsyncTestClient

pytestmark = [pytest.mark.live, pytest.mark.services, pytest.mark.timeout(180)]

PREFIX = f"cello-test.{uuid.uuid4().hex[:6]}."


class OrderPlaced(msgspec.Struct):
    order_id: str
    total: int


@pytest.fixture(scope="module", params=list(BROKERS))
def target(request: pytest.FixtureRequest) -> Iterator[BrokerTarget]:
    with serving(request.param, PREFIX) as found:
        yield found


def test_committed_events_reach_the_broker_after_a_crash(target: BrokerTarget, tmp_path: Path) -> None:
    topic = f"{PREFIX}{uuid.uuid4().hex[:10]}{target.ordered_suffix}"

    async def scenario() -> None:
        async with Database(f"sqlite:///{tmp_path / 'shop.db'}") as db:
            store = EventStore(db, events=[OrderPlaced])
            await store.setup()
            broker = Broker(target.url, **target.options)
            Outbox(store, broker).route(OrderPlaced, topic)  # the dead worker's outbox: written, never relayed
            await Outbox(store, broker).setup()
            recorded = [event for n in range(3) for event in await store.append(
                f"order-{n}", [OrderPlaced(str(n), 10 * n), OrderPlaced(str(n), 10 * n + 1)])]  # fmt: skip

            app = App()  # the next worker
            app.include_broker(broker)
            received: list[tuple[str | None, OrderPlaced, str | None]] = []

            @broker.subscriber(topic, group="shipping")
            async def ship(order: OrderPlaced, message: Message) -> None:
                received.append((message.id, order, message.key))

            Outbox(store, broker, interval=0.05).attach(app)
            async with AsyncTestClient(app, real_brokers=True):
                for _ in range(1500):
                    if len(received) >= 6:
                        break
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.2)  # anything sent twice would have come by now
            assert sorted(message_id or "" for message_id, _, _ in received) == sorted(
                event.event_id for event in recorded)  # fmt: skip
            for n in range(3):  # one stream's events in their order
                assert [order.total for _, order, key in received if key == f"order-{n}"] == [10 * n, 10 * n + 1]

    asyncio.run(scenario())
