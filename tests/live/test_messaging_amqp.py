"""The AMQP adapter against RabbitMQ: its options, the topology it declares (one durable direct exchange, a durable
queue per topic and group), how Cello's headers and key travel as AMQP headers and properties, quorum queues
counting redeliveries, single active consumers, request/reply over direct reply-to, and recovery — after RabbitMQ
closes the connection (``rabbitmqctl close_connection`` on the shared broker) and after a RabbitMQ node of the
test's own is killed and started again.

Everything is created under unique names (an exchange per test) and deleted afterwards; the shared RabbitMQ on
127.0.0.1:5672 is never reconfigured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import msgspec
import pytest
from _live import Certs

from _helpers import require_program, require_service
from cello import App, ConfigurationError
from cello.messaging import Broker, BrokerUnavailable, Message, RequestFailed
from cello.messaging.amqp import AmqpTransport, queue_name
from cello.messaging.message import Delivery
from cello.testing import AsyncTestClient, free_port

pytestmark = [pytest.mark.live, pytest.mark.services, pytest.mark.timeout(120)]

URL = "amqp://guest:guest@127.0.0.1:5672/"


class Order(msgspec.Struct):
    item: str
    qty: int


created: list[str] = []  # queues the running test declared, deleted by the ``exchange`` fixture


@pytest.fixture
def rabbitmq() -> str:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    return URL


@pytest.fixture
async def exchange(rabbitmq: str) -> AsyncIterator[str]:
    """A unique exchange name; afterwards the exchange and every queue bound to it are deleted."""
    name = f"cello-test-{uuid.uuid4().hex[:10]}"
    created.clear()
    yield name
    connection = await aio_pika.connect(rabbitmq)
    try:
        for queue in created:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue)
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.close()
        channel = await connection.channel()
        await channel.exchange_delete(name)
    finally:
        await connection.close()


def topic_for(what: str) -> str:
    return f"cello-test.{what}.{uuid.uuid4().hex[:8]}"


def queue_of(topic: str, group: str) -> str:
    name = queue_name(topic, group)
    created.append(name)
    return name


async def until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)


class Inbox:
    """A transport-level handler that keeps its deliveries and settles each as ``decide`` says."""

    def __init__(self, decide: Callable[[Delivery], str] = lambda delivery: "ack") -> None:
        self.deliveries: list[Delivery] = []
        self.decide = decide

    async def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        await delivery.settle(self.decide(delivery))


# -- options and names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"prefetch": 3}, "unknown amqp:// option"),
        ({"queue_type": "stream"}, "queue_type"),
        ({"exchange": ""}, "exchange"),
        ({"exchange": "amq.direct"}, "exchange"),
        ({"exchange": "x" * 256}, "at most 255 bytes"),
        ({"single_active_consumer": "yes"}, "single_active_consumer"),
        ({"declare": ["orders"]}, "declare"),
        ({"declare": {"orders": "billing"}}, "declare"),
        ({"declare": {"orders": [""]}}, "declare"),
        ({"reconnect_interval": 0}, "reconnect_interval"),
        ({"connect_timeout": -1}, "connect_timeout"),
        ({"publish_timeout": True}, "publish_timeout"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        Broker(URL, **options)


def test_urls() -> None:
    assert Broker("amqps://user:secret@rabbit.example:5671/prod").transport.scheme == "amqps"
    with pytest.raises(ConfigurationError, match="amqp://user:pass@host"):
        AmqpTransport("amqp:///vhost")


def test_queue_names() -> None:
    assert queue_name("orders", "billing") == "orders.billing"
    long_topic, group = "ö" * 200, "billing-" + "g" * 100
    name = queue_name(long_topic, group)
    assert len(name.encode()) <= 255
    assert name.startswith("ö" * 100) and re.search(r"~[0-9a-f]{16}$", name)
    assert queue_name(long_topic, group + "2") != name  # still one queue per (topic, group)
    assert queue_name(long_topic, group) == name  # and the same in every process


async def test_a_topic_over_255_bytes_is_refused(exchange: str) -> None:
    transport = AmqpTransport(URL, exchange=exchange)
    await transport.connect()
    try:
        with pytest.raises(ConfigurationError, match="255 bytes"):
            await transport.publish("t" * 256, b"", key=None, headers={})
    finally:
        await transport.close()


# -- topology and message mapping ------------------------------------------------------------------------------


async def test_topology_headers_key_and_properties(rabbitmq: str, exchange: str) -> None:
    topic = topic_for("topology")
    transport = AmqpTransport(rabbitmq, exchange=exchange)
    await transport.connect()
    inbox = Inbox()
    raw = await aio_pika.connect(rabbitmq)
    try:
        consumer = await transport.consume(topic, "billing", inbox, prefetch=4)
        # what other AMQP clients see: a durable direct exchange, the group's durable queue bound by the topic
        channel = await raw.channel()
        await channel.declare_exchange(exchange, aio_pika.ExchangeType.DIRECT, durable=True, passive=True)
        spy = await channel.declare_queue(queue_of(topic + ".spy", "x"), durable=True)
        await spy.bind(exchange, routing_key=topic)
        declared = await channel.declare_queue(queue_of(topic, "billing"), passive=True)
        assert declared.declaration_result.consumer_count == 1

        headers = {"content-type": "application/json", "x-message-id": "m-1", "x-correlation-id": "c-1",
                   "x-tenant": "acme"}  # fmt: skip
        await transport.publish(topic, b'{"a": 1}', key="customer-7", headers=headers)
        await until(lambda: len(inbox.deliveries) == 1, what="the delivery")
        delivery = inbox.deliveries[0]
        assert (delivery.topic, delivery.body, delivery.key, delivery.headers) == (topic, b'{"a": 1}', "customer-7",
                                                                                   headers)  # fmt: skip
        assert delivery.redelivered == 0
        assert delivery.meta["exchange"] == exchange and delivery.meta["routing_key"] == topic
        assert delivery.meta["redelivered"] is False and isinstance(delivery.meta["delivery_tag"], int)

        seen = await spy.get(timeout=5)
        assert seen.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert (seen.content_type, seen.message_id, seen.correlation_id) == ("application/json", "m-1", "c-1")
        assert seen.headers["x-cello-key"] == "customer-7" and seen.headers["x-tenant"] == "acme"
        await seen.ack()
        await consumer.stop()
    finally:
        await raw.close()
        await transport.close()


async def test_a_message_from_another_client_gets_its_headers_from_properties(rabbitmq: str, exchange: str) -> None:
    topic = topic_for("foreign")
    transport = AmqpTransport(rabbitmq, exchange=exchange)
    await transport.connect()
    inbox = Inbox()
    raw = await aio_pika.connect(rabbitmq)
    try:
        queue_of(topic, "g")
        consumer = await transport.consume(topic, "g", inbox, prefetch=1)
        channel = await raw.channel()
        target = await channel.get_exchange(exchange)
        message = aio_pika.Message(b"hi", content_type="text/plain", message_id="m-9", correlation_id="c-9",
                                   headers={"X-Count": 3, "X-Flag": True, "X-Raw": bytearray(b"bytes"),
                                            "x-nested": {"a": 1}, "x-list": [1, 2]})  # fmt: skip
        await target.publish(message, routing_key=topic)
        await until(lambda: len(inbox.deliveries) == 1, what="the delivery")
        assert inbox.deliveries[0].key is None
        assert inbox.deliveries[0].headers == {"content-type": "text/plain", "x-message-id": "m-9",
                                               "x-correlation-id": "c-9", "x-count": "3", "x-flag": "true",
                                               "x-raw": "bytes"}  # fmt: skip
        await consumer.stop()
    finally:
        await raw.close()
        await transport.close()


async def test_publishing_to_a_topic_without_queues_drops_unless_declared(rabbitmq: str, exchange: str) -> None:
    dropped, kept = topic_for("dropped"), topic_for("kept")
    transport = AmqpTransport(rabbitmq, exchange=exchange, declare={kept: ["billing"]})
    await transport.connect()
    queue_of(dropped, "billing"), queue_of(kept, "billing")
    try:
        await transport.publish(dropped, b"lost", key=None, headers={})  # no queue is bound: the exchange drops it
        await transport.publish(kept, b"waits", key=None, headers={})  # its queue was declared at connect
        late, declared = Inbox(), Inbox()
        consumers = [await transport.consume(dropped, "billing", late, prefetch=1),
                     await transport.consume(kept, "billing", declared, prefetch=1)]  # fmt: skip
        await until(lambda: len(declared.deliveries) == 1, what="the declared queue's message")
        await asyncio.sleep(0.5)
        assert declared.deliveries[0].body == b"waits"
        assert late.deliveries == []
        await transport.publish(dropped, b"now", key=None, headers={})  # the queue exists now
        await until(lambda: len(late.deliveries) == 1, what="the message after the queue exists")
        for consumer in consumers:
            await consumer.stop()
    finally:
        await transport.close()


async def test_reject_drops_and_nack_requeues(rabbitmq: str, exchange: str) -> None:
    topic = topic_for("settle")
    transport = AmqpTransport(rabbitmq, exchange=exchange)
    await transport.connect()
    queue_of(topic, "g")
    outcomes = {b"nack": ["nack", "ack"], b"reject": ["reject"]}
    inbox = Inbox(lambda delivery: outcomes[delivery.body].pop(0))
    try:
        consumer = await transport.consume(topic, "g", inbox, prefetch=2)
        await transport.publish(topic, b"reject", key=None, headers={})
        await transport.publish(topic, b"nack", key=None, headers={})
        await until(lambda: len(inbox.deliveries) == 3, what="the redelivery")
        await asyncio.sleep(0.5)  # the rejected one does not come back
        assert sorted((d.body, d.redelivered) for d in inbox.deliveries) == [(b"nack", 0), (b"nack", 1),
                                                                              (b"reject", 0)]  # fmt: skip
        await consumer.stop()
    finally:
        await transport.close()


async def test_acks_go_out_together_never_for_an_unsettled_delivery(
    rabbitmq: str, exchange: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Handlers finishing out of order with acks, nacks and rejects mixed: the acks go out several per
    ``basic.ack``, none acks a delivery still under way or nacked after it (RabbitMQ would close the channel on a
    nack of an acked tag, and every unsettled message would come again), and stop() sends the last ones."""
    import aiormq

    topic = topic_for("acks")
    queue = queue_of(topic, "g")
    frames: list[bool] = []  # the ``multiple`` flag of each basic.ack sent
    basic_ack = aiormq.Channel.basic_ack

    async def counted(self: aiormq.Channel, delivery_tag: int, multiple: bool = False, wait: bool = True) -> None:
        frames.append(multiple)
        await basic_ack(self, delivery_tag, multiple=multiple, wait=wait)

    monkeypatch.setattr(aiormq.Channel, "basic_ack", counted)
    count = 300
    seen: list[tuple[int, int]] = []  # (message, redelivered)

    async def handle(delivery: Delivery) -> None:
        n = int(delivery.body)
        seen.append((n, delivery.redelivered))
        await asyncio.sleep((n * 7919 % 13) / 1000)  # finish out of delivery order
        if n % 11 == 0:
            await delivery.settle("reject")
        elif n % 7 == 0 and not delivery.redelivered:
            await delivery.settle("nack")
        else:
            await delivery.settle("ack")

    transport = AmqpTransport(rabbitmq, exchange=exchange, declare={topic: ["g"]})
    await transport.connect()
    try:
        consumer = await transport.consume(topic, "g", handle, prefetch=32)
        await asyncio.gather(*(transport.publish(topic, str(n).encode(), key=None, headers={}) for n in range(count)))
        nacked = [n for n in range(count) if n % 7 == 0 and n % 11 != 0]
        await until(lambda: len(seen) == count + len(nacked), what="every message and the nacked ones again")
        await asyncio.sleep(0.3)
        await consumer.stop()
        # nothing came again but the nacked ones: the channel was never closed under the consumer
        assert sorted(seen) == sorted([(n, 0) for n in range(count)] + [(n, 1) for n in nacked])
        acked = count - len([n for n in range(count) if n % 11 == 0])
        assert any(frames) and len(frames) < acked  # several acks per basic.ack
        channel = await transport.connection.channel()  # type: ignore[union-attr]
        left = await channel.declare_queue(queue, passive=True)
        assert left.declaration_result.message_count == 0  # every ack was out before the channel closed
    finally:
        await transport.close()


