"""``Broker("kafka://host:port[,host:port]")``: Apache Kafka (or a Kafka-protocol broker) through aiokafka.

Topology: a Cello topic is a Kafka topic of the same name (1-249 characters of ``a-z A-Z 0-9 . _ -``; other names
are refused rather than mapped, as a mapping could make two names one). A topic is created the first time this
transport publishes to it or consumes it, with ``partitions`` partitions and ``replication_factor`` copies; an
existing topic is left as it is.

Publishing: one producer per transport, ``acks="all"``, idempotent unless ``idempotent=False`` (a broker that
refuses the idempotent producer fails ``connect()`` with a ``ConfigurationError`` that says so: falling back
silently would trade away the no-duplicates-on-retry guarantee the option asked for). The message key is the
record key, so one key's messages stay in one partition and keep their order; headers are record headers.

Consuming: each subscriber is one member (an ``AIOKafkaConsumer``) of the Kafka consumer group named after the
Cello group, so every group gets each message and a group's members share the topic's partitions. Records are
handed to the handler each in its own task, at most ``prefetch`` unsettled at a time — except to a subscriber that
handles one message at a time (``concurrency=1``, no batches), which gets each partition's records in offset order
from one task per partition: a task per record would cost more than the record. Offsets are committed by
Cello, never automatically: per partition, up to the lowest offset not yet settled (acked or rejected), after
every settle (coalesced into one commit request under way at a time) — so a stop commits all that finished, and
after a crash only the records under way or just finished are read again. ``nack`` hands the record to the handler
again in this process (``redelivered`` + 1): Kafka has no per-record redelivery, and seeking back would replay
every later record too; its offset stays uncommitted until it is settled. ``reject`` drops it (its offset counts
as done). A group that has no committed offset starts from ``auto_offset_reset`` (default ``"earliest"``).

Rebalances: when partitions are revoked, no more of their records are handed over, the handlers under way on them
get up to half of ``rebalance_timeout`` to finish, and what finished is committed. State for partitions that went
to another member is dropped (late settles of theirs are ignored: the new owner reads them again from the last
commit); a partition that comes straight back resumes where this member was, without handing its records twice.

Options: ``idempotent`` (True), ``partitions`` (1), ``replication_factor`` (1), ``auto_offset_reset``
("earliest" | "latest"), ``session_timeout`` (10 s: a member that stops heartbeating for this long is dropped
and its partitions move; heartbeats every third of it), ``rebalance_timeout`` (30 s), ``publish_timeout`` (10 s:
how long a publish may wait for the broker to take the record), ``client_id`` ("cello").
No exactly-once: Kafka transactions are not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    ConsumerStoppedError,
    KafkaError,
    UnknownError,
    UnsupportedVersionError,
)
from aiokafka.protocol.group import LeaveGroupRequest

from ..http.exceptions import ConfigurationError
from . import metrics
from .message import Delivery
from .transport import Consumer, Handler, Transport, refill_at

__all__ = ["KafkaTransport"]

logger = logging.getLogger("cello.messaging.kafka")

DEFAULT_PORT = 9092
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
TOPIC_ALREADY_EXISTS = 36  # Kafka's error code for CreateTopics
PING_TIMEOUT = 2.0  # seconds a metadata request may take for the readiness check
FETCH_WAIT_MS = 1000  # how long one fetch waits for records before the loop looks around again
FINAL_COMMIT_TIMEOUT = 5.0  # seconds the last commit of a stopping consumer may take
LEAVE_TIMEOUT = 10.0  # seconds leaving the group may take at stop (a broker that is gone never answers)
LAG_INTERVAL = 5.0  # seconds between updates of the lag gauge for partitions without new records
# NOTE: a handler that nacks every time would otherwise spin; the first redelivery is immediate
REDELIVERY_BACKOFF_CAP = 1.0

_OPTIONS = ("idempotent", "partitions", "replication_factor", "auto_offset_reset", "session_timeout",
            "rebalance_timeout", "publish_timeout", "client_id")  # fmt: skip
# what a broker answers when it will not give an idempotent producer its id
_IDEMPOTENCE_REFUSED = (UnknownError, UnsupportedVersionError, ClusterAuthorizationFailedError)


def _bootstrap_servers(url: str) -> list[str]:
    """``kafka://host:port[,host:port]`` -> ``["host:port", ...]`` (port 9092 where none is given)."""
    scheme, _, rest = url.partition("://")
    rest = rest.rstrip("/")
    if scheme.lower() != "kafka" or not rest or any(c in rest for c in "/?#@"):
        raise ConfigurationError(
            f"a Kafka URL is kafka://host:port[,host:port] (options as Broker keyword arguments), not {url!r}"
        )
    servers = []
    for server in rest.split(","):
        host, colon, port = server.strip().rpartition(":")
        if not colon or host.endswith(":"):  # no port, or a bare IPv6 address
            host, port = server.strip(), str(DEFAULT_PORT)
        if not host or not port.isdigit():
            raise ConfigurationError(f"{server!r} in {url!r} is not host:port")
        servers.append(f"{host}:{port}")
    return servers


