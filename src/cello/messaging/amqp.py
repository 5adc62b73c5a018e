"""``Broker("amqp://user:pass@host:5672/vhost")`` (and ``amqps://``): RabbitMQ through aio-pika.

Topology: one durable ``direct`` exchange (option ``exchange``, default ``"cello"``) takes every message, with the
topic as its routing key. Each consumer group of a topic is one durable queue, ``queue_name(topic, group)`` —
``"<topic>.<group>"`` — bound to the exchange with the topic as binding key: every group's queue gets its own copy
of each message, and the consumers of one queue (in this process, other workers, other machines) share its
messages. ``direct`` rather than ``topic``: a binding is always one exact topic, and a topic exchange would read
``*`` and ``#`` in a topic's name as wildcards (a topic called ``orders.#`` would take every ``orders.`` message).

A queue exists once a subscriber of its group has consumed, or once declared at connect with the ``declare``
option: a message published to a topic none of whose queues exists yet is dropped by the exchange, as AMQP routes
it. Publishing creates no queue.

Messages are persistent (delivery mode 2) and published with publisher confirms: ``publish`` returns once RabbitMQ
has taken the message. Cello's headers travel as AMQP headers, except ``content-type``, ``x-message-id`` and
``x-correlation-id``, which travel as the ``content_type``, ``message_id`` and ``correlation_id`` properties (what
other AMQP clients read, and a table entry less to encode and decode per message; a value over a property's 255
bytes stays a header). The key travels as the ``x-cello-key`` header.

Each consumer has its own channel with ``basic.qos(prefetch)``. ack is ``basic.ack`` (several at once: see
``_Acks``), nack is ``basic.nack`` with requeue (delivered again at once), reject is ``basic.reject`` without
requeue (dropped, or dead-lettered by the queue's own ``x-dead-letter-exchange`` policy if one is set on the
broker). ``Delivery.redelivered`` is the quorum queue's ``x-delivery-count`` header when there is one, else 1
when RabbitMQ's redelivered flag is set, else 0. A delivery not acked when its channel or connection closes (a
killed worker, a lost connection) goes back to its queue at once; RabbitMQ needs no redelivery timeout.

Request/reply uses RabbitMQ's direct reply-to: requests carry ``reply_to = amq.rabbitmq.reply-to`` and a fresh
``correlation_id``; the answer is published to the default exchange with the routing key ``reply_to``.

Options: ``exchange`` (``"cello"``), ``queue_type`` (``"classic"`` or ``"quorum"``), ``single_active_consumer``
(``False``; ``x-single-active-consumer``: one consumer of a queue at a time across processes, so strict order per
queue), ``declare`` (``{topic: [group, ...]}``: queues declared and bound at connect), ``reconnect_interval``
(1.0 s), ``connect_timeout`` (10.0 s), ``publish_timeout`` (10.0 s, waiting for a reconnect included). aio-pika
reconnects by itself (``connect_robust``) and brings channels, queues and consumers back. URL query parameters of
aio-pika pass through: ``heartbeat``, ``name`` (the connection's name in RabbitMQ), ``cafile``, ``certfile``,
``keyfile``, ``no_verify_ssl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import decimal
import hashlib
import logging
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import aio_pika
import aiormq.abc
import aiormq.exceptions
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustExchange,
    AbstractRobustQueue,
    DeliveryMode,
    ExchangeType,
)
from yarl import URL

from ..http.exceptions import ConfigurationError
from .broker import BrokerUnavailable
from .message import Delivery, Reply
from .transport import Consumer, Handler, Transport, refill_at

__all__ = ["AmqpTransport", "queue_name"]

logger = logging.getLogger("cello.messaging.amqp")

KEY_HEADER = "x-cello-key"
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
NAME_LIMIT = 255  # bytes: AMQP's short strings (queue names, routing keys, properties)
QUEUE_TYPES = ("classic", "quorum")
# what RabbitMQ says when a queue or exchange exists with other settings than declared
DECLARE_ERRORS = (aiormq.exceptions.ChannelPreconditionFailed, aiormq.exceptions.ChannelAccessRefused)
# what settling, cancelling or closing raises once the channel or connection is gone
GONE = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError, ConnectionError)
ACK_DELAY = 0.002  # seconds an ack may wait for others to go out with (see _Acks)


def queue_name(topic: str, group: str) -> str:
    """The queue of ``group`` on ``topic``: ``"<topic>.<group>"``; a name over AMQP's 255 bytes keeps its first
    238 bytes and ends with ``~`` and 16 hex digits of a hash of both names, so it stays unique."""
    name = f"{topic}.{group}"
    encoded = name.encode()
    if len(encoded) <= NAME_LIMIT:
        return name
    digest = hashlib.sha256(f"{topic}\0{group}".encode()).hexdigest()[:16]
    return encoded[: NAME_LIMIT - len(digest) - 1].decode(errors="ignore") + "~" + digest


class AmqpTransport(Transport):
    """RabbitMQ (see the module)."""

    scheme = "amqp"
    supports_request = True

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "cello",
        queue_type: str = "classic",
        single_active_consumer: bool = False,
        declare: Mapping[str, Sequence[str]] | None = None,
        reconnect_interval: float = 1.0,
        connect_timeout: float = 10.0,
        publish_timeout: float = 10.0,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ConfigurationError(
                f"unknown amqp:// option(s) {', '.join(sorted(unknown))}; known: exchange, queue_type, "
                "single_active_consumer, declare, reconnect_interval, connect_timeout, publish_timeout"
            )
        self.url = URL(url)
        if self.url.scheme not in ("amqp", "amqps") or not self.url.host:
            raise ConfigurationError(f"an AMQP broker URL is amqp://user:pass@host:port/vhost, not {url!r}")
        self.scheme = self.url.scheme
        if not isinstance(exchange, str) or not exchange or exchange.startswith("amq."):
            raise ConfigurationError(f"exchange is a name not starting with 'amq.', not {exchange!r}")
        _check_name("exchange", exchange)
        if queue_type not in QUEUE_TYPES:
            raise ConfigurationError(f"queue_type is 'classic' or 'quorum', not {queue_type!r}")
        if not isinstance(single_active_consumer, bool):
            raise ConfigurationError(f"single_active_consumer is True or False, not {single_active_consumer!r}")
        for name, value in (("reconnect_interval", reconnect_interval), ("connect_timeout", connect_timeout),
                            ("publish_timeout", publish_timeout)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigurationError(f"{name} is a number of seconds above 0, not {value!r}")
        self.exchange_name = exchange
        self.queue_type = queue_type
        self.single_active_consumer = single_active_consumer
        self.declare = _declared_groups(declare)
        self.reconnect_interval = float(reconnect_interval)
        self.connect_timeout = float(connect_timeout)
        self.publish_timeout = float(publish_timeout)
        self.connection: aio_pika.RobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._exchange: AbstractRobustExchange | None = None
        self._requests: AbstractRobustExchange | None = None  # the exchange on the channel that takes replies
        self._pending: dict[str, tuple[str, asyncio.Future[Delivery]]] = {}  # correlation id -> (topic, answer)
        self._consumers: set[_AmqpConsumer] = set()

    # -- life ------------------------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self.connection is not None:  # an earlier attempt that failed half-way
            await self.close()
        name = self.url.query.get("name") or f"cello {socket.gethostname()} pid {os.getpid()}"
        connection = aio_pika.RobustConnection(
            self.url, client_properties={"connection_name": name}, reconnect_interval=self.reconnect_interval
        )
        self.connection = connection
        try:
            # NOTE: bounded here as well: a connect that times out inside aio-pika is retried there, not raised
            async with asyncio.timeout(self.connect_timeout + 1.0):
                await connection.connect(timeout=self.connect_timeout)
                self._publisher = connection.channel(publisher_confirms=True)
                await self._publisher.initialize()
                self._exchange = await self._declare_exchange(self._publisher)
                for topic, groups in self.declare.items():
                    for group in groups:
                        await self.declare_queue(topic, group)
                self._requests = await self._reply_channel(connection)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        connection, self.connection = self.connection, None
        self._publisher = self._exchange = self._requests = None
        for consumer in self._consumers:
            consumer.stopping = True  # deliveries still arriving are not handed over any more
        self._consumers.clear()
        for _, answer in self._pending.values():
            if not answer.done():
                answer.set_exception(BrokerUnavailable("the AMQP connection was closed before the reply came"))
        self._pending.clear()
        if connection is not None:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await connection.close()
            except (TimeoutError, *GONE) as exc:
                logger.debug("closing the AMQP connection: %r", exc)

    async def ping(self) -> bool:
        connection = self.connection
        return (
            connection is not None
            and connection.connected.is_set()
            and not connection.is_closed
            and self._publisher is not None
            and not self._publisher.is_closed
        )

    def describe(self) -> dict[str, Any]:
        return {"protocol": self.scheme, "protocolVersion": "0.9.1"}

    # -- topology --------------------------------------------------------------------------------------------

    async def _declare_exchange(self, channel: AbstractRobustChannel) -> AbstractRobustExchange:
        try:
            return await channel.declare_exchange(self.exchange_name, ExchangeType.DIRECT, durable=True)
        except DECLARE_ERRORS as exc:
            raise ConfigurationError(
                f"RabbitMQ refused the exchange {self.exchange_name!r} (it must be a durable direct exchange): {exc}"
            ) from exc

    def queue_arguments(self) -> dict[str, Any]:
        """The ``x-`` arguments every group queue is declared with (the options ``queue_type`` and
        ``single_active_consumer``)."""
        arguments: dict[str, Any] = {"x-queue-type": self.queue_type}
        if self.single_active_consumer:
            arguments["x-single-active-consumer"] = True
        return arguments

    async def declare_queue(
        self, topic: str, group: str, channel: AbstractRobustChannel | None = None
    ) -> AbstractRobustQueue:
        """Declare ``group``'s durable queue on ``topic`` and bind it, so the topic's messages wait there until
        the group consumes (the ``declare`` option does this at connect)."""
        _check_name("topic", topic)
        channel = channel or self._publisher
        if channel is None:
            raise BrokerUnavailable("the AMQP broker is not connected")
        name = queue_name(topic, group)
        try:
            exchange = await self._declare_exchange(channel)
            queue = await channel.declare_queue(name, durable=True, arguments=self.queue_arguments())
            await queue.bind(exchange, routing_key=topic)
        except DECLARE_ERRORS as exc:
            raise ConfigurationError(
                f"RabbitMQ refused the queue {name!r} of group {group!r} on {topic!r}: {exc}. A queue keeps the "
                "arguments it was first declared with: delete it, or use the same queue_type and "
                "single_active_consumer"
            ) from exc
        return queue

    async def _reply_channel(self, connection: aio_pika.RobustConnection) -> AbstractRobustExchange:
        """The channel requests are published on: it consumes the direct reply-to pseudo-queue (no-ack, as
        RabbitMQ requires) before anything is published, and aio-pika restores that consumer on reconnect."""
        channel = connection.channel(publisher_confirms=True)
        await channel.initialize()
        replies = await channel.declare_queue(DIRECT_REPLY_TO, passive=True)
        await replies.consume(self._on_reply, no_ack=True)
        return await self._declare_exchange(channel)

    # -- publishing ------------------------------------------------------------------------------------------

    async def publish(self, topic: str, body: bytes, *, key: str | None, headers: Mapping[str, str]) -> None:
        _check_name("topic", topic)
        await self._publish(self._exchange, topic, _outgoing(body, key, headers))

    async def _publish(self, exchange: AbstractExchange | None, routing_key: str, message: aio_pika.Message) -> None:
        connection = self.connection
        if exchange is None or connection is None:
            raise BrokerUnavailable("the AMQP broker is not connected")
        try:
            async with asyncio.timeout(self.publish_timeout):
                while True:
                    try:
                        await exchange.publish(message, routing_key=routing_key)
                        return
                    except aiormq.exceptions.ChannelInvalidStateError:
                        # NOTE: raised before anything is sent, while aio-pika reopens the channel after a lost
                        # connection: publishing again once it is back cannot duplicate the message
                        await asyncio.sleep(0.05)
        except TimeoutError:
            if not connection.connected.is_set():
                raise BrokerUnavailable(
                    f"the AMQP broker has not answered for {self.publish_timeout:.0f} s (reconnecting)"
                ) from None
            raise
        except aiormq.exceptions.AMQPConnectionError as exc:
            raise BrokerUnavailable(
                f"the AMQP connection was lost while publishing to {routing_key!r}; RabbitMQ may or may not have "
                f"taken the message: {exc!r}"
            ) from exc

    async def request(self, topic: str, body: bytes, *, headers: Mapping[str, str], timeout: float) -> Delivery:
        _check_name("topic", topic)
        token = uuid.uuid4().hex
        answer: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        self._pending[token] = (topic, answer)
        # NOTE: not persistent, and expiring in its queue when nobody took it within the caller's patience rather
        # than being answered to no one later
        message = _outgoing(body, None, headers, reply_to=DIRECT_REPLY_TO, correlation_id=token, persistent=False)
        message.expiration = datetime.timedelta(seconds=timeout)
        try:
            async with asyncio.timeout(timeout):
                await self._publish(self._requests, topic, message)
                return await answer
        finally:
            self._pending.pop(token, None)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        pending = self._pending.get(message.correlation_id or "")
        if pending is None:
            return  # the answer to a request that timed out already
        topic, answer = pending
        if not answer.done():
            headers, _ = _incoming_headers(message)
            answer.set_result(Delivery(topic, message.body, headers, None, _nothing_to_settle,
                                       meta=_meta(message)))  # fmt: skip

    def _replier(self, message: AbstractIncomingMessage) -> Reply | None:
        """What answers ``message`` when it is a request: publish to its ``reply_to`` through the default
        exchange, with its correlation id."""
        reply_to, correlation_id = message.reply_to, message.correlation_id
        if not reply_to:
            return None

        async def reply(body: bytes, headers: Mapping[str, str]) -> None:
            publisher = self._publisher
            answer = _outgoing(body, None, headers, correlation_id=correlation_id, persistent=False)
            await self._publish(publisher.default_exchange if publisher else None, reply_to, answer)

        return reply

    # -- consuming -------------------------------------------------------------------------------------------

    async def consume(self, topic: str, group: str, handler: Handler, *, prefetch: int) -> Consumer:
        connection = self.connection
        if connection is None:
            raise BrokerUnavailable("the AMQP broker is not connected")
        channel = connection.channel(publisher_confirms=False)
        consumer = _AmqpConsumer(self, topic, group, handler, channel, prefetch)
        try:
            async with asyncio.timeout(self.connect_timeout):  # a broker gone meanwhile: fail, Broker tries again
                await channel.initialize()
                await channel.set_qos(prefetch_count=prefetch)
                consumer.queue = await self.declare_queue(topic, group, channel)
                consumer.tag = await consumer.queue.consume(consumer.on_message)
        except BaseException:
            if channel.is_initialized:
                with contextlib.suppress(*GONE):
                    await channel.close()
            raise
        self._consumers.add(consumer)
        return consumer


class _AmqpConsumer(Consumer):
    """One group's queue consumed on a channel of its own; each delivery handed to the handler in its own task."""

    def __init__(
        self,
        transport: AmqpTransport,
        topic: str,
        group: str,
        handler: Handler,
        channel: AbstractRobustChannel,
        prefetch: int,
    ) -> None:
        self.transport = transport
        self.topic = topic
        self.group = group
        self.handler = handler
        self.channel = channel
        self.prefetch = prefetch
        self.queue: AbstractRobustQueue | None = None
        self.tag: str | None = None
        self.stopping = False
        self.handed: set[asyncio.Task[None]] = set()
        self.acks: _Acks | None = None  # of the channel the deliveries come on now

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        acks = self.acks
        if acks is None or acks.channel is not message.channel:  # the first delivery, or one after a reconnect
            acks = self.acks = _Acks(message.channel, refill_at(self.prefetch))
        tag = message.delivery_tag
        assert tag is not None  # a delivery always has one
        acks.unsettled[tag] = None
        if self.stopping:
            # sent before RabbitMQ took the basic.cancel: straight back to the queue for the group's others
            await acks.settle(message, "nack")
            return
        # NOTE: a task of ours, not aiormq's: a lost connection does not cancel a handler half-way (its settle is
        # dropped and the message comes again)
        task = asyncio.get_running_loop().create_task(self._hand_over(message, acks))
        self.handed.add(task)
        task.add_done_callback(self.handed.discard)

    async def _hand_over(self, message: AbstractIncomingMessage, acks: _Acks) -> None:
        settled = False

        async def settle(outcome: str) -> None:
            nonlocal settled
            if not settled:
                settled = True
                await acks.settle(message, outcome)

        headers, key = _incoming_headers(message)
        delivery = Delivery(self.topic, message.body, headers, key, settle, redelivered=_redelivered(message),
                            meta=_meta(message), reply=self.transport._replier(message))  # fmt: skip
        try:
            await self.handler(delivery)
        except Exception:
            logger.exception("message %s on %s (group %s) failed outside its handler; it comes again",
                             headers.get("x-message-id"), self.topic, self.group)  # fmt: skip
        finally:
            if not settled:  # the handler ended without settling (cancelled at shutdown, failed): back in the queue
                await settle("nack")

    async def stop(self) -> None:
        self.stopping = True
        connection = self.transport.connection
        if self.queue is not None and self.tag is not None:
            tag, self.tag = self.tag, None
            if connection is not None and connection.connected.is_set() and not self.channel.is_closed:
                try:
                    async with asyncio.timeout(5.0):
                        await self.queue.cancel(tag)  # basic.cancel: nothing more is sent to this consumer
                except (TimeoutError, *GONE) as exc:
                    logger.debug("cancelling the consumer of %s: %r", self.queue.name, exc)
        if self.handed:
            await asyncio.gather(*self.handed, return_exceptions=True)
        if self.acks is not None:
            await self.acks.flush()
        # NOTE: closing the channel hands back what it still holds unacked; a closed robust channel stays closed
        try:
            async with asyncio.timeout(5.0):
                await self.channel.close()
        except (TimeoutError, *GONE) as exc:
            logger.debug("closing the channel of %s: %r", self.queue.name if self.queue else self.topic, exc)
        self.transport._consumers.discard(self)