async def test_an_existing_queue_with_other_arguments_is_a_configuration_error(rabbitmq: str, exchange: str) -> None:
    topic = topic_for("mismatch")
    queue_of(topic, "g")
    classic = AmqpTransport(rabbitmq, exchange=exchange)
    quorum = AmqpTransport(rabbitmq, exchange=exchange, queue_type="quorum")
    await classic.connect()
    await quorum.connect()
    try:
        consumer = await classic.consume(topic, "g", Inbox(), prefetch=1)
        with pytest.raises(ConfigurationError, match="queue_type"):
            await quorum.consume(topic, "g", Inbox(), prefetch=1)
        await consumer.stop()
    finally:
        await quorum.close()
        await classic.close()


# -- queue arguments -------------------------------------------------------------------------------------------


async def test_a_quorum_queue_counts_redeliveries(rabbitmq: str, exchange: str) -> None:
    topic = topic_for("quorum")
    queue_of(topic, "payments")
    app = App()
    broker = Broker(rabbitmq, exchange=exchange, queue_type="quorum")
    app.include_broker(broker)
    attempts: list[tuple[int, Any]] = []

    @broker.subscriber(topic, group="payments", ack="manual")
    async def pay(order: Order, message: Message) -> None:
        attempts.append((message.attempt, message.header("x-delivery-count")))
        if len(attempts) < 3:
            await message.nack()
        else:
            await message.ack()

    async with AsyncTestClient(app, real_brokers=True):
        await broker.publish(topic, Order("pen", 1))
        await until(lambda: len(attempts) == 3, what="two redeliveries")
        await asyncio.sleep(0.3)
    # RabbitMQ's own count of the earlier deliveries, not merely its redelivered flag
    assert attempts == [(1, None), (2, "1"), (3, "2")]