def _positive(name: str, value: Any, kind: type) -> Any:
    numeric = (int, float) if kind is float else (int,)
    if isinstance(value, bool) or not isinstance(value, numeric) or value <= 0:
        raise ConfigurationError(f"kafka:// option {name} must be a positive {kind.__name__}, not {value!r}")
    return kind(value)


def _topic(topic: str) -> str:
    if not TOPIC_NAME.fullmatch(topic) or topic in (".", ".."):
        raise ConfigurationError(f"{topic!r} is not a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -")
    return topic


def _text(raw: bytes) -> str:
    # NOTE: surrogateescape: bytes that are not UTF-8 (another producer's binary key) come back unchanged when the
    # message is published again (a dead letter), so its key still picks the same partition
    return raw.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class KafkaTransport(Transport):
    scheme = "kafka"

    def __init__(self, url: str, **options: Any) -> None:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigurationError(f"unknown kafka:// options {', '.join(unknown)} (known: {', '.join(_OPTIONS)})")
        self.servers = _bootstrap_servers(url)
        idempotent = options.get("idempotent", True)
        if not isinstance(idempotent, bool):
            raise ConfigurationError(f"kafka:// option idempotent must be True or False, not {idempotent!r}")
        self.idempotent = idempotent
        self.partitions: int = _positive("partitions", options.get("partitions", 1), int)
        self.replication_factor: int = _positive("replication_factor", options.get("replication_factor", 1), int)
        self.auto_offset_reset = options.get("auto_offset_reset", "earliest")
        if self.auto_offset_reset not in ("earliest", "latest"):
            raise ConfigurationError(
                f"kafka:// option auto_offset_reset is 'earliest' or 'latest', not {self.auto_offset_reset!r}"
            )
        self.session_timeout: float = _positive("session_timeout", options.get("session_timeout", 10.0), float)
        self.rebalance_timeout: float = _positive("rebalance_timeout", options.get("rebalance_timeout", 30.0), float)
        self.publish_timeout: float = _positive("publish_timeout", options.get("publish_timeout", 10.0), float)
        self.client_id = options.get("client_id", "cello")
        if not isinstance(self.client_id, str) or not self.client_id:
            raise ConfigurationError(f"kafka:// option client_id must be a non-empty str, not {self.client_id!r}")
        self.producer: Any = None
        self.admin: Any = None
        self.consumers: set[_KafkaConsumer] = set()
        self.closed = True
        self._topics: dict[str, asyncio.Future[None]] = {}  # topic -> its creation (done: it exists)

    # -- life ------------------------------------------------------------------------------------------------

    async def connect(self) -> None:
        # NOTE: the producer's request timeout bounds a publish (aiokafka's default, 40 s, would hold an HTTP
        # handler that long while the broker is gone)
        producer = AIOKafkaProducer(bootstrap_servers=self.servers, client_id=self.client_id, acks="all",
                                    enable_idempotence=self.idempotent,
                                    request_timeout_ms=int(self.publish_timeout * 1000))  # fmt: skip
        admin = AIOKafkaAdminClient(bootstrap_servers=self.servers, client_id=self.client_id)
        try:
            await producer.start()
            await admin.start()
        except _IDEMPOTENCE_REFUSED as exc:
            await _quietly(producer.stop(), admin.close())
            if not self.idempotent:
                raise
            raise ConfigurationError(
                f"the Kafka broker at {','.join(self.servers)} refused the idempotent producer ({exc!r}): pass "
                "idempotent=False to publish without it (a send retried after a lost answer may then be stored "
                "twice)"
            ) from exc
        except BaseException:
            await _quietly(producer.stop(), admin.close())
            raise
        self.producer, self.admin = producer, admin
        self._topics.clear()
        self.closed = False

    async def close(self) -> None:
        self.closed = True
        for consumer in list(self.consumers):
            await consumer.release()
        producer, admin, self.producer, self.admin = self.producer, self.admin, None, None
        if producer is not None:
            await _quietly(producer.stop(), admin.close())
        for creation in self._topics.values():
            creation.cancel()
        self._topics.clear()

    async def ping(self) -> bool:
        producer = self.producer
        if producer is None:
            return False
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), PING_TIMEOUT)
        except (KafkaError, OSError, TimeoutError):
            return False
        return True

    def describe(self) -> dict[str, Any]:
        return {"protocol": "kafka", "host": ",".join(self.servers)}

    # -- topics ----------------------------------------------------------------------------------------------

    async def ensure_topic(self, topic: str) -> None:
        """Create ``topic`` unless this transport did (or found it) already; concurrent callers share one try."""
        creation = self._topics.get(topic)
        if creation is None or (creation.done() and (creation.cancelled() or creation.exception() is not None)):
            creation = self._topics[topic] = asyncio.ensure_future(self._create(topic))
        await asyncio.shield(creation)

    async def _create(self, topic: str) -> None:
        if self.admin is None:
            raise KafkaError("kafka:// transport is not connected")
        response = await self.admin.create_topics([NewTopic(topic, self.partitions, self.replication_factor)])
        for entry in response.topic_errors:
            name, code = entry[0], entry[1]
            if code not in (0, TOPIC_ALREADY_EXISTS):
                message = entry[2] if len(entry) > 2 else ""
                raise KafkaError(f"creating Kafka topic {name!r} failed: error {code} {message or ''}".rstrip())

    # -- messages --------------------------------------------------------------------------------------------

    async def publish(self, topic: str, body: bytes, *, key: str | None, headers: Mapping[str, str]) -> None:
        _topic(topic)
        producer = self.producer
        if producer is None:
            raise KafkaError("kafka:// transport is not connected")
        await self.ensure_topic(topic)
        await producer.send_and_wait(
            topic,
            body,
            key=None if key is None else _raw(key),
            headers=[(name.lower(), _raw(value)) for name, value in headers.items()],
        )

    async def consume(self, topic: str, group: str, handler: Handler, *, prefetch: int) -> Consumer:
        _topic(topic)
        await self.ensure_topic(topic)
        # the lag gauge's label: the subscriber's name when the handler is a Subscriber's (it always is in Cello)
        subscriber = getattr(handler, "__self__", None)
        name = getattr(subscriber, "name", None) or group
        # NOTE: a subscriber that handles one message at a time gets each partition's records from one task, in
        # order: a task per record (and its wait for the subscriber's one slot) would cost more than the record
        in_order = getattr(subscriber, "concurrency", None) == 1 and getattr(subscriber, "batch", None) is None
        consumer = _KafkaConsumer(self, topic, group, handler, prefetch, str(name), in_order)
        await consumer.start()
        return consumer