# -- messages --------------------------------------------------------------------------------------------------


def _outgoing(
    body: bytes,
    key: str | None,
    headers: Mapping[str, str],
    *,
    reply_to: str | None = None,
    correlation_id: str | None = None,
    persistent: bool = True,
) -> aio_pika.Message:
    """The AMQP message of Cello's bytes, headers and key; the three headers AMQP has properties for go there
    instead of the headers table (when they fit a property's 255 bytes): every AMQP client reads them there, and a
    table entry costs an encode and a decode per message (``_incoming_headers`` puts them back)."""
    content_type = _property(headers.get("content-type"))
    message_id = _property(headers.get("x-message-id"))
    correlation = _property(headers.get("x-correlation-id"))
    table: dict[str, Any] = dict(headers)
    # NOTE: a request's correlation_id property is its reply token: the header then stays in the table
    for name, carried in (("content-type", content_type), ("x-message-id", message_id),
                          ("x-correlation-id", correlation if correlation_id is None else None)):  # fmt: skip
        if carried is not None:
            del table[name]
    if key is not None:
        table[KEY_HEADER] = key
    return aio_pika.Message(
        body,
        headers=table or None,
        content_type=content_type,
        message_id=message_id,
        correlation_id=correlation_id or correlation,
        reply_to=reply_to,
        delivery_mode=DeliveryMode.PERSISTENT if persistent else DeliveryMode.NOT_PERSISTENT,
    )


