"""The NATS JetStream adapter against a real nats-server: its options and URLs, the stream and durable pull
consumer it makes (and an operator's own stream it uses instead), how headers, keys and JetStream's delivery count
travel, deduplication by ``Nats-Msg-Id``, deliver policies, prefetch, in-progress heartbeats for handlers longer
than ``ack_wait``, a prompt stop, settling after close, request/reply, a consumer or stream deleted under it, and
recovery after a nats-server of the test's own is killed and started again on the same port and store.

Everything made on the shared server (127.0.0.1:4222) is under unique names and deleted afterwards; that server is
never reconfigured.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.js.errors
import pytest
from _brokers import PortProgram
from _brokers import nats_server as own_nats_server
from nats.aio.msg import Msg
from nats.js import api

from _helpers import require_service
from cello import App, ConfigurationError
from cello.messaging import Broker, Message, RequestFailed
from cello.messaging.message import Delivery
from cello.messaging.nats import NatsTransport, _position, consumer_name, stream_name
from cello.testing import AsyncTestClient, free_port

pytestmark = [pytest.mark.live, pytest.mark.services, pytest.mark.timeout(120)]

URL = "nats://127.0.0.1:4222"


class Order(msgspec.Struct):
    item: str
    qty: int


class Topics:
    """Unique topics for a test; the streams made for them (and any named with ``own``) are deleted afterwards."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self.streams: list[str] = []

    def new(self, what: str) -> str:
        topic = f"cello-test.nats.{what}.{uuid.uuid4().hex[:8]}"
        self.made.append(topic)
        return topic

    def own(self, stream: str) -> str:
        self.streams.append(stream)
        return stream


@pytest.fixture
async def topics() -> AsyncIterator[Topics]:
    require_service("NATS", "127.0.0.1", 4222)
    made = Topics()
    yield made
    nc = await nats.connect(URL)
    try:
        js = nc.jetstream()
        names = {stream_name(topic) for topic in made.made} | {stream_name(t + ".dlq") for t in made.made}
        for name in names | set(made.streams):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
    finally:
        await nc.close()


async def until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)


async def connected(url: str = URL, **options: Any) -> NatsTransport:
    transport = NatsTransport(url, **options)
    await transport.connect()
    return transport


def make(url: str = URL, **options: Any) -> tuple[App, Broker]:
    app = App()
    broker = Broker(url, **{"ack_wait": 2.0, **options})
    app.include_broker(broker)
    return app, broker


def recorder(into: list[Delivery], outcome: str | None = "ack") -> Callable[[Delivery], Awaitable[None]]:
    async def handler(delivery: Delivery) -> None:
        into.append(delivery)
        if outcome is not None:
            await delivery.settle(outcome)

    return handler


