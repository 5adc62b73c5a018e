"""One side of benchmarks/messaging.py, run inside a benchmark venv: with one implementation (``raw`` client loop,
``cello`` subscriber, ``faststream`` subscriber), on one broker, for one topic:

    python messaging_bench.py declare IMPL BROKER URL TOPIC
    python messaging_bench.py publish IMPL BROKER URL TOPIC --count N --timed K
    python messaging_bench.py consume IMPL BROKER URL TOPIC --count N
    python messaging_bench.py cleanup IMPL BROKER URL TOPIC

``declare`` makes the subscription (queue, consumer group, durable consumer) and stops, so that what is published
next waits for it; ``publish`` sends N order messages in the implementation's own format (the first K one at a time,
timed: microseconds per publish, printed as JSON); ``consume`` subscribes, prints ``ready``, and handles N messages
with a no-op typed handler (the body decoded into an ``Order``: msgspec for the raw loop and Cello, pydantic for
FastStream, its own typing), acking each after the handler, then prints the seconds from the first message to the
last ack and the process's CPU seconds in that window as JSON; ``cleanup`` deletes what the implementation made.
"""

# NOTE: no ``from __future__ import annotations``: the handlers' annotations name classes defined in functions,
# which Cello and FastStream must find as objects, not resolve from strings
import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

GROUP = "bench"
PREFETCH = 32  # unsettled messages per consumer: Cello's default, given to the raw loops and FastStream alike
CHUNK = 500  # concurrent publishes while filling the backlog
CONSUME_TIMEOUT = 300.0


