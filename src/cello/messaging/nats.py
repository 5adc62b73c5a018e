"""``Broker("nats://host:4222[,host:4222]")``: NATS JetStream through nats-py.

Topology: a topic is a NATS subject. Messages are stored by JetStream in the stream that takes the subject: one that
already exists (a stream of the operator's own, say ``ORDERS`` on ``orders.>``, is used as it is), else one the
adapter creates for the topic alone, named ``stream_name(topic)`` — the topic with every character a stream name
cannot hold (``.``, ``*``, ``>``, whitespace and all else outside ``A-Z a-z 0-9 _ -``) made ``_`` and, when anything
was changed, a short hash of the topic appended so two topics never share a name (``orders.eu`` ->
``orders_eu-<hash>``). The streams made here keep messages by limits (``retention="limits"``: for ``max_age``,
7 days by default), not as a work queue: a work-queue stream allows one consumer per subject, which would leave a
topic one consumer group. ``retention="interest"`` drops a message once every group has acked it, but also drops
what is published while a topic has no group yet. A topic may hold wildcards for subscribers (``orders.*``).

Each consumer group of a topic is one durable pull consumer, ``consumer_name(topic, group)`` (group and topic made
safe the same way, with a hash of both), filtered on the topic, with explicit acks, ``ack_wait``, no
``max_deliver`` limit and no ``max_ack_pending`` cap (Cello's subscribers do the retries, dead letters and
concurrency). Every member of the group — in this process, other workers, other machines — pulls from the same
consumer, so they share its messages, and every group gets each message. A new group starts from the oldest message
its stream keeps (``deliver_policy="all"``: nothing published before the first subscriber is lost), or with
``deliver_policy="new"`` from the messages published after it was made; an existing consumer keeps its own.

Each member pulls with one request at a time for as many messages as it has free slots (``prefetch`` minus those
handed over and not settled), and hands each message to the handler in its own task — a subscriber that handles
one message at a time gets them in order from one task, as a task per message would cost a fifth of what the
message costs. A request waits ``fetch_timeout`` seconds at most (and at most ``ack_wait / 3``).
While a handler works on a message the adapter tells JetStream it is in progress, at least every ``ack_wait / 2``,
so a handler longer than ``ack_wait`` is not redelivered meanwhile; ``ack_wait`` is how long a message waits after
its worker died or lost its connection. ack is ``+ACK``, sent without waiting for JetStream's confirmation, as
NATS clients do (an ack lost on the way means a redelivery, which at-least-once allows; the connection is flushed
before it closes, so a drained shutdown loses none); ``ack_sync=True`` waits until JetStream recorded each one,
a round trip per message. nack is ``-NAK`` (delivered again at once), reject is ``+TERM`` (never
again). ``Delivery.redelivered`` is JetStream's delivery count minus one; ``Delivery.meta`` holds ``stream``,
``consumer``, ``stream_seq`` and ``num_delivered``. Stopping stops pulling, lets the handlers finish, then ends the
pull request before giving back (nack) what came meanwhile or was nacked: nats-server before 2.10.14 delivers a
message twice when it redelivers one while only pull requests of clients gone away wait (nats-server#5305).

Headers travel as NATS headers (lower-case on the way in; values trimmed, a line break becomes a space, as NATS
headers are one line each); the key as the ``x-cello-key`` header. JetStream's own ``Nats-*`` headers are not handed
on. ``publish`` returns once JetStream stored the message (its PubAck). The message id travels as ``Nats-Msg-Id:
<topic>:<message id>``, so the stream drops a message re-sent within its ``duplicate_window`` (2 minutes by
default) — qualified by topic so a dead letter, which keeps its original's id, is not taken for a duplicate in a
stream that holds both — and not also as ``x-message-id``, which is made from it on the way in (a message of
another client's with a ``Nats-Msg-Id`` of its own gets that as its id).

Request/reply: a core NATS request to a stream's subject would be answered by JetStream's PubAck, so a request is
stored like any message with an ``x-cello-reply-to`` header naming an inbox of the requester's, and the subscriber
answers there with core NATS.

Options: ``ack_wait`` (30.0 s), ``ack_sync`` (False), ``deliver_policy`` (``"all"`` or ``"new"``), ``retention``
(``"limits"`` or ``"interest"``), ``storage`` (``"file"`` or ``"memory"``), ``max_age`` (604800.0 s; ``None`` keeps
messages for ever), ``replicas`` (1), ``duplicate_window`` (120.0 s) — the stream settings apply to the streams
made here —, ``fetch_timeout`` (5.0 s), ``api_timeout`` (5.0 s: JetStream calls, PubAcks, confirmed acks),
``connect_timeout`` (5.0 s), ``reconnect_wait`` (1.0 s), ``name`` (the connection's name in NATS' monitoring).
``user:password@`` or ``token@`` before the first host applies to every server. nats-py reconnects by itself, for
ever; the consumers pull again once it has, and make their stream and consumer again if they are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api

from ..http.exceptions import ConfigurationError
from .broker import BrokerUnavailable
from .message import Delivery, Reply, Settle
from .transport import Consumer, Handler, Transport, refill_at

__all__ = ["NatsTransport", "consumer_name", "stream_name"]

logger = logging.getLogger("cello.messaging.nats")

KEY_HEADER = "x-cello-key"
REPLY_HEADER = "x-cello-reply-to"
MSG_ID_HEADER = "Nats-Msg-Id"
NAME_LIMIT = 100  # characters of a topic or group kept in a stream or consumer name, before the hash
ANSWER_GRACE = 2.0  # seconds beyond a pull request's expiry before its silence means JetStream lost it
REFUSED_PAUSE = 0.5  # seconds before pulling again after JetStream refused a pull request
FAILURES = (nats.errors.Error, asyncio.TimeoutError, OSError)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
DELIVER_POLICIES = {"all": api.DeliverPolicy.ALL, "new": api.DeliverPolicy.NEW}
RETENTIONS = {"limits": api.RetentionPolicy.LIMITS, "interest": api.RetentionPolicy.INTEREST}
STORAGES = {"file": api.StorageType.FILE, "memory": api.StorageType.MEMORY}


def _digest(text: str) -> str:
    return hashlib.blake2s(text.encode(), digest_size=4).hexdigest()


def stream_name(topic: str) -> str:
    """The stream the adapter makes for ``topic`` when no stream takes its subject yet."""
    safe = _UNSAFE.sub("_", topic)
    if safe == topic and len(safe) <= NAME_LIMIT:
        return safe
    return f"{safe[:NAME_LIMIT]}-{_digest(topic)}"


def consumer_name(topic: str, group: str) -> str:
    """The durable pull consumer of ``group`` on ``topic``."""
    safe_group, safe_topic = _UNSAFE.sub("_", group)[:NAME_LIMIT], _UNSAFE.sub("_", topic)[:NAME_LIMIT]
    return f"{safe_group}__{safe_topic}-{_digest(group + chr(0) + topic)}"


def _check_subject(topic: str, *, wildcards: bool) -> None:
    tokens = topic.split(".")
    if (
        not topic
        or any(not token or any(c.isspace() for c in token) for token in tokens)
        or (not wildcards and any(token in ("*", ">") for token in tokens))
        or (">" in tokens and tokens.index(">") != len(tokens) - 1)
    ):
        kind = "a NATS subject" if wildcards else "a NATS subject to publish to (no wildcards)"
        raise ConfigurationError(f"topic {topic!r} is not {kind}: dot-separated tokens, no whitespace")


def _outgoing(headers: Mapping[str, str], key: str | None, topic: str | None = None) -> dict[str, str]:
    """NATS headers of a message; stored in JetStream (``topic`` given), its id travels once, as the
    ``Nats-Msg-Id`` JetStream deduplicates by — ``<topic>:<id>`` — not also as ``x-message-id``: each header
    costs every consumer a parse."""
    sent = {}
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"header name {name!r} cannot travel as a NATS header")
        sent[name] = value
    if key is not None:
        sent[KEY_HEADER] = key
    if topic is not None and "x-message-id" in sent:
        sent[MSG_ID_HEADER] = f"{topic}:{sent.pop('x-message-id')}"
    return sent


def _incoming(headers: Mapping[str, str] | None, subject: str = "") -> tuple[dict[str, str], str | None, str | None]:
    """A message's headers for Cello (``x-message-id`` from ``Nats-Msg-Id``, less its ``<subject>:``), its key and
    the inbox a request wants its answer on."""
    found = {name.lower(): value for name, value in (headers or {}).items()}
    key = found.pop(KEY_HEADER, None)
    reply_to = found.pop(REPLY_HEADER, None)
    stored_id = found.get("nats-msg-id")
    for name in [name for name in found if name.startswith("nats-")]:  # JetStream's own (Nats-Msg-Id...)
        del found[name]
    if stored_id is not None and "x-message-id" not in found:
        found["x-message-id"] = stored_id.removeprefix(f"{subject}:") if subject else stored_id
    return found, key, reply_to


def _position(msg: Msg) -> tuple[str, str, int, int]:
    """Stream, consumer, delivery count and stream sequence of a JetStream message, read from its ack subject:
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...`` (9 tokens), or with ``<domain>.<account hash>``
    before the stream (11 or more). ``msg.metadata`` reads the same and more (a timestamp, a dataclass), at
    seven times the cost: a tenth of what a message costs."""
    tokens = (msg.reply or "").split(".")
    if tokens[:2] == ["$JS", "ACK"] and len(tokens) == 9:
        return tokens[2], tokens[3], int(tokens[4]), int(tokens[5])
    if tokens[:2] == ["$JS", "ACK"] and len(tokens) >= 11:
        return tokens[4], tokens[5], int(tokens[6]), int(tokens[7])
    meta = msg.metadata  # what nats-py makes of it (raises NotJSMessageError)
    return meta.stream, meta.consumer, meta.num_delivered, meta.sequence.stream


def _seconds(options: dict[str, Any], name: str, default: float | None, *, allow_none: bool = False) -> float | None:
    value = options.pop(name, default)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"nats:// option {name} must be a number of seconds > 0, not {value!r}")
    return float(value)


def _choice(options: dict[str, Any], name: str, choices: Mapping[str, Any]) -> Any:
    value = options.pop(name, next(iter(choices)))
    if value not in choices:
        raise ConfigurationError(f"nats:// option {name} is one of {', '.join(map(repr, choices))}, not {value!r}")
    return choices[value]


def _servers(url: str) -> list[str]:
    """``nats://[credentials@]host:port[,host:port]`` as nats-py's server URLs, the credentials on each."""
    rest = url.partition("://")[2]
    credentials, _, hosts = rest.rpartition("@")
    if not hosts.strip("/") or any(c in hosts.rstrip("/") for c in "/?#"):
        raise ConfigurationError(f"a NATS URL is nats://[user:password@]host:port[,host:port], not {url!r}")
    servers = []
    for host in hosts.rstrip("/").split(","):
        try:
            port = urlsplit(f"nats://{host}").port
        except ValueError as exc:
            raise ConfigurationError(f"bad NATS server {host!r} in {url!r}: {exc}") from None
        if not host or host.startswith(":"):
            raise ConfigurationError(f"bad NATS server {host!r} in {url!r}")
        servers.append(f"nats://{credentials + '@' if credentials else ''}{host}{'' if port else ':4222'}")
    return servers