def _property(value: str | None) -> str | None:
    return value if value is not None and len(value.encode()) <= NAME_LIMIT else None


def _incoming_headers(message: AbstractIncomingMessage) -> tuple[dict[str, str], str | None]:
    """Cello's lower-case ``str`` headers of an AMQP message, and its key: the AMQP headers (values as text;
    nested tables and arrays left out), completed from the properties."""
    headers: dict[str, str] = {}
    for name, value in (message.headers or {}).items():
        text = _text(value)
        if text is not None:
            headers[name.lower()] = text
    key = headers.pop(KEY_HEADER, None)
    for name, value in (("content-type", message.content_type), ("x-message-id", message.message_id),
                        ("x-correlation-id", message.correlation_id)):  # fmt: skip
        if value:
            headers.setdefault(name, value)
    return headers, key


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode(errors="replace")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, decimal.Decimal)):
        return str(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return None


def _redelivered(message: AbstractIncomingMessage) -> int:
    """Earlier deliveries: a quorum queue counts them (``x-delivery-count``); a classic one only flags them."""
    count = (message.headers or {}).get("x-delivery-count")
    if isinstance(count, int) and not isinstance(count, bool):
        return count
    return 1 if message.redelivered else 0


def _meta(message: AbstractIncomingMessage) -> dict[str, Any]:
    return {"delivery_tag": message.delivery_tag, "exchange": message.exchange, "routing_key": message.routing_key,
            "redelivered": bool(message.redelivered)}  # fmt: skip


class _Acks:
    """The settling of one AMQP channel's deliveries, with acks sent several in one ``basic.ack``.

    One ``basic.ack`` per message is a socket write each side, which costs more CPU than everything else a
    delivery takes (about half of a no-op handler's). So acks are gathered and sent as one ``basic.ack`` with
    ``multiple`` up to the highest of them below the lowest delivery still unsettled (``multiple`` acks every
    unsettled tag up to it, all of them settled by then), plus one ``basic.ack`` for each above it. They go out
    once no delivery of the channel is left unsettled (a quiet consumer acks at once), once half the prefetch is
    gathered (the broker sends more as soon as it reads them), and at the latest ``ACK_DELAY`` after the first:
    acks wait for at most that, handlers never. A message is never acked before its handler has finished; a
    nack or reject goes out at once, and its tag counts as unsettled until it has (a ``multiple`` ack sent
    before it would ack that message).
    """

    def __init__(self, channel: aiormq.abc.AbstractChannel, batch: int) -> None:
        self.channel = channel
        self.batch = batch
        self.unsettled: dict[int, None] = {}  # delivery tags handed over and not settled, in delivery order
        self.asked: list[int] = []  # acked by their handlers, not sent yet
        self.timer: asyncio.TimerHandle | None = None
        self.writing: set[asyncio.Task[None]] = set()

    async def settle(self, message: AbstractIncomingMessage, outcome: str) -> None:
        tag = message.delivery_tag
        assert tag is not None
        if outcome == "ack":
            self.unsettled.pop(tag, None)
            self.asked.append(tag)
            if not self.unsettled or len(self.asked) >= self.batch:
                self.send()
            elif self.timer is None:
                self.timer = asyncio.get_running_loop().call_later(ACK_DELAY, self.send)
            return
        try:
            if outcome == "nack":
                await message.nack(requeue=True)
            else:
                await message.reject(requeue=False)
        except GONE as exc:
            # the channel closed under the handler (lost connection, or shutdown past its drain timeout): RabbitMQ
            # has put the message back already
            logger.debug("%s of delivery %s dropped, its channel is closed: %r", outcome, tag, exc)
        finally:
            self.unsettled.pop(tag, None)

    def send(self) -> None:
        """Send the acks gathered so far."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.asked:
            return
        asked, self.asked = self.asked, []
        lowest = next(iter(self.unsettled), None)
        below = [tag for tag in asked if lowest is None or tag < lowest]
        above = [tag for tag in asked if lowest is not None and tag > lowest]
        frames = ([(max(below), True)] if below else []) + [(tag, False) for tag in above]
        task = asyncio.get_running_loop().create_task(self._write(frames))
        self.writing.add(task)
        task.add_done_callback(self.writing.discard)

    async def flush(self) -> None:
        """Send the acks gathered so far and wait until they are written."""
        self.send()
        if self.writing:
            await asyncio.gather(*self.writing, return_exceptions=True)

    async def _write(self, frames: list[tuple[int, bool]]) -> None:
        try:
            for tag, multiple in frames[:-1]:
                await self.channel.basic_ack(tag, multiple=multiple, wait=False)
            tag, multiple = frames[-1]
            await self.channel.basic_ack(tag, multiple=multiple)  # written in order: all of them are out
        except GONE as exc:
            # as for a nack: RabbitMQ has put them back, they come again
            logger.debug("acks up to delivery %s dropped, their channel is closed: %r", frames[-1][0], exc)


async def _nothing_to_settle(outcome: str) -> None:
    """A reply came on the no-ack reply-to consumer: nothing to settle."""


# -- options ---------------------------------------------------------------------------------------------------


def _check_name(what: str, name: str) -> None:
    if len(name.encode()) > NAME_LIMIT:
        raise ConfigurationError(f"an AMQP {what} name is at most {NAME_LIMIT} bytes: {name[:40]!r}...")


def _declared_groups(declare: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    if declare is None:
        return {}
    problem = ConfigurationError(f"declare is {{topic: [group, ...]}}, not {declare!r}")
    if not isinstance(declare, Mapping):
        raise problem
    groups: dict[str, tuple[str, ...]] = {}
    for topic, names in declare.items():
        if not isinstance(topic, str) or isinstance(names, str) or not isinstance(names, Sequence):
            raise problem
        if not all(isinstance(name, str) and name for name in names):
            raise problem
        _check_name("topic", topic)
        groups[topic] = tuple(names)
    return groups