def payload(i: int) -> dict[str, Any]:
    return {"id": i, "item": "widget", "qty": 3, "price": 9.5, "note": "deliver to the back door"}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Counter:
    """Counts handled messages; knows when the first came and when the last was handled."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0
        self.first: float | None = None
        self.cpu_first = 0.0
        self.done = asyncio.Event()

    def hit(self) -> None:
        if self.first is None:
            self.first, self.cpu_first = time.perf_counter(), cpu_seconds()
        self.seen += 1
        if self.seen >= self.count:
            self.done.set()


async def publish_all(send: Callable[[dict[str, Any]], Awaitable[Any]], count: int, timed: int) -> float:
    """Send ``count`` messages: the first ``timed`` one after another (microseconds each), the rest in chunks."""
    started = time.perf_counter()
    for i in range(timed):
        await send(payload(i))
    per_publish = (time.perf_counter() - started) / timed * 1e6 if timed else 0.0
    for start in range(timed, count, CHUNK):
        await asyncio.gather(*(send(payload(i)) for i in range(start, min(count, start + CHUNK))))
    return per_publish


async def consumed(counter: Counter, loop: Coroutine[Any, Any, None] | None = None) -> dict[str, float]:
    """Say ``ready``, then wait until the counter's messages are handled (by ``loop``, a raw client's consuming
    loop, when given); the seconds from the first to the last and the CPU seconds in between."""
    task = asyncio.ensure_future(loop) if loop is not None else None
    print("ready", flush=True)
    await asyncio.wait_for(counter.done.wait(), CONSUME_TIMEOUT)
    assert counter.first is not None
    # the last handler's ack goes out right after it returns: let it
    await asyncio.sleep(0)
    result = {"seconds": time.perf_counter() - counter.first, "cpu": cpu_seconds() - counter.cpu_first}
    if task is not None:
        await task
    return result


# -- Cello ----------------------------------------------------------------------------------------------------


def cello_options(broker: str) -> dict[str, Any]:
    # tansu refuses the idempotent producer (see docs/messaging.md)
    return {"idempotent": False} if broker == "kafka" else {}


async def cello(mode: str, broker_kind: str, url: str, topic: str, count: int, timed: int) -> dict[str, Any]:
    import msgspec

    from cello import App
    from cello.messaging import Broker

    class Order(msgspec.Struct):
        id: int
        item: str
        qty: int
        price: float
        note: str

    app = App()
    broker = Broker(url, **cello_options(broker_kind))
    counter = Counter(count)
    if mode in ("declare", "consume"):

        @broker.subscriber(topic, group=GROUP)
        async def handle(order: Order) -> None:
            counter.hit()

    app.include_broker(broker)
    if mode == "cleanup":
        await cleanup_cello(broker_kind, url, topic)
        return {}
    await broker.start()
    try:
        if mode == "publish":
            return {"publish_us": await publish_all(lambda body: broker.publish(topic, body), count, timed)}
        if mode == "consume":
            return await consumed(counter)
        return {}
    finally:
        await broker.stop()


async def cleanup_cello(broker: str, url: str, topic: str) -> None:
    if broker == "amqp":
        from cello.messaging.amqp import queue_name

        await cleanup_raw(broker, url, queue_name(topic, GROUP))
    elif broker == "nats":
        from cello.messaging.nats import stream_name

        await cleanup_raw(broker, url, topic, stream=stream_name(topic))
    elif broker == "redis":
        await cleanup_raw(broker, url, "cello:stream:" + topic)
    else:
        await cleanup_raw(broker, url, topic)


# -- the raw client libraries -----------------------------------------------------------------------------------


def raw_stream(topic: str) -> str:
    return topic.replace(".", "_")


async def raw(mode: str, broker: str, url: str, topic: str, count: int, timed: int) -> dict[str, Any]:
    import msgspec

    class Order(msgspec.Struct):
        id: int
        item: str
        qty: int
        price: float
        note: str

    decoder = msgspec.json.Decoder(Order)
    encode = msgspec.json.encode
    counter = Counter(count)
    if mode == "cleanup":
        await cleanup_raw(broker, url, topic, stream=raw_stream(topic))
        return {}
    if broker == "amqp":
        import aio_pika

        connection = await aio_pika.connect(url)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=PREFETCH)
            queue = await channel.declare_queue(topic, durable=True)
            if mode == "publish":

                async def send(body: dict[str, Any]) -> None:
                    message = aio_pika.Message(encode(body), content_type="application/json",
                                               delivery_mode=aio_pika.DeliveryMode.PERSISTENT)  # fmt: skip
                    await channel.default_exchange.publish(message, routing_key=topic)

                return {"publish_us": await publish_all(send, count, timed)}
            if mode == "consume":

                async def consume() -> None:
                    async with queue.iterator() as messages:
                        async for message in messages:
                            decoder.decode(message.body)
                            await message.ack()
                            counter.hit()
                            if counter.done.is_set():
                                return

                return await consumed(counter, consume())
            return {}
        finally:
            await connection.close()
    if broker == "kafka":
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        servers = url.removeprefix("kafka://")
        if mode == "declare":
            admin = AIOKafkaAdminClient(bootstrap_servers=servers)
            await admin.start()
            try:
                await admin.create_topics([NewTopic(topic, 1, 1)])
            finally:
                await admin.close()
            return {}
        if mode == "publish":
            producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=False)
            await producer.start()
            try:
                return {"publish_us": await publish_all(lambda body: producer.send_and_wait(topic, encode(body)),
                                                        count, timed)}  # fmt: skip
            finally:
                await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, group_id=GROUP, enable_auto_commit=False,
                                    auto_offset_reset="earliest")  # fmt: skip
        await consumer.start()
        try:

            async def consume_kafka() -> None:
                while not counter.done.is_set():
                    batch = await consumer.getmany(timeout_ms=1000, max_records=PREFETCH)
                    for records in batch.values():
                        for record in records:
                            decoder.decode(record.value)
                            counter.hit()
                    if batch:
                        await consumer.commit()

            return await consumed(counter, consume_kafka())
        finally:
            await consumer.stop()
    if broker == "nats":
        import nats
        from nats.js import api

        client = await nats.connect(url)
        js = client.jetstream()
        stream = raw_stream(topic)
        try:
            if mode == "declare":
                await js.add_stream(name=stream, subjects=[topic])
                await js.add_consumer(stream, api.ConsumerConfig(durable_name=GROUP, ack_policy=api.AckPolicy.EXPLICIT,
                                                                 deliver_policy=api.DeliverPolicy.ALL))  # fmt: skip
                return {}
            if mode == "publish":
                return {"publish_us": await publish_all(lambda body: js.publish(topic, encode(body)), count, timed)}
            subscription = await js.pull_subscribe_bind(GROUP, stream)

            async def consume_nats() -> None:
                while not counter.done.is_set():
                    try:
                        messages = await subscription.fetch(PREFETCH, timeout=5)
                    except nats.errors.TimeoutError:
                        continue
                    for message in messages:
                        decoder.decode(message.data)
                        await message.ack()
                        counter.hit()

            return await consumed(counter, consume_nats())
        finally:
            await client.drain()
    if broker == "redis":
        import redis.asyncio as redis

        client = redis.Redis.from_url(url, max_connections=CHUNK + 10)  # the backlog's concurrent XADDs
        try:
            if mode == "declare":
                await client.xgroup_create(topic, GROUP, id="$", mkstream=True)
                return {}
            if mode == "publish":
                return {"publish_us": await publish_all(lambda body: client.xadd(topic, {"body": encode(body)}),
                                                        count, timed)}  # fmt: skip

            async def consume_redis() -> None:
                while not counter.done.is_set():
                    answer = await client.xreadgroup(GROUP, "c1", {topic: ">"}, count=PREFETCH, block=2000)
                    for _, entries in answer:
                        for entry_id, fields in entries:
                            decoder.decode(fields[b"body"])
                            await client.xack(topic, GROUP, entry_id)
                            counter.hit()

            return await consumed(counter, consume_redis())
        finally:
            await client.aclose()
    raise SystemExit(f"no raw loop for {broker}")


async def cleanup_raw(broker: str, url: str, name: str, *, stream: str | None = None) -> None:
    """Delete the queue, topic, stream or key ``name`` (a NATS ``stream``)."""
    if broker == "amqp":
        import aio_pika

        connection = await aio_pika.connect(url)
        try:
            channel = await connection.channel()
            await channel.queue_delete(name)
        finally:
            await connection.close()
    elif broker == "kafka":
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=url.removeprefix("kafka://"))
        await admin.start()
        try:
            await admin.delete_topics([name])
        except Exception as exc:  # the broker is thrown away after the run anyway
            print(f"deleting topic {name}: {exc!r}", file=sys.stderr)
        finally:
            await admin.close()
    elif broker == "nats":
        import nats

        client = await nats.connect(url)
        try:
            await client.jetstream().delete_stream(stream or name)
        finally:
            await client.drain()
    elif broker == "redis":
        import redis.asyncio as redis

        client = redis.Redis.from_url(url)
        try:
            await client.delete(name)
        finally:
            await client.aclose()


# -- FastStream -------------------------------------------------------------------------------------------------


async def faststream(mode: str, broker_kind: str, url: str, topic: str, count: int, timed: int) -> dict[str, Any]:
    from faststream import AckPolicy
    from pydantic import BaseModel

    class Order(BaseModel):
        id: int
        item: str
        qty: int
        price: float
        note: str

    counter = Counter(count)
    if mode == "cleanup":
        await cleanup_raw(broker_kind, url, topic, stream=raw_stream(topic))
        return {}
    subscribe = mode in ("declare", "consume")
    broker: Any
    send: Callable[[dict[str, Any]], Awaitable[Any]]
    if broker_kind == "amqp":
        from faststream.rabbit import RabbitBroker, RabbitQueue
        from faststream.rabbit.schemas import Channel

        broker = RabbitBroker(url, default_channel=Channel(prefetch_count=PREFETCH), logger=None)
        queue = RabbitQueue(topic, durable=True)
        if subscribe:
            broker.subscriber(queue)(handler(Order, counter))

        def send(body: dict[str, Any]) -> Awaitable[Any]:
            return broker.publish(body, queue, persist=True)

    elif broker_kind == "kafka":
        from faststream.kafka import KafkaBroker

        broker = KafkaBroker(url.removeprefix("kafka://"), enable_idempotence=False, logger=None)
        if subscribe:
            # ACK: committed after the handler, as Cello does (FastStream's default commits before it)
            broker.subscriber(topic, group_id=GROUP, auto_offset_reset="earliest", ack_policy=AckPolicy.ACK,
                              max_records=PREFETCH)(handler(Order, counter))  # fmt: skip

        def send(body: dict[str, Any]) -> Awaitable[Any]:
            return broker.publish(body, topic)

    elif broker_kind == "nats":
        from faststream.nats import JStream, NatsBroker, PullSub

        broker = NatsBroker(url, logger=None)
        stream = JStream(raw_stream(topic), subjects=[topic])
        if subscribe:
            broker.subscriber(topic, stream=stream, durable=GROUP, pull_sub=PullSub(batch_size=PREFETCH))(
                handler(Order, counter)
            )

        def send(body: dict[str, Any]) -> Awaitable[Any]:
            return broker.publish(body, topic, stream=stream.name)

    elif broker_kind == "redis":
        from faststream.redis import RedisBroker, StreamSub

        broker = RedisBroker(url, logger=None)
        if subscribe:
            broker.subscriber(stream=StreamSub(topic, group=GROUP, consumer="c1", max_records=PREFETCH))(
                handler(Order, counter)
            )

        def send(body: dict[str, Any]) -> Awaitable[Any]:
            return broker.publish(body, stream=topic)

    else:
        raise SystemExit(f"no FastStream broker for {broker_kind}")
    await broker.start()
    try:
        if mode == "publish":
            return {"publish_us": await publish_all(send, count, timed)}
        if mode == "consume":
            return await consumed(counter)
        return {}
    finally:
        await broker.stop()


def handler(model: type, counter: Counter) -> Callable[..., Awaitable[None]]:
    async def handle(order: model) -> None:  # type: ignore[valid-type]
        counter.hit()

    return handle


IMPLEMENTATIONS = {"raw": raw, "cello": cello, "faststream": faststream}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["declare", "publish", "consume", "cleanup"])
    parser.add_argument("impl", choices=sorted(IMPLEMENTATIONS))
    parser.add_argument("broker", choices=["amqp", "kafka", "nats", "redis"])
    parser.add_argument("url")
    parser.add_argument("topic")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--timed", type=int, default=0)
    args = parser.parse_args()
    import uvloop

    run = IMPLEMENTATIONS[args.impl](args.mode, args.broker, args.url, args.topic, args.count, args.timed)
    result = uvloop.run(run)
    print(json.dumps(result), flush=True)
    sys.stdout.flush()
    os._exit(0)  # NOTE: a client library's leftover background threads must not hold the measured process


if __name__ == "__main__":
    main()
