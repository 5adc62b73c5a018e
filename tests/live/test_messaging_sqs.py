"""The SQS adapter against a real SQS server (moto's, started by the tests on a free loopback port): what the shared
broker suite (test_brokers.py) does not cover — its options and URL, the topic-to-queue name mapping, headers in
one attribute, binary and empty bodies, FIFO group and deduplication ids, the visibility heartbeat of a long
handler, nack and reject, a prompt stop during a long poll, batched deletes and sends, messages of other
software, ping, and recovery after the server went away and came back empty."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest
from _brokers import SQS_ENV, PortProgram, moto

from cello import App, ConfigurationError
from cello.messaging import Broker, Message
from cello.messaging.message import Delivery
from cello.messaging.sqs import QueueNotFound, SqsTransport, decode_body, encode_body, queue_name
from cello.testing import AsyncTestClient

pytestmark = [pytest.mark.live, pytest.mark.services, pytest.mark.timeout(120)]

QUICK = {"visibility_timeout": 2.0, "wait_time": 1.0}


def url_of(server: PortProgram) -> str:
    return f"sqs://us-east-1?endpoint_url=http://127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def sqs() -> Iterator[PortProgram]:
    with pytest.MonkeyPatch.context() as patch, moto() as server:
        for name, value in SQS_ENV.items():
            patch.setenv(name, value)
        yield server


@pytest.fixture
def topic() -> str:
    return f"cello-sqs.{uuid.uuid4().hex[:10]}"


def run(scenario: Callable[[], Awaitable[None]], timeout: float = 90) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout))


async def until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def transport(url: str, **options: Any) -> AsyncIterator[SqsTransport]:
    connected = SqsTransport(url, **{**QUICK, **options})
    await connected.connect()
    try:
        yield connected
    finally:
        await connected.close()


async def raw_receive(client: Any, url: str, **extra: Any) -> list[dict[str, Any]]:
    """What SQS itself holds (not through the adapter)."""
    answer = await client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                          MessageAttributeNames=["All"],
                                          MessageSystemAttributeNames=["All"], **extra)  # fmt: skip
    return list(answer.get("Messages", []))


async def queue_counts(client: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    answer = await client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )
    attributes = answer["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


# -- URL, options, names (no server needed) -----------------------------------------------------------------------


def test_url_and_options_are_validated():
    sqs_transport = SqsTransport("sqs://eu-west-1", visibility_timeout=2.5, wait_time=0, create_queues=False,
                                 queue_attributes={"MessageRetentionPeriod": 600, "RawFlag": True},
                                 queue_prefix="prod_", profile="work", timeout=2, max_connections=8)  # fmt: skip
    assert sqs_transport.region == "eu-west-1" and sqs_transport.endpoint_url is None
    assert sqs_transport.visibility_timeout == 3  # whole seconds, rounded up
    assert sqs_transport.wait_time == 0
    assert sqs_transport.queue_attributes == {"MessageRetentionPeriod": "600", "RawFlag": "true"}
    assert sqs_transport.describe() == {"protocol": "sqs", "host": "sqs.eu-west-1.amazonaws.com"}
    local = SqsTransport("sqs://us-east-1?endpoint_url=http://127.0.0.1:4566")
    assert local.endpoint_url == "http://127.0.0.1:4566"
    assert local.describe()["host"] == "127.0.0.1:4566"
    assert (local.visibility_timeout, local.wait_time, local.create_queues) == (30, 20, True)
    assert SqsTransport("sqs://").region is None  # the AWS chain's region

    bad: list[tuple[str, dict[str, Any]]] = [
        ("sqs://us-east-1", {"visiblity_timeout": 3}),
        ("sqs://us-east-1", {"visibility_timeout": 0}),
        ("sqs://us-east-1", {"visibility_timeout": "30"}),
        ("sqs://us-east-1", {"visibility_timeout": 50000}),
        ("sqs://us-east-1", {"wait_time": 21}),
        ("sqs://us-east-1", {"wait_time": True}),
        ("sqs://us-east-1", {"create_queues": "yes"}),
        ("sqs://us-east-1", {"queue_prefix": "a.b"}),
        ("sqs://us-east-1", {"queue_attributes": {"FifoQueue": "true"}}),
        ("sqs://us-east-1", {"queue_attributes": {"DelaySeconds": None}}),
        ("sqs://us-east-1", {"queue_attributes": ["x"]}),
        ("sqs://us-east-1", {"profile": ""}),
        ("sqs://us-east-1", {"timeout": 0}),
        ("sqs://us-east-1", {"max_connections": 1}),
        ("sqs://US_EAST", {}),
        ("sqs://us-east-1/queue", {}),
        ("sqs://us-east-1?region=x", {}),
        ("sqs://us-east-1?endpoint_url=127.0.0.1:4566", {}),
    ]
    for url, options in bad:
        with pytest.raises(ConfigurationError):
            SqsTransport(url, **options)
    with pytest.raises(ConfigurationError, match="visiblity_timeout"):
        Broker("sqs://us-east-1", visiblity_timeout=3)


def test_topic_names_map_to_queue_names():
    assert queue_name("orders") == "orders"
    assert queue_name("orders.dlq") == "orders-dlq"
    assert queue_name("orders.eu.fifo") == "orders-eu.fifo"
    assert queue_name("orders.dlq", "prod_") == "prod_orders-dlq"
    assert queue_name("a" * 80) == "a" * 80
    assert queue_name("a" * 75 + ".fifo") == "a" * 75 + ".fifo"
    for topic in ["", ".fifo", "orders/eu", "commandes été", "orders:1", "a" * 81, "a" * 76 + ".fifo"]:
        with pytest.raises(ConfigurationError):
            queue_name(topic)


def test_bodies_travel_as_text_or_base64():
    assert encode_body(b'{"a": 1}') == ('{"a": 1}', None)
    assert encode_body("café ☕".encode()) == ("café ☕", None)
    for body in [b"\x00\x01\xff\xfe", b"a\x00b", b"bell \x07", b"\xed\xa0\x80", bytes(range(256))]:
        text, encoding = encode_body(body)
        assert encoding == "base64" and base64.b64decode(text) == body
        assert decode_body(text, encoding) == body
    assert encode_body(b"")[1] == "empty" and decode_body(*encode_body(b"")) == b""


# -- against the server ----------------------------------------------------------------------------------------


def test_queues_are_created_with_mapped_names_attributes_and_fifo(sqs, topic):
    async def scenario() -> None:
        attributes = {"MessageRetentionPeriod": 600, "ContentBasedDeduplication": True}
        async with transport(url_of(sqs), queue_prefix="t_", queue_attributes=attributes) as sqs_transport:
            client = sqs_transport.client
            await sqs_transport.publish(topic + ".dlq", b"x", key=None, headers={})
            await sqs_transport.publish(topic + ".fifo", b"y", key="k", headers={"x-message-id": "m-1"})
            mapped = "t_" + topic.replace(".", "-")
            plain = (await client.get_queue_url(QueueName=mapped + "-dlq"))["QueueUrl"]
            fifo = (await client.get_queue_url(QueueName=mapped + ".fifo"))["QueueUrl"]
            plain_attributes = await client.get_queue_attributes(QueueUrl=plain, AttributeNames=["All"])
            fifo_attributes = await client.get_queue_attributes(QueueUrl=fifo, AttributeNames=["All"])
            assert plain_attributes["Attributes"]["MessageRetentionPeriod"] == "600"
            assert plain_attributes["Attributes"]["VisibilityTimeout"] == "2"
            assert plain_attributes["Attributes"].get("FifoQueue", "false") == "false"
            assert "ContentBasedDeduplication" not in plain_attributes["Attributes"]  # FIFO-only: not applied
            assert fifo_attributes["Attributes"]["FifoQueue"] == "true"
            assert fifo_attributes["Attributes"]["ContentBasedDeduplication"] == "true"  # the user's choice
            with pytest.raises(ConfigurationError):
                await sqs_transport.publish("no/slashes", b"x", key=None, headers={})

    run(scenario)


def test_without_create_queues_a_missing_queue_is_an_error(sqs, topic):
    async def scenario() -> None:
        async with transport(url_of(sqs), create_queues=False) as sqs_transport:
            with pytest.raises(QueueNotFound):
                await sqs_transport.publish(topic, b"x", key=None, headers={})
            with pytest.raises(QueueNotFound):
                await sqs_transport.consume(topic, "g", _ignore, prefetch=1)
            await sqs_transport.client.create_queue(QueueName=queue_name(topic))
            await sqs_transport.publish(topic, b"x", key=None, headers={})  # made by someone else: used

    run(scenario)


async def _ignore(delivery: Delivery) -> None:
    await delivery.settle("ack")


def test_headers_key_and_binary_bodies_round_trip_in_one_attribute(sqs, topic):
    headers = {f"x-h{n}": f"value {n}" for n in range(15)}  # more headers than SQS has attributes
    bodies = [b"\x00\x01\xff binary", b"", b"plain text", "ünïcode ☕".encode(), b"a\x07b"]

    async def scenario() -> None:
        async with transport(url_of(sqs)) as sqs_transport:
            client = sqs_transport.client
            for n, body in enumerate(bodies):
                await sqs_transport.publish(topic, body, key=f"k{n}", headers={**headers, "x-message-id": str(n)})
            raw: list[dict[str, Any]] = []
            url = await sqs_transport.queue_url(queue_name(topic))
            while len(raw) < len(bodies):
                raw += await raw_receive(client, url, VisibilityTimeout=1)
            for message in raw:
                assert list(message["MessageAttributes"]) == ["cello"]  # one attribute, whatever the headers
                carried = orjson.loads(message["MessageAttributes"]["cello"]["StringValue"])
                n = int(carried["headers"]["x-message-id"])
                assert carried["key"] == f"k{n}"
                assert carried.get("encoding") == {0: "base64", 1: "empty", 4: "base64"}.get(n)
            await asyncio.sleep(1.2)  # visible again for the adapter

            got: dict[int, Delivery] = {}

            async def handler(delivery: Delivery) -> None:
                got[int(delivery.headers["x-message-id"])] = delivery
                await delivery.settle("ack")

            consumer = await sqs_transport.consume(topic, "g", handler, prefetch=10)
            await until(lambda: len(got) == len(bodies), what="every body")
            await consumer.stop()
            for n, body in enumerate(bodies):
                delivery = got[n]
                assert delivery.body == body
                assert delivery.key == f"k{n}"
                assert delivery.headers == {**headers, "x-message-id": str(n)}
                assert set(delivery.meta) == {"receipt_handle", "message_id", "queue_url"}
                assert delivery.meta["queue_url"] == url
                assert delivery.redelivered == 1  # received once above
            assert await queue_counts(client, url) == (0, 0)

    run(scenario)


def test_fifo_topics_group_by_key_and_deduplicate_by_message_id(sqs, topic):
    topic += ".fifo"

    async def scenario() -> None:
        async with transport(url_of(sqs)) as sqs_transport:
            await sqs_transport.publish(topic, b"1", key="customer-7", headers={"x-message-id": "m-1"})
            await sqs_transport.publish(topic, b"1 again", key="customer-7", headers={"x-message-id": "m-1"})
            await sqs_transport.publish(topic, b"2", key=None, headers={"x-message-id": "m-2"})
            await sqs_transport.publish(topic, b"3", key="a key with spaces", headers={"x-message-id": "m-3"})
            got: list[Delivery] = []

            async def handler(delivery: Delivery) -> None:
                got.append(delivery)
                await delivery.settle("ack")

            consumer = await sqs_transport.consume(topic, "g", handler, prefetch=4)
            await until(lambda: len(got) == 3, what="three messages")
            await asyncio.sleep(1.5)
            await consumer.stop()
            assert sorted(d.body for d in got) == [b"1", b"2", b"3"]  # the duplicate id was dropped
            by_body = {d.body: d for d in got}
            assert by_body[b"1"].meta["group_id"] == "customer-7" and by_body[b"1"].key == "customer-7"
            assert by_body[b"2"].meta["group_id"] == "cello" and by_body[b"2"].key is None
            assert len(by_body[b"3"].meta["group_id"]) == 64  # not an allowed group id: hashed
            assert by_body[b"3"].key == "a key with spaces"
            assert "sequence_number" in by_body[b"1"].meta

    run(scenario)


def test_a_handler_longer_than_the_visibility_timeout_is_not_redelivered_meanwhile(sqs, topic):
    async def scenario() -> None:
        seen: list[tuple[str, int]] = []

        async def slow(delivery: Delivery) -> None:
            seen.append(("first", delivery.redelivered))
            await asyncio.sleep(6)  # three visibility timeouts
            await delivery.settle("ack")

        async def other(delivery: Delivery) -> None:
            seen.append(("second", delivery.redelivered))
            await delivery.settle("ack")

        async with transport(url_of(sqs)) as first, transport(url_of(sqs)) as second:
            consumer = await first.consume(topic, "g", slow, prefetch=1)
            await first.publish(topic, b"long job", key=None, headers={})
            await until(lambda: bool(seen), what="the job")
            competitor = await second.consume(topic, "g", other, prefetch=1)  # same group, polling all along
            await consumer.stop()  # waits for the handler
            await asyncio.sleep(3)  # after its ack nothing comes back either
            await competitor.stop()
            assert seen == [("first", 0)]
            url = await first.queue_url(queue_name(topic))
            assert await queue_counts(first.client, url) == (0, 0)

    run(scenario)


def test_nack_is_at_once_reject_drops_and_unsettled_comes_back_after_the_timeout(sqs, topic):
    async def scenario() -> None:
        got: list[tuple[bytes, int, float]] = []
        started = time.monotonic()

        async def handler(delivery: Delivery) -> None:
            got.append((delivery.body, delivery.redelivered, time.monotonic() - started))
            if delivery.body == b"nack" and delivery.redelivered == 0:
                await delivery.settle("nack")
            elif delivery.body == b"forget" and delivery.redelivered == 0:
                return  # left unsettled: the adapter nacks it when the handler returns
            elif delivery.body == b"reject":
                await delivery.settle("reject")
            else:
                await delivery.settle("ack")

        # a visibility timeout far longer than the test: what comes back soon was made visible by the adapter
        async with transport(url_of(sqs), visibility_timeout=60) as sqs_transport:
            consumer = await sqs_transport.consume(topic, "g", handler, prefetch=3)
            for body in (b"nack", b"reject", b"forget"):
                await sqs_transport.publish(topic, body, key=None, headers={})
            await until(lambda: len(got) == 5, what="two redeliveries")
            await asyncio.sleep(1.5)
            await consumer.stop()
        assert sorted((body, redelivered) for body, redelivered, _ in got) == [
            (b"forget", 0), (b"forget", 1), (b"nack", 0), (b"nack", 1), (b"reject", 0)
        ]  # fmt: skip
        assert max(at for _, _, at in got) < 10

        # the transport closed under a running handler: its message returns after its visibility timeout
        again: list[Delivery] = []
        async with transport(url_of(sqs)) as sqs_transport:
            hold = asyncio.Event()

            async def stuck(delivery: Delivery) -> None:
                again.append(delivery)
                await hold.wait()
                await delivery.settle("ack")  # after the close: dropped quietly, not raised

            await sqs_transport.consume(topic + ".b", "g", stuck, prefetch=1)
            await sqs_transport.publish(topic + ".b", b"in flight", key=None, headers={})
            await until(lambda: len(again) == 1, what="the delivery")
        hold.set()
        await asyncio.sleep(0.05)
        async with transport(url_of(sqs)) as sqs_transport:
            later: list[Delivery] = []

            async def take(delivery: Delivery) -> None:
                later.append(delivery)
                await delivery.settle("ack")

            closed_at = time.monotonic()
            consumer = await sqs_transport.consume(topic + ".b", "g", take, prefetch=1)
            await until(lambda: bool(later), timeout=15, what="the redelivery")
            await consumer.stop()
            assert later[0].body == b"in flight" and later[0].redelivered == 1
            assert time.monotonic() - closed_at < 6

    run(scenario)


def test_stop_does_not_sit_out_a_long_poll(sqs, topic):
    async def scenario() -> None:
        async with transport(url_of(sqs), wait_time=20) as sqs_transport:
            consumer = await sqs_transport.consume(topic, "g", _ignore, prefetch=4)
            await asyncio.sleep(1.0)  # the long poll is under way
            started = time.monotonic()
            await consumer.stop()
            assert time.monotonic() - started < 1.0
            # and the queue is still usable: nothing was lost to the abandoned poll
            await sqs_transport.publish(topic, b"after", key=None, headers={})
            got: list[bytes] = []

            async def handler(delivery: Delivery) -> None:
                got.append(delivery.body)
                await delivery.settle("ack")

            consumer = await sqs_transport.consume(topic, "g", handler, prefetch=1)
            await until(lambda: got == [b"after"], what="the message after the stop")
            await consumer.stop()

    run(scenario)


def test_short_polling_still_receives(sqs, topic):
    async def scenario() -> None:
        async with transport(url_of(sqs), wait_time=0) as sqs_transport:
            got: list[bytes] = []

            async def handler(delivery: Delivery) -> None:
                got.append(delivery.body)
                await delivery.settle("ack")

            consumer = await sqs_transport.consume(topic, "g", handler, prefetch=1)
            await asyncio.sleep(1.5)  # a few empty short polls
            await sqs_transport.publish(topic, b"late", key=None, headers={})
            await until(lambda: got == [b"late"], what="the message")
            await consumer.stop()

    run(scenario)


def test_acks_and_concurrent_publishes_go_in_batches(sqs, topic):
    async def scenario() -> None:
        calls = {"SendMessageBatch": 0, "DeleteMessageBatch": 0, "sent": 0, "deleted": 0}

        def count(params: dict[str, Any], model: Any, **_: Any) -> None:
            calls[model.name] += 1
            calls["sent" if model.name == "SendMessageBatch" else "deleted"] += len(params["Entries"])

        async with transport(url_of(sqs)) as sqs_transport:
            for operation in ("SendMessageBatch", "DeleteMessageBatch"):
                sqs_transport.client.meta.events.register(f"provide-client-params.sqs.{operation}", count)
            await sqs_transport.publish(topic, b"first", key=None, headers={})  # creates the queue
            await asyncio.gather(*(sqs_transport.publish(topic, b"%d" % n, key=None, headers={}) for n in range(60)))
            assert calls["sent"] == 61
            assert calls["SendMessageBatch"] < 30, calls
            got: list[bytes] = []

            async def handler(delivery: Delivery) -> None:
                got.append(delivery.body)
                await asyncio.sleep(0.01)
                await delivery.settle("ack")

            consumer = await sqs_transport.consume(topic, "g", handler, prefetch=20)
            await until(lambda: len(set(got)) >= 61, what="every message")
            await asyncio.sleep(0.5)
            await consumer.stop()
            # NOTE: a standard queue may hand a message out twice (SQS says so; moto's server does it now and then
            # to two receives at once): every message came, and each delivery was deleted, in batches
            assert set(got) == {b"first", *(b"%d" % n for n in range(60))}
            assert calls["deleted"] == len(got)
            assert calls["DeleteMessageBatch"] < len(got), calls
            url = await sqs_transport.queue_url(queue_name(topic))
            assert await queue_counts(sqs_transport.client, url) == (0, 0)

    run(scenario)


def test_messages_of_other_software_keep_their_attributes_as_headers(sqs, topic):
    async def scenario() -> None:
        async with transport(url_of(sqs)) as sqs_transport:
            client = sqs_transport.client
            plain = await sqs_transport.queue_url(queue_name(topic))
            fifo = await sqs_transport.queue_url(queue_name(topic + ".fifo"))
            attributes = {"Tenant": {"DataType": "String", "StringValue": "acme"},
                          "Count": {"DataType": "Number", "StringValue": "3"},
                          "Blob": {"DataType": "Binary", "BinaryValue": b"\x00"}}  # fmt: skip
            await client.send_message(QueueUrl=plain, MessageBody='{"from": "elsewhere"}',
                                      MessageAttributes=attributes)  # fmt: skip
            await client.send_message(QueueUrl=fifo, MessageBody="fifo", MessageGroupId="g-1",
                                      MessageDeduplicationId="d-1")  # fmt: skip
            got: list[Delivery] = []

            async def handler(delivery: Delivery) -> None:
                got.append(delivery)
                await delivery.settle("ack")

            consumers = [await sqs_transport.consume(topic, "g", handler, prefetch=1),
                         await sqs_transport.consume(topic + ".fifo", "g", handler, prefetch=1)]  # fmt: skip
            await until(lambda: len(got) == 2, what="both messages")
            for consumer in consumers:
                await consumer.stop()
            by_topic = {d.topic: d for d in got}
            assert by_topic[topic].body == b'{"from": "elsewhere"}'
            assert by_topic[topic].headers == {"tenant": "acme", "count": "3"}
            assert by_topic[topic].key is None
            assert by_topic[topic + ".fifo"].key == "g-1"

    run(scenario)


def test_a_second_group_on_a_topic_is_refused_the_same_group_shares(sqs, topic):
    app = App()
    broker = Broker(url_of(sqs), **QUICK)
    app.include_broker(broker)
    got: list[str] = []

    @broker.subscriber(topic, group="billing", name="one")
    async def one(message: Message) -> None:
        got.append("one")

    @broker.subscriber(topic.replace(".", "-"), group="billing", name="two")  # the same queue, the same group
    async def two(message: Message) -> None:
        got.append("two")

    async def scenario() -> None:
        async with AsyncTestClient(app, real_brokers=True):
            for n in range(20):
                await broker.publish(topic, {"n": n})
            await until(lambda: len(got) == 20, what="the messages")
        assert set(got) <= {"one", "two"}

        async with transport(url_of(sqs)) as sqs_transport:
            consumer = await sqs_transport.consume(topic, "billing", _ignore, prefetch=1)
            with pytest.raises(ConfigurationError, match="no fan-out"):
                await sqs_transport.consume(topic.replace(".", "-"), "audit", _ignore, prefetch=1)
            await consumer.stop()
            second = await sqs_transport.consume(topic, "audit", _ignore, prefetch=1)  # the first one stopped
            await second.stop()

    run(scenario)


def test_ping_and_recovery_after_the_server_comes_back_empty(monkeypatch):
    for name, value in SQS_ENV.items():
        monkeypatch.setenv(name, value)
    topic = f"cello-sqs.{uuid.uuid4().hex[:10]}"

    with moto() as server:

        async def scenario() -> None:
            got: list[bytes] = []

            async def handler(delivery: Delivery) -> None:
                got.append(delivery.body)
                await delivery.settle("ack")

            async with transport(url_of(server), timeout=1.0) as sqs_transport:
                assert await sqs_transport.ping()
                consumer = await sqs_transport.consume(topic, "g", handler, prefetch=2)
                await sqs_transport.publish(topic, b"before", key=None, headers={})
                await until(lambda: got == [b"before"], what="the first message")

                server.stop()  # its queues and messages are gone with it
                started = time.monotonic()
                assert not await sqs_transport.ping()
                assert time.monotonic() - started < 5  # bounded
                with pytest.raises(Exception):
                    await sqs_transport.publish(topic, b"lost", key=None, headers={})
                await asyncio.sleep(1.5)  # the consumer's receives fail meanwhile

                server.start()  # the same port, nothing in it
                deadline = time.monotonic() + 20
                while not await sqs_transport.ping():
                    assert time.monotonic() < deadline, "ping stayed False after the server came back"
                    await asyncio.sleep(0.2)
                # the consumer finds its queue gone and makes it again, before anyone publishes
                client = sqs_transport.client
                for _ in range(200):
                    with contextlib.suppress(Exception):
                        await client.get_queue_url(QueueName=queue_name(topic))
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError("the consumer did not make its queue again")
                await sqs_transport.publish(topic, b"after", key=None, headers={})
                await until(lambda: got == [b"before", b"after"], what="the message after the restart")
                await consumer.stop()

                # a publisher whose cached queue vanished makes it again too
                other = topic + ".other"
                await sqs_transport.publish(other, b"x", key=None, headers={})
                server.stop()
                server.start()
                await sqs_transport.publish(other, b"y", key=None, headers={})
                url = (await client.get_queue_url(QueueName=queue_name(other)))["QueueUrl"]
                assert [m["Body"] for m in await raw_receive(client, url)] == ["y"]

        run(scenario)


def test_a_handler_outliving_the_drain_settles_quietly_and_its_message_returns(sqs, topic, caplog):
    app = App()
    app.enable_health_checks()
    broker = Broker(url_of(sqs), drain_timeout=0.5, **QUICK)
    app.include_broker(broker)
    release = asyncio.Event()
    seen: list[int] = []

    @broker.subscriber(topic, group="slow")
    async def slow(message: Message) -> None:
        seen.append(message.attempt)
        await release.wait()  # outlives the drain timeout

    async def scenario() -> None:
        async with AsyncTestClient(app, real_brokers=True) as client:
            assert (await client.get("/health/ready")).status_code == 200
            await broker.publish(topic, {"n": 1})
            await until(lambda: len(seen) == 1, what="the delivery")
        release.set()  # its ack now comes after the transport closed: dropped quietly, redelivered by SQS
        await asyncio.sleep(0.1)
        assert seen == [1]
        assert not [r for r in caplog.records if r.name.startswith("cello.messaging.sqs") and r.levelno >= 30]
        got: list[int] = []
        async with transport(url_of(sqs)) as sqs_transport:

            async def handler(delivery: Delivery) -> None:
                got.append(delivery.redelivered)
                await delivery.settle("ack")

            consumer = await sqs_transport.consume(topic, "slow", handler, prefetch=1)
            await until(lambda: got == [1], timeout=15, what="the redelivery")
            await consumer.stop()

    run(scenario)