# -- options, URLs, names (no server needed) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"acks": 1}, "unknown nats:// options: acks"),
        ({"ack_wait": 0}, "ack_wait"),
        ({"ack_wait": "30"}, "ack_wait"),
        ({"fetch_timeout": -1}, "fetch_timeout"),
        ({"deliver_policy": "last"}, "deliver_policy"),
        ({"retention": "workqueue"}, "retention"),
        ({"storage": "disk"}, "storage"),
        ({"replicas": 0}, "replicas"),
        ({"max_age": 0}, "max_age"),
        ({"name": 7}, "name"),
        ({"ack_sync": "yes"}, "ack_sync"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        NatsTransport(URL, **options)


def test_urls() -> None:
    transport = NatsTransport("nats://alice:s3cret@10.0.0.1:4222,10.0.0.2,10.0.0.3:5222/")
    assert transport.servers == ["nats://alice:s3cret@10.0.0.1:4222", "nats://alice:s3cret@10.0.0.2:4222",
                                 "nats://alice:s3cret@10.0.0.3:5222"]  # fmt: skip
    assert "s3cret" not in transport.display
    assert NatsTransport("nats://127.0.0.1").servers == ["nats://127.0.0.1:4222"]
    assert NatsTransport(URL, max_age=None).max_age is None
    for bad in ("nats://", "nats://host:4222/orders", "nats://host:port", "nats://host:4222?x=1"):
        with pytest.raises(ConfigurationError):
            NatsTransport(bad)


def test_stream_and_consumer_names() -> None:
    assert stream_name("orders") == "orders"
    dotted = stream_name("orders.eu")
    assert dotted.startswith("orders_eu-") and len(dotted) == len("orders_eu-") + 8
    assert stream_name("orders_eu") == "orders_eu"  # not the dotted topic's stream: that one carries a hash
    assert stream_name("a.*") != stream_name("a.>")
    assert all(c.isalnum() or c in "_-" for c in stream_name("weird topic/>.*\u00e9"))
    assert len(stream_name("x" * 500)) == 100 + 9
    name = consumer_name("orders.eu", "test_x.<locals>.bill")
    assert name.startswith("test_x__locals__bill__orders_eu-")
    assert consumer_name("a.b", "c") != consumer_name("a", "b.c")


# -- topology --------------------------------------------------------------------------------------------------


async def test_the_stream_and_the_durable_pull_consumer_it_makes(topics: Topics) -> None:
    topic = topics.new("topology")
    transport = await connected(ack_wait=3.0, max_age=60.0, storage="memory", duplicate_window=30.0)
    try:
        consumer = await transport.consume(topic, "billing", recorder([]), prefetch=2)
        await consumer.stop()
        assert transport.js is not None
        stream = (await transport.js.stream_info(stream_name(topic))).config
        assert stream.subjects == [topic]
        assert (stream.retention, stream.storage) == (api.RetentionPolicy.LIMITS, api.StorageType.MEMORY)
        assert (stream.max_age, stream.duplicate_window, stream.num_replicas) == (60.0, 30.0, 1)
        info = await transport.js.consumer_info(stream_name(topic), consumer_name(topic, "billing"))
        config = info.config
        assert config.durable_name == consumer_name(topic, "billing")
        assert config.filter_subject == topic
        assert config.ack_policy == api.AckPolicy.EXPLICIT
        assert config.deliver_policy == api.DeliverPolicy.ALL
        assert (config.ack_wait, config.max_deliver, config.max_ack_pending) == (3.0, -1, -1)
        assert config.deliver_subject is None  # a pull consumer
    finally:
        await transport.close()

    # the same group from a process with another ack_wait brings the consumer to it
    other = await connected(ack_wait=4.0, retention="interest")
    try:
        consumer = await other.consume(topic, "billing", recorder([]), prefetch=1)
        await consumer.stop()
        assert other.js is not None
        info = await other.js.consumer_info(stream_name(topic), consumer_name(topic, "billing"))
        assert info.config.ack_wait == 4.0
        # the stream exists: its settings stay as they were made
        stream = (await other.js.stream_info(stream_name(topic))).config
        assert stream.retention == api.RetentionPolicy.LIMITS
    finally:
        await other.close()


async def test_an_operators_own_stream_is_used_and_keeps_dead_letters(topics: Topics) -> None:
    prefix = topics.new("own")
    own = topics.own(f"cello-own-{uuid.uuid4().hex[:8]}")
    nc = await nats.connect(URL)
    try:
        await nc.jetstream().add_stream(name=own, subjects=[prefix + ".>"], storage=api.StorageType.MEMORY)
    finally:
        await nc.close()
    topic = prefix + ".orders"
    app, broker = make()
    dead: list[tuple[Any, ...]] = []

    @broker.subscriber(topic, group="billing", dead_letter=topic + ".dlq")
    async def bill(order: Order) -> None:
        raise RuntimeError("card declined\nfor good")

    @broker.subscriber(topic + ".dlq", group="parking")
    async def park(order: Order, message: Message) -> None:
        dead.append((order, message.id, message.header("x-cello-error"), message.meta["stream"]))

    async with AsyncTestClient(app, real_brokers=True):
        sent = await broker.publish(topic, Order("pen", 1))
        await until(lambda: len(dead) == 1, what="the dead letter")
        transport = broker.transport
        assert isinstance(transport, NatsTransport) and transport.js is not None
        # the dead letter kept its original's id: a Nats-Msg-Id of the id alone would have been dropped as a
        # duplicate of the original by the stream holding both subjects
        assert dead == [(Order("pen", 1), sent, "RuntimeError: card declined for good", own)]
        with pytest.raises(nats.js.errors.NotFoundError):
            await transport.js.stream_info(stream_name(topic))
        assert (await transport.js.stream_info(own)).state.messages == 2


# -- messages --------------------------------------------------------------------------------------------------


async def test_headers_key_delivery_count_meta_nack_and_reject(topics: Topics) -> None:
    topic = topics.new("meta")
    transport = await connected(ack_wait=1.0)
    got: list[Delivery] = []

    async def handler(delivery: Delivery) -> None:
        got.append(delivery)
        body = delivery.body.decode()
        if body == "again" and delivery.redelivered == 0:
            await delivery.settle("nack")
        elif body == "never":
            await delivery.settle("reject")
        else:
            await delivery.settle("ack")

    try:
        consumer = await transport.consume(topic, "audit", handler, prefetch=4)
        headers = {"x-message-id": "m-1", "x-tenant": "acme", "content-type": "text/plain", "x-note": "two\nlines"}
        await transport.publish(topic, b"again", key="c-7", headers=headers)
        await transport.publish(topic, b"never", key=None, headers={"x-message-id": "m-2"})
        await until(lambda: len(got) == 3, what="three deliveries")
        await asyncio.sleep(2.5)  # beyond ack_wait: nothing more comes (acked, rejected)
        await consumer.stop()
    finally:
        await transport.close()
    again = [d for d in got if d.body == b"again"]
    assert [d.redelivered for d in again] == [0, 1]
    first = again[0]
    assert first.topic == topic
    assert first.key == "c-7"
    assert first.headers == {"x-message-id": "m-1", "x-tenant": "acme", "content-type": "text/plain",
                             "x-note": "two lines"}  # fmt: skip
    assert first.meta == {"stream": stream_name(topic), "consumer": consumer_name(topic, "audit"), "stream_seq": 1,
                          "num_delivered": 1}  # fmt: skip
    assert again[1].meta["num_delivered"] == 2
    never = [d for d in got if d.body == b"never"]
    assert len(never) == 1 and never[0].key is None and never[0].meta["stream_seq"] == 2


def test_a_messages_position_is_read_from_either_form_of_its_ack_subject() -> None:
    def msg(reply: str) -> Msg:
        return Msg(None, subject="orders", reply=reply)  # type: ignore[arg-type]  # no client: nothing is sent

    assert _position(msg("$JS.ACK.ORDERS.billing.3.41.17.1733390000000000000.5")) == ("ORDERS", "billing", 3, 41)
    with_domain = "$JS.ACK.hub.ACCHASH.ORDERS.billing.2.42.18.1733390000000000000.4.r4nd0m"
    assert _position(msg(with_domain)) == ("ORDERS", "billing", 2, 42)
    with pytest.raises(nats.errors.NotJSMessageError):
        _position(msg("_INBOX.abc"))


async def test_a_subscriber_of_one_at_a_time_takes_its_messages_in_stream_order(topics: Topics) -> None:
    topic = topics.new("in-order")
    app, broker = make()
    seen: list[int] = []

    @broker.subscriber(topic, group="in-order")  # concurrency 1: one task takes the messages in turn
    async def handle(item: dict[str, int], message: Message) -> None:
        seen.append(message.meta["stream_seq"])
        if item["n"] % 7 == 0:
            await asyncio.sleep(0.005)  # a slower message holds up only those after it

    transport = await connected()
    try:
        for n in range(60):
            await transport.publish(
                topic, b'{"n":%d}' % n, key=f"k{n % 5}", headers={"content-type": "application/json"}
            )
    finally:
        await transport.close()
    async with AsyncTestClient(app, real_brokers=True):
        await until(lambda: len(seen) == 60, what="every message")
    assert seen == list(range(1, 61))


async def test_a_resent_message_id_is_stored_once(topics: Topics) -> None:
    topic = topics.new("dedup")
    transport = await connected()
    try:
        for _ in range(3):
            await transport.publish(topic, b"once", key=None, headers={"x-message-id": "same"})
        await transport.publish(topic, b"other", key=None, headers={"x-message-id": "another"})
        assert transport.js is not None
        assert (await transport.js.stream_info(stream_name(topic))).state.messages == 2
    finally:
        await transport.close()


async def test_deliver_policy_all_or_new_for_a_new_group(topics: Topics) -> None:
    topic = topics.new("policy")
    early, late = await connected(), await connected(deliver_policy="new")
    from_all: list[Delivery] = []
    from_new: list[Delivery] = []
    try:
        await early.publish(topic, b"before", key=None, headers={})
        consumers = [await early.consume(topic, "all", recorder(from_all), prefetch=1),
                     await late.consume(topic, "new", recorder(from_new), prefetch=1)]  # fmt: skip
        await until(lambda: len(from_all) == 1, what="the older message")
        await early.publish(topic, b"after", key=None, headers={})
        await until(lambda: len(from_all) == 2 and len(from_new) == 1, what="the newer message")
        assert [d.body for d in from_new] == [b"after"]
        for consumer in consumers:
            await consumer.stop()
    finally:
        await early.close()
        await late.close()


async def test_prefetch_bounds_the_messages_under_way(topics: Topics) -> None:
    topic = topics.new("prefetch")
    transport = await connected(ack_sync=False)
    under_way = peak = 0
    done: list[int] = []

    async def handler(delivery: Delivery) -> None:
        nonlocal under_way, peak
        under_way += 1
        peak = max(peak, under_way)
        await asyncio.sleep(0.05)
        under_way -= 1
        done.append(int(delivery.body))
        await delivery.settle("ack")

    try:
        for n in range(12):
            await transport.publish(topic, str(n).encode(), key=None, headers={})
        consumer = await transport.consume(topic, "g", handler, prefetch=3)
        await until(lambda: len(done) == 12, what="all twelve")
        await consumer.stop()
    finally:
        await transport.close()
    assert peak == 3
    assert sorted(done) == list(range(12))


async def test_a_handler_longer_than_ack_wait_keeps_its_message(topics: Topics) -> None:
    topic = topics.new("long")
    # two members of one group, as two processes: without in-progress reports the other would get it after 1 s
    members = [await connected(ack_wait=1.0), await connected(ack_wait=1.0)]
    got: list[Delivery] = []

    async def slow(delivery: Delivery) -> None:
        got.append(delivery)
        await asyncio.sleep(3.5)
        await delivery.settle("ack")

    try:
        consumers = [await member.consume(topic, "slow", slow, prefetch=1) for member in members]
        await members[0].publish(topic, b"long job", key=None, headers={})
        await until(lambda: len(got) == 1, what="the delivery")
        await asyncio.sleep(5.0)
        assert len(got) == 1 and got[0].redelivered == 0
        for consumer in consumers:
            await consumer.stop()
    finally:
        for member in members:
            await member.close()


async def test_invalid_topics_are_refused(topics: Topics) -> None:
    transport = await connected()
    try:
        with pytest.raises(ConfigurationError):
            await transport.publish("orders.*", b"", key=None, headers={})
        with pytest.raises(ConfigurationError):
            await transport.consume("orders..eu", "g", recorder([]), prefetch=1)
        with pytest.raises(ConfigurationError):
            await transport.consume("orders eu", "g", recorder([]), prefetch=1)
        with pytest.raises(ValueError, match="header name"):
            await transport.publish(topics.new("header"), b"", key=None, headers={"bad name": "x"})
    finally:
        await transport.close()


async def test_a_wildcard_topic_takes_every_matching_subject(topics: Topics) -> None:
    prefix = topics.new("wild")
    topics.own(stream_name(prefix + ".*"))
    transport = await connected()
    got: list[Delivery] = []
    try:
        consumer = await transport.consume(prefix + ".*", "all-regions", recorder(got), prefetch=2)
        await transport.publish(prefix + ".eu", b"1", key=None, headers={})
        await transport.publish(prefix + ".us", b"2", key=None, headers={})
        await until(lambda: len(got) == 2, what="both regions")
        assert sorted(d.topic for d in got) == [prefix + ".eu", prefix + ".us"]
        await consumer.stop()
    finally:
        await transport.close()


# -- stopping and closing ----------------------------------------------------------------------------------------


async def test_stop_is_prompt_and_leaves_no_pull_request_behind(topics: Topics) -> None:
    topic = topics.new("stop")
    first, second = await connected(ack_wait=30.0), await connected(ack_wait=30.0)
    got: list[Delivery] = []
    try:
        consumer = await first.consume(topic, "g", recorder(got), prefetch=4)
        await asyncio.sleep(0.3)  # its pull request waits on the server (for fetch_timeout, 5 s)
        started = time.monotonic()
        await consumer.stop()
        assert time.monotonic() - started < 1.0
        await first.publish(topic, b"after the stop", key=None, headers={})
        # had the stopped member's request taken it, it would come back only after ack_wait (30 s)
        other = await second.consume(topic, "g", recorder(got), prefetch=1)
        await until(lambda: len(got) == 1, timeout=3.0, what="the message at the other member")
        assert got[0].redelivered == 0
        await other.stop()
    finally:
        await first.close()
        await second.close()


async def test_what_a_stopping_subscriber_gives_back_comes_once_to_the_next(topics: Topics) -> None:
    topic = topics.new("give-back")
    app, broker = make(ack_wait=30.0)  # its pull request (for 32, prefetched) waits 5 s: still there at the stop
    started: list[int] = []

    @broker.subscriber(topic, group="workers")  # concurrency 1: the others wait, prefetched, for their turn
    async def slow(order: Order) -> None:
        started.append(order.qty)
        await asyncio.sleep(0.5)

    async with AsyncTestClient(app, real_brokers=True):
        for n in range(6):
            await broker.publish(topic, Order("pen", n))
        await until(lambda: len(started) == 1, what="the first job")
    # stopped: the job under way was finished, the five waiting went back (nacked once the pull request ended)
    assert started == [0]

    after = await connected(ack_wait=30.0)
    got: list[Delivery] = []
    try:
        consumer = await after.consume(topic, "workers", recorder(got), prefetch=8)
        await until(lambda: len(got) >= 5, what="the five given back")
        await asyncio.sleep(1.0)  # none of them again (nats-server#5305 would repeat one, counted a first delivery)
        await consumer.stop()
    finally:
        await after.close()
    assert sorted(d.body for d in got) == sorted(f'{{"item":"pen","qty":{n}}}'.encode() for n in range(1, 6))
    assert [d.redelivered for d in got] == [1] * 5


async def test_settling_after_close_is_dropped_and_the_message_comes_again(topics: Topics) -> None:
    topic = topics.new("close")
    first, second = await connected(ack_wait=30.0), await connected(ack_wait=30.0)
    held: list[Delivery] = []
    again: list[Delivery] = []
    release = asyncio.Event()

    async def outlives_the_drain(delivery: Delivery) -> None:
        held.append(delivery)
        await release.wait()
        await delivery.settle("ack")  # the transport is closed by then: no error, dropped

    try:
        await first.consume(topic, "g", outlives_the_drain, prefetch=1)
        await first.publish(topic, b"job", key=None, headers={})
        await until(lambda: len(held) == 1, what="the delivery")
        await first.close()  # its message goes back at once, not after ack_wait
        release.set()
        await asyncio.sleep(0.1)
        consumer = await second.consume(topic, "g", recorder(again), prefetch=1)
        await until(lambda: len(again) == 1, timeout=5.0, what="the message again")
        assert again[0].redelivered == 1
        await consumer.stop()
    finally:
        await first.close()
        await second.close()


# -- request/reply ---------------------------------------------------------------------------------------------


async def test_request_reply(topics: Topics) -> None:
    topic, failing, nobody = topics.new("ask"), topics.new("fail"), topics.new("nobody")
    app, broker = make()

    @broker.subscriber(topic, group="pricing")
    async def price(order: Order) -> dict[str, Any]:
        return {"item": order.item, "total": order.qty * 3}

    @broker.subscriber(failing, group="pricing")
    async def broken(order: Order) -> None:
        raise LookupError("no such item")

    async with AsyncTestClient(app, real_brokers=True):
        assert await broker.request(topic, Order("pen", 2), timeout=10) == {"item": "pen", "total": 6}
        with pytest.raises(RequestFailed, match="LookupError: no such item"):
            await broker.request(failing, Order("pen", 2), timeout=10)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await broker.request(nobody, Order("pen", 2), timeout=1.0)
        assert time.monotonic() - started < 3.0


# -- the server and the consumer going away ----------------------------------------------------------------------


async def test_an_unreachable_server_fails_connect_and_ping() -> None:
    transport = NatsTransport(f"nats://127.0.0.1:{free_port()}", connect_timeout=1.0)
    assert not await transport.ping()
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="unreachable"):
        await transport.connect()
    assert time.monotonic() - started < 3.0
    assert not await transport.ping()