async def test_a_single_active_consumer_takes_everything_until_it_stops(rabbitmq: str, exchange: str) -> None:
    topic = topic_for("sac")
    queue_of(topic, "ledger")
    # two connections stand for two worker processes of one group
    first = AmqpTransport(rabbitmq, exchange=exchange, single_active_consumer=True)
    second = AmqpTransport(rabbitmq, exchange=exchange, single_active_consumer=True)
    await first.connect()
    await second.connect()
    one, two = Inbox(), Inbox()
    try:
        active = await first.consume(topic, "ledger", one, prefetch=8)
        standby = await second.consume(topic, "ledger", two, prefetch=8)
        for n in range(20):
            await first.publish(topic, str(n).encode(), key=None, headers={})
        await until(lambda: len(one.deliveries) == 20, what="the active consumer's messages")
        assert [int(d.body) for d in one.deliveries] == list(range(20)) and two.deliveries == []

        await active.stop()  # the standby takes over
        for n in range(20, 30):
            await first.publish(topic, str(n).encode(), key=None, headers={})
        await until(lambda: len(two.deliveries) == 10, what="the standby's messages")
        assert [int(d.body) for d in two.deliveries] == list(range(20, 30))
        await standby.stop()
    finally:
        await second.close()
        await first.close()


# -- request / reply -------------------------------------------------------------------------------------------