async def _quietly(*closing: Any) -> None:
    """Close clients that may be half started; their errors say nothing new."""
    for awaitable in closing:
        try:
            await awaitable
        except Exception as exc:
            logger.debug("closing a Kafka client: %r", exc)


class _Partition:
    """What one assigned partition has handed over and what of it may be committed."""

    __slots__ = ("tp", "outstanding", "settled", "commit_to", "committed", "next_offset", "tasks", "revoked",
                 "abandoned", "waiting", "worker")  # fmt: skip

    def __init__(self, tp: Any) -> None:
        self.tp = tp
        self.outstanding: deque[int] = deque()  # offsets handed over, in order, not yet below commit_to
        self.settled: set[int] = set()  # of those, the ones acked or rejected
        self.commit_to: int | None = None  # every offset below it is settled: the next offset to commit
        self.committed: int | None = None  # the last commit_to the broker took
        self.next_offset: int | None = None  # after the last record handed over: where fetching goes on
        self.tasks: set[asyncio.Task[None]] = set()  # handlers under way on it
        self.revoked = False  # taken away by a rebalance under way: nothing more is handed over
        self.abandoned = 0  # records nacked while revoked or stopping: no longer under way, never settled
        self.waiting: deque[Any] = deque()  # records for the partition's worker (a subscriber of one at a time)
        self.worker: asyncio.Task[None] | None = None

    def settle(self, offset: int) -> bool:
        """Mark ``offset`` settled; whether ``commit_to`` moved."""
        self.settled.add(offset)
        moved = False
        while self.outstanding and self.outstanding[0] in self.settled:
            done = self.outstanding.popleft()
            self.settled.discard(done)
            self.commit_to = done + 1
            moved = True
        return moved

    def pending_commit(self) -> int | None:
        if self.commit_to is not None and self.commit_to != self.committed:
            return self.commit_to
        return None


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type information
    def __init__(self, consumer: _KafkaConsumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.consumer.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.consumer.assigned(set(assigned))


class _KafkaConsumer(Consumer):
    """One subscriber's member of its Kafka consumer group (see the module)."""

    def __init__(self, transport: KafkaTransport, topic: str, group: str, handler: Handler, prefetch: int,
                 name: str, in_order: bool = False) -> None:  # fmt: skip
        self.transport = transport
        self.topic = topic
        self.group = group
        self.handler = handler
        self.prefetch = prefetch
        self.refill = refill_at(prefetch)
        self.name = name
        self.in_order = in_order
        self.kafka: Any = None
        self.partitions: dict[Any, _Partition] = {}
        self.unsettled = 0  # records handed over and not yet settled (nor given back)
        self.slot_freed = asyncio.Event()
        self.commit_wanted = asyncio.Event()
        self.commit_lock = asyncio.Lock()  # one commit at a time, its offsets read under the lock: never backwards
        self.tasks: set[asyncio.Task[None]] = set()  # every handler (and redelivery) under way
        self.stopping = False
        self.released = False
        self.release_lock = asyncio.Lock()
        self.loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        transport = self.transport
        session_ms = int(transport.session_timeout * 1000)
        kafka = AIOKafkaConsumer(
            bootstrap_servers=transport.servers,
            client_id=transport.client_id,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset=transport.auto_offset_reset,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(100, session_ms // 3),
            rebalance_timeout_ms=int(transport.rebalance_timeout * 1000),
        )
        try:
            await kafka.start()
            kafka.subscribe([self.topic], listener=_Rebalance(self))
        except BaseException:
            await _quietly(kafka.stop())
            raise
        self.kafka = kafka
        transport.consumers.add(self)
        loop = asyncio.get_running_loop()
        self.loops = [loop.create_task(self._fetch()), loop.create_task(self._commit_loop()),
                      loop.create_task(self._lag_loop())]  # fmt: skip

    # -- fetching and handing over ---------------------------------------------------------------------------

    async def _fetch(self) -> None:
        kafka = self.kafka
        while True:
            while self.prefetch - self.unsettled < self.refill:
                self.slot_freed.clear()
                await self.slot_freed.wait()
            try:
                # NOTE: no more records than free slots: every record fetched is handed over at once, so the
                # consumer's position never runs ahead of what this member is handling
                batch = await kafka.getmany(timeout_ms=FETCH_WAIT_MS, max_records=self.prefetch - self.unsettled)
            except ConsumerStoppedError:
                return
            except KafkaError as exc:
                logger.warning("fetching %s for group %s failed, trying again: %r", self.topic, self.group, exc)
                await asyncio.sleep(1.0)
                continue
            except Exception:
                logger.exception("fetching %s for group %s failed, trying again", self.topic, self.group)
                await asyncio.sleep(1.0)
                continue
            for tp, records in batch.items():
                state = self.partitions.get(tp)
                if state is None:  # assigned (aiokafka returns only those) before its callback ran
                    state = self.partitions[tp] = _Partition(tp)
                if state.revoked:
                    continue  # NOTE: next_offset stays put: if it comes back, fetching resumes before these
                for record in records:
                    self.unsettled += 1
                    state.outstanding.append(record.offset)
                    state.next_offset = record.offset + 1
                    if self.in_order:
                        state.waiting.append(record)
                    else:
                        self._hand_over(state, record, 0)
                if self.in_order and state.worker is None and state.waiting:
                    state.worker = asyncio.get_running_loop().create_task(self._work(state))
                    self._track(state, state.worker)
                highwater = kafka.highwater(tp)
                if highwater is not None:
                    metrics.lag(self.name, tp.partition, max(0, highwater - records[-1].offset - 1))

    async def _work(self, state: _Partition) -> None:
        """One partition's records, one after another, for a subscriber that handles one at a time."""
        try:
            while state.waiting:
                record = state.waiting.popleft()
                if state.revoked or self.stopping:  # not started: whoever owns the partition next reads it again
                    self._free_slot()
                    state.abandoned += 1
                    continue
                await self._deliver(state, record, 0)
        finally:
            state.worker = None

    def _hand_over(self, state: _Partition, record: Any, redelivered: int) -> None:
        self._track(state, asyncio.get_running_loop().create_task(self._deliver(state, record, redelivered)))

    async def _deliver(self, state: _Partition, record: Any, redelivered: int) -> None:
        """Hand ``record`` to the handler and see that it is settled."""
        settled = False

        async def settle(outcome: str) -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            self._settled(state, record, redelivered, outcome)

        # NOTE: a Kafka header may have no value (null, as other clients send it): an empty one here, where its
        # ``None`` would end the fetch loop and with it the consumer
        headers = {name.lower(): _text(value or b"") for name, value in record.headers or ()}
        key = None if record.key is None else _text(record.key)
        meta = {"partition": record.partition, "offset": record.offset, "timestamp": record.timestamp}
        delivery = Delivery(record.topic, record.value or b"", headers, key, settle, redelivered=redelivered,
                            meta=meta)  # fmt: skip

        try:
            await self.handler(delivery)
        except Exception:
            logger.exception("handler of %s (group %s) raised; the record goes back", self.topic, self.group)
        finally:
            if not settled:  # ended without settling (cancelled, or a manual handler that forgot): again
                await settle("nack")

    def _track(self, state: _Partition, task: asyncio.Task[None]) -> None:
        self.tasks.add(task)
        state.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(state.tasks.discard)

    def _settled(self, state: _Partition, record: Any, redelivered: int, outcome: str) -> None:
        if self.released:
            logger.debug("%s of %s[%d]@%d after the consumer stopped: dropped, the group reads it again",
                         outcome, self.topic, record.partition, record.offset)  # fmt: skip
            return
        ours = self.partitions.get(state.tp) is state
        if outcome == "nack" and ours and not state.revoked and not self.stopping:
            # handed over again in this process, keeping its slot; its offset stays uncommitted meanwhile
            self._track(state, asyncio.get_running_loop().create_task(self._redeliver(state, record, redelivered)))
            return
        self._free_slot()
        if not ours:
            logger.debug("%s of %s[%d]@%d: the partition went to another member, which reads it again",
                         outcome, self.topic, record.partition, record.offset)  # fmt: skip
        elif outcome == "nack":
            state.abandoned += 1  # not committed: whoever owns the partition next reads it again
        elif state.settle(record.offset):
            self.commit_wanted.set()

    async def _redeliver(self, state: _Partition, record: Any, redelivered: int) -> None:
        if redelivered:
            await asyncio.sleep(min(REDELIVERY_BACKOFF_CAP, 0.01 * 2**redelivered))
        if self.partitions.get(state.tp) is state and not state.revoked and not self.stopping and not self.released:
            self._hand_over(state, record, redelivered + 1)
            return
        self._free_slot()
        if self.partitions.get(state.tp) is state:
            state.abandoned += 1

    def _free_slot(self) -> None:
        self.unsettled -= 1
        self.slot_freed.set()

    # -- committing ------------------------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            await self.commit_wanted.wait()
            self.commit_wanted.clear()  # settles from now on ask for the next commit: they coalesce into it
            if not await self.commit():
                await asyncio.sleep(1.0)
                if any(state.pending_commit() is not None for state in self.partitions.values()):
                    self.commit_wanted.set()

    async def commit(self) -> bool:
        """Commit every partition's settled prefix not yet committed; whether the broker took it."""
        async with self.commit_lock:
            kafka = self.kafka
            assigned = kafka.assignment()
            states = {tp: state for tp, state in self.partitions.items() if tp in assigned}
            offsets = {tp: state.commit_to for tp, state in states.items() if state.pending_commit() is not None}
            if not offsets:
                return True
            try:
                await kafka.commit(offsets)
            except KafkaError as exc:
                # a rebalance under way (its revocation commits again), or the broker gone (tried again)
                logger.info("committing %s for group %s failed: %r", self.topic, self.group, exc)
                return False
            for tp, offset in offsets.items():
                states[tp].committed = offset
            return True

    async def _bounded_commit(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.commit(), timeout)
        except TimeoutError:
            logger.warning("committing %s for group %s took over %.0f s; its records may be read again",
                           self.topic, self.group, timeout)  # fmt: skip

    # -- rebalancing -----------------------------------------------------------------------------------------

    async def revoked(self, revoked: set[Any]) -> None:
        """Before a rebalance: hand nothing more of ``revoked`` over, let its handlers finish (bounded), commit."""
        states = [self.partitions[tp] for tp in revoked if tp in self.partitions]
        for state in states:
            state.revoked = True
        if self.released:
            return
        budget = self.transport.rebalance_timeout / 2
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        under_way = set().union(*(state.tasks for state in states))
        while under_way and loop.time() < deadline:  # NOTE: a redelivery ending starts no new handler when revoked
            await asyncio.wait(under_way, timeout=deadline - loop.time())
            under_way = set().union(*(state.tasks for state in states))
        if under_way:
            logger.warning("%d handlers of %s (group %s) still running at a rebalance after %.0f s: their records "
                           "may be handled again by the next owner", len(under_way), self.topic, self.group,
                           budget)  # fmt: skip
        await self._bounded_commit(max(1.0, deadline - loop.time()))

    def assigned(self, assigned: set[Any]) -> None:
        """After a rebalance: forget the partitions that went elsewhere; resume the ones that came back."""
        for tp in list(self.partitions):
            if tp not in assigned:
                del self.partitions[tp]
                metrics.lag(self.name, tp.partition, None)
        for tp in assigned:
            state = self.partitions.get(tp)
            if state is not None and not state.abandoned:
                state.revoked = False
                if state.next_offset is not None:
                    # NOTE: the committed offset lags behind the handlers still running: fetching from it would
                    # hand their records over a second time
                    self.kafka.seek(tp, state.next_offset)
            else:
                # new, or with records nacked while revoked: read from the committed offset (those come again)
                self.partitions[tp] = _Partition(tp)

    # -- the lag gauge ---------------------------------------------------------------------------------------

    async def _lag_loop(self) -> None:
        kafka = self.kafka
        while True:
            await asyncio.sleep(LAG_INTERVAL)
            for tp in list(kafka.assignment()):
                highwater = kafka.highwater(tp)
                if highwater is None:
                    continue
                try:
                    position = await asyncio.wait_for(kafka.position(tp), 1.0)
                except (KafkaError, TimeoutError):
                    continue
                metrics.lag(self.name, tp.partition, max(0, highwater - position))

    async def _leave(self, node_id: Any, member_id: str) -> None:
        """Leave the group as ``member_id`` through the producer's connection (the consumer's is closed)."""
        producer = self.transport.producer
        if producer is not None:
            await asyncio.wait_for(
                producer.client.send(node_id, LeaveGroupRequest(self.group, member_id)), LEAVE_TIMEOUT
            )

    # -- stopping --------------------------------------------------------------------------------------------

    async def stop(self) -> None:
        self.stopping = True
        fetch = self.loops[0] if self.loops else None
        if fetch is not None:
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetch
        while self.tasks:  # NOTE: nothing is handed over again while stopping, so this ends
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.release()

    async def release(self) -> None:
        """Commit what finished, leave the group, and close the client (what ``stop`` ends with; ``close`` too,
        when ``Broker.stop`` gave up waiting for the handlers)."""
        async with self.release_lock:
            if self.released:
                return
            self.stopping = True
            for task in self.loops:
                task.cancel()
            for task in self.loops:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._bounded_commit(FINAL_COMMIT_TIMEOUT)
            self.released = True  # settles from now on are dropped: their records go back to the group
            # NOTE: aiokafka leaves the group only from generation 1 on, as Kafka numbers them; tansu starts at 0,
            # and a member that did not leave holds its partitions until its session times out
            coordinator: Any = getattr(self.kafka, "_coordinator", None)
            member = None
            if coordinator is not None and coordinator.generation == 0 and coordinator.member_id:
                member = (coordinator.coordinator_id, coordinator.member_id)
            try:
                await asyncio.wait_for(self.kafka.stop(), LEAVE_TIMEOUT)
                if member is not None:
                    await self._leave(*member)
            except (KafkaError, TimeoutError) as exc:
                logger.warning("leaving group %s of %s: %r", self.group, self.topic, exc)
            for tp in self.partitions:
                metrics.lag(self.name, tp.partition, None)
            self.partitions.clear()
            self.transport.consumers.discard(self)