class NatsTransport(Transport):
    scheme = "nats"
    supports_request = True

    def __init__(self, url: str = "nats://127.0.0.1:4222", **options: Any) -> None:
        self.servers = _servers(url)
        self.display = ",".join(server.rpartition("@")[2] for server in self.servers)  # never the credentials
        self.ack_wait = _seconds(options, "ack_wait", 30.0) or 30.0
        self.fetch_timeout = _seconds(options, "fetch_timeout", 5.0) or 5.0
        # NOTE: a pull request outlives a killed client until it expires; ending before the dead client's messages
        # are redelivered (ack_wait / 2 at the earliest, see _keep_alive) keeps clear of nats-server#5305
        self.pull_expires = min(self.fetch_timeout, self.ack_wait / 3)
        self.api_timeout = _seconds(options, "api_timeout", 5.0) or 5.0
        self.connect_timeout = _seconds(options, "connect_timeout", 5.0) or 5.0
        self.reconnect_wait = _seconds(options, "reconnect_wait", 1.0) or 1.0
        self.max_age = _seconds(options, "max_age", 7 * 24 * 3600.0, allow_none=True)
        self.duplicate_window = _seconds(options, "duplicate_window", 120.0) or 120.0
        self.deliver_policy = _choice(options, "deliver_policy", DELIVER_POLICIES)
        self.retention = _choice(options, "retention", RETENTIONS)
        self.storage = _choice(options, "storage", STORAGES)
        self.replicas = options.pop("replicas", 1)
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or not 1 <= self.replicas <= 5:
            raise ConfigurationError(f"nats:// option replicas is 1 to 5, not {self.replicas!r}")
        self.ack_sync = options.pop("ack_sync", False)
        if not isinstance(self.ack_sync, bool):
            raise ConfigurationError(f"nats:// option ack_sync is True or False, not {self.ack_sync!r}")
        self.name = options.pop("name", None)
        if self.name is not None and not isinstance(self.name, str):
            raise ConfigurationError(f"nats:// option name is a string, not {self.name!r}")
        if options:
            raise ConfigurationError(f"unknown nats:// options: {', '.join(sorted(options))}")
        self.nc: NatsClient | None = None
        self.js: JetStreamContext | None = None
        self.streams: dict[str, str] = {}  # topic -> the stream that takes its subject
        self.consumers: set[_NatsConsumer] = set()
        self.answers: dict[str, asyncio.Future[Delivery]] = {}  # request token -> its reply
        self.reply_prefix = ""

    # -- connection ------------------------------------------------------------------------------------------

    async def connect(self) -> None:
        nc = NatsClient()
        try:
            # NOTE: with unlimited reconnects nats-py's connect() retries for ever, so the first connect is bounded
            # here (Broker tries again in the background); later losses are nats-py's to repair
            await asyncio.wait_for(
                nc.connect(
                    self.servers,
                    name=self.name,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=self.reconnect_wait,  # type: ignore[arg-type]  # seconds, float or int
                    connect_timeout=min(self.connect_timeout, 2.0),  # type: ignore[arg-type]
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                ),
                self.connect_timeout,
            )
            js = nc.jetstream(timeout=self.api_timeout)
            await js.account_info()  # JetStream is enabled and answers for this account
        except BaseException as exc:
            error = nc.last_error
            with contextlib.suppress(Exception):
                await nc.close()
            if isinstance(exc, asyncio.TimeoutError):
                raise ConnectionError(f"NATS at {self.display} unreachable: {error or exc!r}") from exc
            if isinstance(exc, (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError)):
                raise ConnectionError(f"NATS at {self.display} has no JetStream (nats-server -js)") from exc
            raise
        self.nc, self.js = nc, js
        self.reply_prefix = nc.new_inbox()
        await nc.subscribe(f"{self.reply_prefix}.*", cb=self._on_answer)

    async def close(self) -> None:
        for consumer in list(self.consumers):  # those whose stop() did not finish within the drain
            await consumer.abandon()
        self.consumers.clear()
        nc, self.nc, self.js = self.nc, None, None
        for answer in self.answers.values():
            if not answer.done():
                answer.set_exception(BrokerUnavailable(f"the connection to NATS at {self.display} was closed"))
        self.streams.clear()
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.flush(timeout=max(1, round(self.api_timeout)))  # acks sent without waiting get there first
            with contextlib.suppress(Exception):
                await nc.close()

    async def ping(self) -> bool:
        nc = self.nc
        if nc is None or not nc.is_connected:
            return False
        try:
            await nc.flush(timeout=1)
        except Exception:
            return False
        return True

    def describe(self) -> dict[str, Any]:
        return {"protocol": self.scheme, "description": "NATS JetStream"}

    async def _on_error(self, exc: Exception) -> None:
        logger.debug("NATS at %s: %r", self.display, exc)  # every failed reconnect attempt: the outage is logged once

    async def _on_disconnected(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            logger.warning("lost the connection to NATS at %s; reconnecting", self.display)

    async def _on_reconnected(self) -> None:
        logger.info("reconnected to NATS at %s", self.display)
        for consumer in self.consumers:
            consumer.wake(check=True)  # the server may have restarted: its pull requests are gone

    def _client(self) -> tuple[NatsClient, JetStreamContext]:
        if self.nc is None or self.js is None or self.nc.is_closed:
            raise BrokerUnavailable(f"NATS at {self.display} is not connected")
        return self.nc, self.js

    # -- topology --------------------------------------------------------------------------------------------

    async def stream_for(self, topic: str) -> str:
        """The stream that takes ``topic``'s subject: one that exists, else one made for it."""
        found = self.streams.get(topic)
        if found is not None:
            return found
        _, js = self._client()
        try:
            found = await js.find_stream_name_by_subject(topic)
        except nats.js.errors.NotFoundError:
            found = stream_name(topic)
            config = api.StreamConfig(
                name=found, subjects=[topic], retention=self.retention, storage=self.storage,
                max_age=self.max_age or 0, num_replicas=self.replicas, duplicate_window=self.duplicate_window,
                discard=api.DiscardPolicy.OLD, description=f"Cello topic {topic}",
            )  # fmt: skip
            try:
                await js.add_stream(config)  # NOTE: the same settings from another process at once is no error
            except nats.js.errors.BadRequestError as exc:
                # made meanwhile by someone else with other settings or subjects: use it if it takes the topic
                try:
                    found = await js.find_stream_name_by_subject(topic)
                except nats.js.errors.NotFoundError:
                    raise ConfigurationError(
                        f"cannot make the NATS stream {found!r} for topic {topic!r}: {exc.description}"
                    ) from exc
            else:
                logger.info("made the NATS stream %s for topic %s", found, topic)
        self.streams[topic] = found
        return found

    async def ensure_consumer(self, stream: str, name: str, topic: str) -> None:
        """Make the group's durable pull consumer, or bring an existing one's ``ack_wait`` to this adapter's."""
        _, js = self._client()
        wanted = api.ConsumerConfig(
            name=name, durable_name=name, filter_subject=topic, ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait, max_deliver=-1, max_ack_pending=-1, deliver_policy=self.deliver_policy,
        )  # fmt: skip
        try:
            info = await js.consumer_info(stream, name)
        except nats.js.errors.NotFoundError:
            await js.add_consumer(stream, wanted)
            return
        config = info.config
        if config.deliver_subject or config.filter_subject != topic:
            raise ConfigurationError(
                f"the NATS consumer {name!r} of stream {stream!r} is not a pull consumer of {topic!r}"
            )
        if config.ack_wait != self.ack_wait:
            await js.add_consumer(stream, config.evolve(ack_wait=self.ack_wait))  # updates it; the rest stays

    # -- publishing ------------------------------------------------------------------------------------------

    async def publish(self, topic: str, body: bytes, *, key: str | None, headers: Mapping[str, str]) -> None:
        _check_subject(topic, wildcards=False)
        await self._store(topic, body, _outgoing(headers, key, topic))

    async def _store(self, topic: str, body: bytes, headers: dict[str, str]) -> None:
        _, js = self._client()
        if topic not in self.streams:
            await self.stream_for(topic)
        try:
            ack = await js.publish(topic, body, timeout=self.api_timeout, headers=dict(headers))
        except nats.js.errors.NoStreamResponseError:  # its stream was deleted since: make one again
            self.streams.pop(topic, None)
            await self.stream_for(topic)
            ack = await js.publish(topic, body, timeout=self.api_timeout, headers=dict(headers))
        if ack.duplicate:
            logger.debug("JetStream took %s on %s for a duplicate", headers.get(MSG_ID_HEADER), topic)

    async def request(self, topic: str, body: bytes, *, headers: Mapping[str, str], timeout: float) -> Delivery:
        _check_subject(topic, wildcards=False)
        token = uuid.uuid4().hex
        answer: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        self.answers[token] = answer
        sent = _outgoing(headers, None, topic)
        sent[REPLY_HEADER] = f"{self.reply_prefix}.{token}"
        try:
            async with asyncio.timeout(timeout):
                await self._store(topic, body, sent)
                return await answer
        finally:
            self.answers.pop(token, None)

    async def _on_answer(self, msg: Msg) -> None:
        answer = self.answers.get(msg.subject.rpartition(".")[2])
        if answer is not None and not answer.done():  # NOTE: the first group to answer does
            headers, _, _ = _incoming(msg.headers)
            answer.set_result(Delivery(msg.subject, msg.data, headers, None, _nothing_to_settle))

    def _replier(self, inbox: str) -> Reply:
        async def reply(body: bytes, headers: Mapping[str, str]) -> None:
            nc = self.nc
            if nc is None or nc.is_closed:
                logger.debug("answer to %s dropped: the NATS connection is closed", inbox)
                return
            try:
                await nc.publish(inbox, body, headers=_outgoing(headers, None))
            except FAILURES as exc:
                logger.warning("answer to %s not sent: %r", inbox, exc)

        return reply

    # -- consuming -------------------------------------------------------------------------------------------

    async def consume(self, topic: str, group: str, handler: Handler, *, prefetch: int) -> Consumer:
        _check_subject(topic, wildcards=True)
        if prefetch < 1:
            raise ConfigurationError("a NATS consumer needs prefetch >= 1")
        stream = await self.stream_for(topic)
        name = consumer_name(topic, group)
        await self.ensure_consumer(stream, name, topic)
        # NOTE: a subscriber that handles one message at a time gets them in order from one task: a task per
        # message (and its wait for the subscriber's one slot) costs about a fifth of what a message costs
        subscriber = getattr(handler, "__self__", None)
        in_order = getattr(subscriber, "concurrency", None) == 1 and getattr(subscriber, "batch", None) is None
        consumer = _NatsConsumer(self, topic, stream, name, handler, prefetch, in_order)
        await consumer.start()
        self.consumers.add(consumer)
        return consumer

    async def settle(self, msg: Msg, outcome: str) -> None:
        """Tell JetStream what became of ``msg``; never raises (a lost settlement means a redelivery)."""
        nc = self.nc
        if nc is None or nc.is_closed:
            logger.debug("%s of %s dropped: the NATS connection is closed; it comes again", outcome, msg.reply)
            return
        try:
            if outcome == "ack" and self.ack_sync:
                await msg.ack_sync(timeout=self.api_timeout)  # recorded when this returns: nothing repeats
            elif outcome == "ack":
                await msg.ack()
            elif outcome == "nack":
                await msg.nak()
            elif outcome == "reject":
                await msg.term()
            else:
                raise ValueError(f"unknown outcome {outcome!r}")
        except FAILURES as exc:
            logger.warning("%s of %s not confirmed by JetStream (%r); it may come again", outcome, msg.reply, exc)

    def delivery(self, msg: Msg, settle: Settle) -> Delivery:
        headers, key, reply_to = _incoming(msg.headers, msg.subject)
        stream, consumer, delivered, sequence = _position(msg)
        return Delivery(
            msg.subject, msg.data, headers, key, settle, redelivered=max(delivered - 1, 0),
            meta={"stream": stream, "consumer": consumer, "stream_seq": sequence, "num_delivered": delivered},
            reply=self._replier(reply_to) if reply_to else None,
        )  # fmt: skip


async def _nothing_to_settle(outcome: str) -> None:
    """An answer is not a message of JetStream's: nothing to settle."""


class _Held:
    """A message JetStream delivered to this consumer, until it is settled."""

    __slots__ = ("msg", "touched", "settled")

    def __init__(self, msg: Msg) -> None:
        self.msg = msg
        self.touched = time.monotonic()  # delivered, or last reported in progress
        self.settled = False


class _NatsConsumer(Consumer):
    """One member of a group: pulls for its free slots and hands each message to the handler in its own task (to a
    subscriber of one message at a time, in order from one worker task)."""

    def __init__(self, transport: NatsTransport, topic: str, stream: str, name: str, handler: Handler,
                 prefetch: int, in_order: bool = False) -> None:  # fmt: skip
        self.transport = transport
        self.topic = topic
        self.stream = stream
        self.name = name
        self.handler = handler
        self.prefetch = prefetch
        self.refill = refill_at(prefetch)
        self.unsettled: set[_Held] = set()  # handed over to the handler
        self.backlog: deque[_Held] = deque()  # delivered beyond the free slots, or while stopping
        self.returning: list[_Held] = []  # nacked while stopping: given back once the pull request is gone
        self.requested = 0  # messages the pull request under way may still bring
        self.request_over = asyncio.Event()
        self.slot_free = asyncio.Event()
        self.check = False  # make sure the consumer exists before the next pull
        self.pause = 0.0
        self.stopping = False
        self.stopped = False
        self.inbox = ""
        self.subscription: Subscription | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.in_order = in_order  # handed over one after another, by one worker task
        self.queue: deque[_Held] = deque()  # handed over, for the worker
        self.worker: asyncio.Task[None] | None = None
        self.fetching: asyncio.Task[None] | None = None
        self.keeping_alive: asyncio.Task[None] | None = None

    async def start(self) -> None:
        nc, _ = self.transport._client()
        self.inbox = nc.new_inbox()
        self.subscription = await nc.subscribe(self.inbox, cb=self._on_message)
        loop = asyncio.get_running_loop()
        self.fetching = loop.create_task(self._fetch())
        self.keeping_alive = loop.create_task(self._keep_alive())

    def wake(self, *, check: bool = False) -> None:
        self.check = self.check or check
        self.request_over.set()

    # -- pulling ---------------------------------------------------------------------------------------------

    async def _fetch(self) -> None:
        while True:
            if self.check:
                await self._recover()
            while self.prefetch - len(self.unsettled) < self.refill:
                self.slot_free.clear()
                await self.slot_free.wait()
            if self.backlog:
                self._hand_over(self.backlog.popleft())
                continue
            nc = self.transport.nc
            if nc is None or nc.is_closed:
                return
            if not nc.is_connected:  # nats-py reconnects; pull requests held back meanwhile would pile up
                await asyncio.sleep(self.transport.reconnect_wait)
                continue
            self.requested = self.prefetch - len(self.unsettled)
            self.request_over.clear()
            pull = {"batch": self.requested, "expires": int(self.transport.pull_expires * 1e9)}
            try:
                await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.name}", orjson.dumps(pull),
                                 reply=self.inbox)  # fmt: skip
            except nats.errors.Error as exc:
                logger.debug("pull request for %s not sent: %r", self.name, exc)
                await asyncio.sleep(self.transport.reconnect_wait)
                continue
            try:
                async with asyncio.timeout(self.transport.pull_expires + ANSWER_GRACE):
                    await self.request_over.wait()
            except TimeoutError:
                self.check = True  # not even its expiry came back: JetStream restarted, or the consumer is gone
            if self.pause:
                await asyncio.sleep(self.pause)
                self.pause = 0.0

    async def _recover(self) -> None:
        """Make sure the stream and the consumer exist (again) before pulling, once connected."""
        nc = self.transport.nc
        if nc is None or not nc.is_connected:
            return  # pulled when connected again: nats-py sends what it held back
        self.check = False
        try:
            self.transport.streams.pop(self.topic, None)
            self.stream = await self.transport.stream_for(self.topic)
            await self.transport.ensure_consumer(self.stream, self.name, self.topic)
        except (*FAILURES, ConfigurationError) as exc:
            logger.warning("NATS consumer %s of %s not ready: %r", self.name, self.topic, exc)
            self.check = True
            await asyncio.sleep(self.transport.reconnect_wait)

    async def _on_message(self, msg: Msg) -> None:
        if not msg.reply:  # a status about the pull request (JetStream's messages all carry their ack subject)
            status = (msg.headers or {}).get("Status", "")
            if status == "100":  # idle heartbeat
                return
            if status == "409":  # refused, or cut short: the consumer was deleted, too many requests waiting...
                description = (msg.headers or {}).get("Description", "")
                self.check = self.check or "deleted" in description.lower()
                self.pause = REFUSED_PAUSE
                logger.debug("pull request for %s ended: %s %s", self.name, status, description)
            elif status not in ("404", "408"):  # not the expected end of a request (no messages, expired)
                self.pause = REFUSED_PAUSE
                logger.warning("pull request for %s refused: %s %s", self.name, status, msg.headers)
            self.request_over.set()
            return
        self.requested -= 1
        if self.requested <= 0:
            self.request_over.set()
        held = _Held(msg)
        if not self.stopping and len(self.unsettled) < self.prefetch and not self.backlog:
            self._hand_over(held)
        else:  # NOTE: while stopping too: a nack now would bring it straight back to this pull request
            self.backlog.append(held)

    # -- handing over ----------------------------------------------------------------------------------------

    def _hand_over(self, held: _Held) -> None:
        self.unsettled.add(held)
        if self.in_order:
            self.queue.append(held)
            if self.worker is not None:
                return
            self.worker = task = asyncio.get_running_loop().create_task(self._work())
        else:
            task = asyncio.get_running_loop().create_task(self._handle(held))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _work(self) -> None:
        """The messages handed over, one after another (a subscriber that handles one at a time)."""
        try:
            while self.queue:
                held = self.queue.popleft()
                if not held.settled:  # not given back meanwhile (the transport closing)
                    await self._handle(held)
        finally:
            self.worker = None

    async def _handle(self, held: _Held) -> None:
        async def settle(outcome: str) -> None:
            if held.settled:
                return
            held.settled = True
            self.unsettled.discard(held)
            self.slot_free.set()
            if self.stopping and not self.stopped and outcome == "nack":
                self.returning.append(held)  # see stop()
                return
            if self.backlog and not self.stopping:
                self._hand_over(self.backlog.popleft())
            await self.transport.settle(held.msg, outcome)

        try:
            await self.handler(self.transport.delivery(held.msg, settle))
        except Exception:
            logger.exception("handler of %s failed outside its subscriber", self.topic)
        finally:
            if not held.settled:  # ended without settling (cancelled at shutdown): deliver it again
                await settle("nack")

    async def _keep_alive(self) -> None:
        """Tell JetStream that the messages held here are being worked on, each at least every ``ack_wait / 2``
        (checked every ``ack_wait / 6``, reported once ``ack_wait / 3`` old)."""
        interval = self.transport.ack_wait / 3
        while True:
            await asyncio.sleep(interval / 2)
            now = time.monotonic()
            nc = self.transport.nc
            if nc is None or not nc.is_connected:
                continue
            for held in [*self.unsettled, *self.backlog, *self.returning]:
                if now - held.touched >= interval:
                    held.touched = now
                    with contextlib.suppress(*FAILURES):
                        await held.msg.in_progress()

    # -- stopping --------------------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop pulling, let the handlers finish, then give back what is still here.

        NOTE: nats-server before 2.10.14 delivers a message twice (the second time counted as the first delivery)
        when it redelivers one while the only pull requests waiting are from clients that stopped listening
        (nats-server#5305). So nothing is given back while this consumer's pull request may still wait: messages
        that come meanwhile, and those nacked, are held (reported in progress) until the request is gone.
        """
        self.stopping = True
        await self._cancel(self.fetching)
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self._give_back()
        await self._cancel(self.keeping_alive)
        self.stopped = True
        self.transport.consumers.discard(self)

    async def abandon(self) -> None:
        """The transport closes: stop pulling and give back, for another member, what is still held here."""
        self.stopping = True
        await self._cancel(self.fetching)
        await self._cancel(self.keeping_alive)
        for held in list(self.unsettled):  # handlers still running: their settling comes too late
            held.settled = True
            self.returning.append(held)
        self.unsettled.clear()
        await self._give_back()
        self.stopped = True

    async def _give_back(self) -> None:
        """End the pull request (stop listening, and make JetStream notice), then nack what is held here."""
        subscription, self.subscription = self.subscription, None
        nc, js = self.transport.nc, self.transport.js
        if subscription is not None and nc is not None and nc.is_connected:
            with contextlib.suppress(*FAILURES):
                await subscription.unsubscribe()
            if js is not None:
                # JetStream drops a pull request nobody listens to when it next looks at its requests, as it
                # does to report on the consumer: now, before the nacks below (or another member's) are redelivered
                with contextlib.suppress(*FAILURES):
                    await js.consumer_info(self.stream, self.name, timeout=self.transport.api_timeout)
        held, self.returning = [*self.backlog, *self.returning], []
        self.backlog.clear()
        for each in held:
            await self.transport.settle(each.msg, "nack")

    @staticmethod
    async def _cancel(task: asyncio.Task[None] | None) -> None:
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