async def test_request_reply(rabbitmq: str, exchange: str) -> None:
    add, fail, nobody = topic_for("rpc.add"), topic_for("rpc.fail"), topic_for("rpc.nobody")
    queue_of(add, "adder"), queue_of(fail, "failer")
    app = App()
    broker = Broker(rabbitmq, exchange=exchange)
    app.include_broker(broker)
    seen: list[Message] = []

    @broker.subscriber(add, group="adder", concurrency=4)
    async def adder(numbers: dict[str, int], message: Message) -> dict[str, int]:
        seen.append(message)
        return {"sum": numbers["a"] + numbers["b"]}

    @broker.subscriber(fail, group="failer", retries=1, backoff=lambda attempt: 0.01)
    async def failer(numbers: dict[str, int]) -> None:
        raise ValueError("cannot add")

    async with AsyncTestClient(app, real_brokers=True):
        assert await broker.request(add, {"a": 2, "b": 3}, timeout=2) == {"sum": 5}
        answers = await asyncio.gather(*(broker.request(add, {"a": n, "b": n}, timeout=5) for n in range(10)))
        assert answers == [{"sum": 2 * n} for n in range(10)]
        assert seen[0].meta["routing_key"] == add
        with pytest.raises(RequestFailed, match="ValueError: cannot add"):
            await broker.request(fail, {"a": 1, "b": 1}, timeout=2)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await broker.request(nobody, {"a": 1, "b": 1}, timeout=0.5)
        assert time.monotonic() - started < 2