async def test_a_deleted_consumer_or_stream_is_made_again(topics: Topics) -> None:
    topic = topics.new("deleted")
    transport = await connected()
    got: list[Delivery] = []
    try:
        consumer = await transport.consume(topic, "g", recorder(got), prefetch=2)
        assert transport.js is not None
        await transport.ping()
        await transport.js.delete_consumer(stream_name(topic), consumer_name(topic, "g"))
        await asyncio.sleep(0.5)
        await transport.publish(topic, b"1", key=None, headers={})
        await until(lambda: len(got) == 1, what="the message after the consumer was deleted")

        await transport.js.delete_stream(stream_name(topic))  # its consumers go with it
        await asyncio.sleep(0.5)
        await transport.publish(topic, b"2", key=None, headers={})  # the stream is made again
        await until(lambda: len(got) == 2, what="the message after the stream was deleted")
        assert [d.body for d in got] == [b"1", b"2"]
        await consumer.stop()
    finally:
        await transport.close()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[PortProgram]:
    """A nats-server of the test's own (its store in tmp_path), to kill and start again."""
    with own_nats_server(tmp_path) as server:
        yield server


async def test_the_server_goes_away_and_comes_back(nats_server: PortProgram) -> None:
    topic = f"cello-test.nats.restart.{uuid.uuid4().hex[:8]}"
    app, broker = make(f"nats://127.0.0.1:{nats_server.port}", reconnect_wait=0.2)
    seen: list[int] = []

    @broker.subscriber(topic, group="workers", concurrency=2)
    async def work(order: Order) -> None:
        seen.append(order.qty)

    async def ping_is(expected: bool) -> None:
        deadline = time.monotonic() + 20
        while await broker.ping() is not expected:
            assert time.monotonic() < deadline, f"ping never became {expected}"
            await asyncio.sleep(0.05)

    async with AsyncTestClient(app, real_brokers=True):
        await broker.publish(topic, Order("pen", 1))
        await until(lambda: seen == [1], what="the first message")
        assert await broker.ping()

        nats_server.stop()  # SIGKILL
        await ping_is(False)
        # published while the server is away: nats-py holds it back, and JetStream's PubAck comes once it is back
        held_back = asyncio.ensure_future(broker.publish(topic, Order("pen", 2)))
        await asyncio.sleep(1.0)  # the pull loop meets a dead connection for a while
        assert not held_back.done()
        nats_server.start()  # the same port, the same store
        await ping_is(True)
        await held_back

        for n in (3, 4, 5):
            await broker.publish(topic, Order("pen", n))
        await until(lambda: sorted(seen) == [1, 2, 3, 4, 5], timeout=30, what="the messages after the restart")