# -- stopping --------------------------------------------------------------------------------------------------


async def test_stop_waits_for_handlers_and_hands_back_the_rest(rabbitmq: str, exchange: str) -> None:
    topic = topic_for("drain")
    queue_of(topic, "g")
    transport = AmqpTransport(rabbitmq, exchange=exchange)
    await transport.connect()
    finished: list[bytes] = []
    release = asyncio.Event()

    async def slow(delivery: Delivery) -> None:
        await release.wait()
        finished.append(delivery.body)
        await delivery.settle("ack")

    try:
        consumer = await transport.consume(topic, "g", slow, prefetch=2)
        for n in range(6):
            await transport.publish(topic, str(n).encode(), key=None, headers={})
        await asyncio.sleep(0.3)
        stopping = asyncio.create_task(consumer.stop())
        await asyncio.sleep(0.3)
        assert not stopping.done()  # waiting for the two handlers under way
        release.set()
        await asyncio.wait_for(stopping, 5)
        assert sorted(finished) == [b"0", b"1"]  # prefetch 2: only those were handed over

        rest = Inbox()
        later = await transport.consume(topic, "g", rest, prefetch=10)
        await until(lambda: len(rest.deliveries) == 4, what="the rest")
        assert sorted(d.body for d in rest.deliveries) == [b"2", b"3", b"4", b"5"]
        await later.stop()
    finally:
        await transport.close()


async def test_settling_after_close_is_dropped_and_the_message_comes_again(rabbitmq: str, exchange: str) -> None:
    topic = topic_for("late")
    queue_of(topic, "g")
    transport = AmqpTransport(rabbitmq, exchange=exchange)
    await transport.connect()
    held: list[Delivery] = []

    async def hold(delivery: Delivery) -> None:
        held.append(delivery)
        await asyncio.sleep(3600)

    await transport.consume(topic, "g", hold, prefetch=1)
    await transport.publish(topic, b"x", key=None, headers={})
    await until(lambda: len(held) == 1, what="the delivery")
    await transport.close()  # a handler outlived the drain: the connection closes under it
    await held[0].settle("ack")  # no error: dropped

    again = AmqpTransport(rabbitmq, exchange=exchange)
    await again.connect()
    inbox = Inbox()
    try:
        consumer = await again.consume(topic, "g", inbox, prefetch=1)
        await until(lambda: len(inbox.deliveries) == 1, what="the redelivery")
        assert inbox.deliveries[0].redelivered == 1
        await consumer.stop()
    finally:
        await again.close()


# -- recovery --------------------------------------------------------------------------------------------------


def rabbitmqctl(*arguments: str) -> str:
    program = require_program("rabbitmqctl", shutil.which("rabbitmqctl"))
    done = subprocess.run([program, *arguments], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.skip(f"rabbitmqctl {arguments[0]} cannot run here: {done.stderr.strip()[:200]}")
    return done.stdout


def connection_pid(name: str) -> str | None:
    """RabbitMQ's id of the connection whose client called itself ``name``."""
    for line in rabbitmqctl("list_connections", "-q", "--no-table-headers", "pid", "client_properties").splitlines():
        if f'"{name}"' in line:
            return line.split("\t")[0]
    return None


async def test_the_subscriber_resumes_after_rabbitmq_closes_the_connection(rabbitmq: str, exchange: str) -> None:
    topic, rpc = topic_for("recover"), topic_for("recover.rpc")
    queue_of(topic, "g"), queue_of(rpc, "r")
    name = f"cello-test-{uuid.uuid4().hex}"
    app = App()
    broker = Broker(f"{rabbitmq}?name={name}", exchange=exchange, reconnect_interval=1.0)
    app.include_broker(broker)
    got: list[int] = []

    @broker.subscriber(topic, group="g", concurrency=2)
    async def take(order: Order) -> None:
        got.append(order.qty)

    @broker.subscriber(rpc, group="r")
    async def double(order: Order) -> int:
        return order.qty * 2

    async with AsyncTestClient(app, real_brokers=True):
        await broker.publish(topic, Order("pen", 1))
        await until(lambda: got == [1], what="the first message")
        assert await broker.ping()

        before = await asyncio.to_thread(connection_pid, name)
        assert before is not None
        await asyncio.to_thread(rabbitmqctl, "close_connection", before, "closed by the Cello test suite")
        # a new connection of the same name: aio-pika reconnected (at once: its reconnect interval had passed)
        deadline = time.monotonic() + 20
        while await asyncio.to_thread(connection_pid, name) in (None, before):
            assert time.monotonic() < deadline, "no new connection"
            await asyncio.sleep(0.2)
        await until_async(broker.ping, what="the reconnect")
        for n in range(2, 6):
            await broker.publish(topic, Order("pen", n))
        # at least once: the first message comes again if its ack was still on its way when the connection closed
        await until(lambda: set(got) == {1, 2, 3, 4, 5}, what="the messages after the reconnect")
        assert await broker.request(rpc, Order("pen", 21), timeout=5) == 42  # the reply consumer came back too


async def until_async(check: Callable[[], Any], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


class RabbitNode:
    """A RabbitMQ node of the test's own: its own node name, ports, data and config under ``directory`` (so it
    shares nothing with the machine's RabbitMQ); killed for real (SIGKILL) and started again on its data."""

    def __init__(self, directory: Path, tls: Certs | None = None) -> None:
        self.program = require_program("rabbitmq-server", _rabbitmq_server())
        self.directory = directory
        self.port = free_port()
        self.name = f"cello-test-{uuid.uuid4().hex[:8]}@localhost"
        if tls is None:
            self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
            config = f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
        else:  # TLS only: the plain listener is off
            self.url = f"amqps://guest:guest@127.0.0.1:{self.port}/?cafile={tls.ca}"
            config = (f"listeners.tcp = none\nlisteners.ssl.1 = 127.0.0.1:{self.port}\n"
                      f"ssl_options.cacertfile = {tls.ca}\nssl_options.certfile = {tls.cert}\n"
                      f"ssl_options.keyfile = {tls.key}\nssl_options.verify = verify_none\n"
                      "ssl_options.fail_if_no_peer_cert = false\n")  # fmt: skip
        (directory / "rabbitmq.conf").write_text(config)
        (directory / "enabled_plugins").write_text("[].\n")
        self.env = {
            **os.environ,
            "HOME": str(directory),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_BASE": str(directory),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(directory / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(directory / "rabbitmq.pid"),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.directory / "server.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen([self.program], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True, cwd=self.directory)  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {(self.directory / 'server.log').read_text()[-2000:]}")
            if self._listening():
                return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("rabbitmq-server did not listen in time")

    def kill(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.process = None
        # NOTE: the Erlang VM is the script's child: it is gone once its port refuses and epmd has dropped its
        # name (a node started again before then would find both taken)
        deadline = time.monotonic() + 15
        while self._listening() or self._registered():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the RabbitMQ node {self.name} did not go away")
            time.sleep(0.05)

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def _registered(self) -> bool:
        epmd = shutil.which("epmd")
        if epmd is None:
            return False
        names = subprocess.run([epmd, "-names"], capture_output=True, text=True, timeout=10).stdout
        return f"name {self.name.partition('@')[0]} " in names


def _rabbitmq_server() -> str | None:
    # NOTE: the server script itself, not the packaged wrapper (which switches to the rabbitmq user and the
    # machine's log directory)
    for path in ("/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/local/lib/rabbitmq/sbin/rabbitmq-server"):
        if os.access(path, os.X_OK):
            return path
    return shutil.which("rabbitmq-server")


@pytest.fixture
def rabbit_node(tmp_path: Path) -> Iterator[RabbitNode]:
    node = RabbitNode(tmp_path)
    node.start()
    try:
        yield node
    finally:
        node.kill()


@pytest.mark.timeout(180)
async def test_the_broker_goes_away_and_comes_back(rabbit_node: RabbitNode) -> None:
    topic = topic_for("outage")
    app = App()
    app.enable_health_checks()
    # NOTE: a classic queue: a single node's quorum queue may wait for its leader election well after a restart
    broker = Broker(rabbit_node.url, reconnect_interval=0.5, publish_timeout=10.0)
    app.include_broker(broker)
    got: list[int] = []

    @broker.subscriber(topic, group="g", concurrency=2)
    async def take(order: Order) -> None:
        got.append(order.qty)

    async with AsyncTestClient(app, real_brokers=True) as client:
        await broker.publish(topic, Order("pen", 1))
        await until(lambda: got == [1], what="the first message")
        assert (await client.get("/health/ready")).status_code == 200

        await asyncio.to_thread(rabbit_node.kill)
        await until_async(lambda: _not(broker.ping), what="ping to fail")
        assert (await client.get("/health/ready")).status_code == 503
        transport = broker.transport
        assert isinstance(transport, AmqpTransport)
        transport.publish_timeout = 1.0  # (only to keep the test short)
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            await broker.publish(topic, Order("pen", 99))
        assert time.monotonic() - started < 3
        transport.publish_timeout = 10.0

        await asyncio.to_thread(rabbit_node.start)
        await until_async(broker.ping, timeout=60, what="the reconnect")
        assert (await client.get("/health/ready")).status_code == 200
        for n in range(2, 6):
            await broker.publish(topic, Order("pen", n))
        # the durable queue and the consumer came back: the subscriber handles what is published now
        # (at least once: the first comes again if its ack was still on its way when the node died)
        await until(lambda: set(got) == {1, 2, 3, 4, 5}, timeout=30, what="the messages after the restart")


async def _not(check: Callable[[], Any]) -> bool:
    return not await check()


async def test_amqps(tmp_path: Path, certs: Certs) -> None:
    node = RabbitNode(tmp_path, tls=certs)
    await asyncio.to_thread(node.start)
    try:
        topic = topic_for("tls")
        app = App()
        broker = Broker(node.url)
        app.include_broker(broker)
        got: list[Order] = []

        @broker.subscriber(topic, group="g")
        async def take(order: Order) -> None:
            got.append(order)

        @broker.subscriber(topic + ".rpc", group="g")
        async def echo(order: Order) -> Order:
            return order

        assert broker.transport.scheme == "amqps"
        async with AsyncTestClient(app, real_brokers=True):
            await broker.publish(topic, Order("pen", 1))
            await until(lambda: got == [Order("pen", 1)], what="the message over TLS")
            assert await broker.request(topic + ".rpc", Order("ink", 2), timeout=5) == {"item": "ink", "qty": 2}
        # the certificate is checked: without the CA that signed it, no connection
        untrusted = AmqpTransport(node.url.partition("?")[0], connect_timeout=5)
        with pytest.raises(Exception, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            await untrusted.connect()
    finally:
        await asyncio.to_thread(node.kill)
