"""``Broker("sqs://us-east-1")``: Amazon SQS (or any SQS-compatible endpoint) through aiobotocore.

URL: ``sqs://<region>`` speaks to AWS's endpoint for the region; ``sqs://<region>?endpoint_url=http://host:4566``
to another (LocalStack, moto, ElasticMQ). Credentials come from the usual AWS chain (environment, shared config,
instance role) of the ``profile`` option's session.

Topology: one queue per topic, found by name (GetQueueUrl, cached) and created when missing (``create_queues``).
SQS queue names allow only letters, digits, ``-`` and ``_`` (80 at most), so a topic's name maps to its queue's:
dots become ``-`` except a trailing ``.fifo``, after the ``queue_prefix``; ``orders.dlq`` is queue
``orders-dlq``. A name that cannot map (other characters, too long) is refused. A topic ending in ``.fifo`` is a
FIFO queue: created with ``FifoQueue`` and without content-based deduplication; a message's key is its
``MessageGroupId`` (a default group without a key), its Cello message id its ``MessageDeduplicationId`` — so one
key's messages come in order, and the same message id published twice within SQS's five minutes is kept once.

Groups: a queue is shared by all who read it, so SQS has no fan-out (``fan_out = False``): the members of one
group — in any process — share the topic's queue, and a second group consuming the same topic in one ``Broker``
is refused with ``ConfigurationError`` (publish to a topic per group, or fan out with SNS, outside Cello).

Messages: the body travels as SQS text when it is valid UTF-8 made of the characters SQS allows; other bodies
(binary, control characters) travel base64-encoded, and an empty one as a placeholder, marked in the message's
one Cello attribute: ``cello``, a JSON object holding the headers, the key and that encoding (SQS allows ten
attributes a message, so headers do not take one each). A message without it (published by other software) keeps
its string attributes as headers and its FIFO group id as key.

Settling: ack and reject delete the message (in batches of up to ten as settles come together); nack makes it
visible again at once (ChangeMessageVisibility 0). A message not settled — its worker killed, its connection
lost — comes back after its visibility timeout: that is SQS's redelivery, and ``Delivery.redelivered`` is its
``ApproximateReceiveCount`` less one. While a handler runs, its message's visibility is extended every third of
the timeout, so a long handler does not see its message delivered again meanwhile. ``Delivery.meta`` carries
``receipt_handle``, ``message_id`` (SQS's), ``queue_url`` and, on FIFO queues, ``group_id`` and
``sequence_number``.

Options: ``profile`` (AWS profile; default: the chain's), ``visibility_timeout`` (30.0 s, whole seconds),
``wait_time`` (20.0 s long polling, at most 20; 0 polls short, a second apart while the queue is empty),
``create_queues`` (True), ``queue_attributes`` (more attributes for the queues Cello creates:
``MessageRetentionPeriod``, ``RedrivePolicy``, ...), ``queue_prefix`` (""), ``timeout`` (5.0 s for connecting,
``ping`` and each call beside the long poll), ``max_connections`` (50 HTTP connections; each of a consumer's pollers
holds one during its long poll: one poller per ten messages of ``prefetch``, at most eight). SQS has no request/reply.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import math
import re
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import ClientError, NoRegionError, ProfileNotFound

from ..http.exceptions import ConfigurationError
from .message import Delivery
from .transport import Consumer, Handler, Transport

__all__ = ["SqsTransport", "queue_name"]

logger = logging.getLogger("cello.messaging.sqs")

ATTRIBUTE = "cello"  # the one message attribute carrying headers, key and body encoding
DEFAULT_GROUP = "cello"  # a FIFO message's group when it has no key
BATCH = 10  # SQS's most entries in a batch call and messages in a receive
BATCH_BYTES = 256 * 1024  # NOTE: the oldest (smallest) batch payload limit, kept so every endpoint accepts a batch
FIFO_SUFFIX = ".fifo"
FIFO_ONLY_ATTRIBUTES = {"ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"}
RECEIVED_ATTRIBUTES = ["ApproximateReceiveCount", "MessageGroupId", "SequenceNumber"]

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
_PREFIX = re.compile(r"[A-Za-z0-9_-]*")
_REGION = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
# group and deduplication ids: 1-128 printable ASCII characters
_SQS_ID = re.compile(r"[\x21-\x7e]{1,128}")
# what an SQS body must not contain (it allows #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF)
_NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_QUEUE_MISSING = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_ACCESS_DENIED = {"AccessDenied", "AccessDeniedException"}

OPTIONS = {"profile", "visibility_timeout", "wait_time", "create_queues", "queue_attributes", "queue_prefix",
           "timeout", "max_connections"}  # fmt: skip


class QueueNotFound(LookupError):
    """A topic's queue does not exist, and ``create_queues`` is off."""


class SendFailed(Exception):
    """SQS refused one message of a batch (its code and reason in the message)."""


def queue_name(topic: str, prefix: str = "") -> str:
    """The SQS queue name of ``topic``: ``prefix`` + the name with dots as ``-``, a trailing ``.fifo`` kept."""
    fifo = topic.endswith(FIFO_SUFFIX)
    base = prefix + (topic[: -len(FIFO_SUFFIX)] if fifo else topic).replace(".", "-")
    suffix = FIFO_SUFFIX if fifo else ""
    if not _QUEUE_NAME.fullmatch(base) or len(base) + len(suffix) > 80:
        raise ConfigurationError(
            f"topic {topic!r} cannot be an SQS queue: queue names are 1-80 letters, digits, '-' and '_' "
            "(dots become '-', a trailing '.fifo' makes a FIFO queue)"
        )
    return base + suffix


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _queue_missing(exc: BaseException) -> bool:
    if not isinstance(exc, ClientError):
        return False
    error = exc.response.get("Error", {})
    return error.get("Code") in _QUEUE_MISSING or error.get("QueryErrorCode") in _QUEUE_MISSING


def _sqs_id(value: str) -> str:
    """``value`` as an SQS group or deduplication id: as it is when allowed, else its SHA-256 (same value, same
    id)."""
    return value if _SQS_ID.fullmatch(value) else hashlib.sha256(value.encode()).hexdigest()


def encode_body(body: bytes) -> tuple[str, str | None]:
    """``(SQS body text, encoding)``: the text itself (encoding None) when SQS can carry it, else base64."""
    if not body:
        return "empty", "empty"  # NOTE: SQS refuses an empty body
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return base64.b64encode(body).decode(), "base64"
    if _NOT_SQS_TEXT.search(text):
        return base64.b64encode(body).decode(), "base64"
    return text, None


def decode_body(text: str, encoding: str | None) -> bytes:
    if encoding == "base64":
        return base64.b64decode(text)
    if encoding == "empty":
        return b""
    return text.encode()


class _Batcher:
    """One SQS batch action (SendMessageBatch, DeleteMessageBatch) fed entry by entry: the entries waiting for a
    queue go out together, up to ten, as soon as the call before them is answered — nothing waits to fill a
    batch, and the entries that arrive during a call make the next one. A second call for a queue starts only
    when a full batch waits, up to ``parallel`` calls at once."""

    def __init__(self, call: Callable[[str, list[dict[str, Any]]], Awaitable[Any]], parallel: Callable[[str], int],
                 ) -> None:  # fmt: skip
        self.call = call
        self.parallel = parallel  # calls at once for a queue (one keeps a FIFO queue's order)
        self.waiting: dict[str, deque[tuple[dict[str, Any], int, asyncio.Future[None]]]] = {}
        self.running: dict[str, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def submit(self, queue_url: str, entry: dict[str, Any], size: int = 0) -> None:
        """Send ``entry`` with the next batch for ``queue_url``; raises what SQS said of it."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = self.waiting.setdefault(queue_url, deque())
        waiting.append((entry, size, future))
        running = self.running.get(queue_url, 0)
        # NOTE: another call at once only for a full batch: what comes during a call waits for the next one
        if not running or (len(waiting) >= BATCH and running < self.parallel(queue_url)):
            self.running[queue_url] = running + 1
            task = asyncio.get_running_loop().create_task(self._flush(queue_url))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        await future

    async def _flush(self, queue_url: str) -> None:
        waiting = self.waiting[queue_url]
        try:
            while waiting:
                batch: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
                total = 0
                while waiting and len(batch) < BATCH and (not batch or total + waiting[0][1] <= BATCH_BYTES):
                    entry, size, future = waiting.popleft()
                    total += size
                    if not future.done():  # NOTE: a submitter cancelled before its turn: not sent
                        batch.append(({**entry, "Id": str(len(batch))}, future))
                if batch:
                    await self._send(queue_url, batch)
        finally:
            self.running[queue_url] -= 1
            if not self.running[queue_url]:
                del self.running[queue_url]
                if not waiting:
                    self.waiting.pop(queue_url, None)

    async def _send(self, queue_url: str, batch: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        futures: dict[str, asyncio.Future[None]] = {entry["Id"]: future for entry, future in batch}
        try:
            answer = await self.call(queue_url, [entry for entry, _ in batch])
        except Exception as exc:
            for future in futures.values():
                if not future.done():
                    future.set_exception(exc)
            return
        for failed in answer.get("Failed", ()):
            refused = futures.pop(failed["Id"], None)
            if refused is not None and not refused.done():
                refused.set_exception(SendFailed(f"{failed.get('Code')}: {failed.get('Message')}"))
        for future in futures.values():
            if not future.done():
                future.set_result(None)

    def close(self) -> list[asyncio.Task[None]]:
        """Send nothing more: what waits fails with ``ConnectionError``; the calls under way, cancelled."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        for waiting in self.waiting.values():
            for _, _, future in waiting:
                if not future.done():
                    future.set_exception(ConnectionError("sqs:// transport closed"))
        self.waiting.clear()
        return tasks


class SqsTransport(Transport):
    scheme = "sqs"
    supports_request = False
    fan_out = False  # one queue per topic, shared by whoever reads it

    def __init__(self, url: str = "sqs://", **options: Any) -> None:
        self.region, self.endpoint_url = _parse_url(url)
        unknown = set(options) - OPTIONS
        if unknown:
            raise ConfigurationError(
                f"unknown sqs:// option(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(OPTIONS))})"
            )
        profile = options.get("profile")
        if profile is not None and (not isinstance(profile, str) or not profile):
            raise ConfigurationError("sqs:// profile is the name of an AWS profile")
        self.profile: str | None = profile
        self.visibility_timeout = math.ceil(
            _number(options, "visibility_timeout", 30.0, low=1.0, high=43200.0)
        )  # NOTE: SQS counts whole seconds
        self.wait_time = math.ceil(_number(options, "wait_time", 20.0, low=0.0, high=20.0))
        self.timeout = _number(options, "timeout", 5.0, low=0.1, high=300.0)
        self.create_queues = options.get("create_queues", True)
        if not isinstance(self.create_queues, bool):
            raise ConfigurationError("sqs:// create_queues is True or False")
        self.queue_prefix = options.get("queue_prefix", "")
        if not isinstance(self.queue_prefix, str) or not _PREFIX.fullmatch(self.queue_prefix):
            raise ConfigurationError("sqs:// queue_prefix holds only letters, digits, '-' and '_'")
        self.queue_attributes = _queue_attributes(options.get("queue_attributes", {}))
        self.max_connections = options.get("max_connections", 50)
        if isinstance(self.max_connections, bool) or not isinstance(self.max_connections, int) \
                or self.max_connections < 2:  # fmt: skip
            raise ConfigurationError("sqs:// max_connections is a whole number >= 2")
        self.client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._urls: dict[str, str] = {}  # queue name -> queue URL
        self._resolving = asyncio.Lock()
        self._groups: dict[str, tuple[str, int]] = {}  # queue name -> (group consuming it, its consumers)
        self._consumers: set[_SqsConsumer] = set()
        self._sends = _Batcher(self._send_batch, lambda url: 1 if url.endswith(FIFO_SUFFIX) else 8)
        self._deletes = _Batcher(self._delete_batch, lambda url: 8)
        self.closed = True

    # -- connection ------------------------------------------------------------------------------------------

    async def connect(self) -> None:
        config = AioConfig(
            connect_timeout=self.timeout,
            read_timeout=self.wait_time + self.timeout,  # NOTE: a long poll answers after wait_time at most
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=self.max_connections,
        )
        stack = contextlib.AsyncExitStack()
        try:
            session = AioSession(profile=self.profile)
            context = session.create_client("sqs", region_name=self.region, endpoint_url=self.endpoint_url,
                                            config=config)  # fmt: skip
            client = await stack.enter_async_context(context)
            await asyncio.wait_for(self._probe(client), self.timeout * 3)
        except (NoRegionError, ProfileNotFound) as exc:
            await stack.aclose()
            raise ConfigurationError(f"sqs:// cannot make an SQS client: {exc}") from exc
        except BaseException:
            await stack.aclose()
            raise
        self.client, self._stack, self.closed = client, stack, False
        self._urls.clear()  # NOTE: a new connection may face a new server: queues are looked up again

    async def _probe(self, client: Any) -> None:
        """The cheapest call SQS answers; a refusal to list queues still proves it answers."""
        try:
            await client.list_queues(MaxResults=1)
        except ClientError as exc:
            if _error_code(exc) not in _ACCESS_DENIED:
                raise

    async def close(self) -> None:
        self.closed = True
        halted = [task for consumer in list(self._consumers) for task in consumer.halt()]
        # NOTE: handlers still running settle nothing now: SQS redelivers their messages after their visibility
        self._consumers.clear()
        self._groups.clear()
        halted += self._sends.close() + self._deletes.close()
        await asyncio.gather(*halted, return_exceptions=True)
        stack, self._stack, self.client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def ping(self) -> bool:
        client = self.client
        if client is None or self.closed:
            return False
        try:
            await asyncio.wait_for(self._probe(client), self.timeout)
        except Exception as exc:
            logger.debug("sqs ping failed: %r", exc)
            return False
        return True

    def describe(self) -> dict[str, Any]:
        if self.endpoint_url:
            host = urlsplit(self.endpoint_url).netloc
        else:
            host = f"sqs.{self.region}.amazonaws.com" if self.region else "sqs.amazonaws.com"
        return {"protocol": self.scheme, "host": host}

    def _connected_client(self) -> Any:
        if self.client is None or self.closed:
            raise ConnectionError("sqs:// is not connected")
        return self.client

    # -- queues ----------------------------------------------------------------------------------------------

    async def queue_url(self, name: str) -> str:
        """The URL of queue ``name``, cached; created when missing (``create_queues``)."""
        url = self._urls.get(name)
        if url is not None:
            return url
        async with self._resolving:
            url = self._urls.get(name)
            if url is not None:
                return url
            client = self._connected_client()
            try:
                url = (await client.get_queue_url(QueueName=name))["QueueUrl"]
            except ClientError as exc:
                if not _queue_missing(exc):
                    raise
                if not self.create_queues:
                    raise QueueNotFound(f"SQS queue {name!r} does not exist (and create_queues is off)") from exc
                url = (await client.create_queue(QueueName=name, Attributes=self._attributes_for(name)))["QueueUrl"]
                logger.info("created SQS queue %s", name)
            assert isinstance(url, str)
            self._urls[name] = url
            return url

    def forget_queue(self, name: str) -> None:
        """Look ``name`` up again next time (it no longer exists: deleted, or the server lost its state)."""
        self._urls.pop(name, None)

    def _attributes_for(self, name: str) -> dict[str, str]:
        fifo = name.endswith(FIFO_SUFFIX)
        attributes = {"VisibilityTimeout": str(self.visibility_timeout)}
        if fifo:
            attributes.update(FifoQueue="true", ContentBasedDeduplication="false")
        for attribute, value in self.queue_attributes.items():
            if fifo or attribute not in FIFO_ONLY_ATTRIBUTES:
                attributes[attribute] = value
        return attributes

    # -- publishing ------------------------------------------------------------------------------------------

    async def publish(self, topic: str, body: bytes, *, key: str | None, headers: Mapping[str, str]) -> None:
        self._connected_client()
        name = queue_name(topic, self.queue_prefix)
        text, encoding = encode_body(body)
        carried: dict[str, Any] = {"headers": dict(headers)}
        if key is not None:
            carried["key"] = key
        if encoding is not None:
            carried["encoding"] = encoding
        attribute = orjson.dumps(carried).decode()
        entry: dict[str, Any] = {
            "MessageBody": text,
            "MessageAttributes": {ATTRIBUTE: {"DataType": "String", "StringValue": attribute}},
        }
        if name.endswith(FIFO_SUFFIX):
            entry["MessageGroupId"] = _sqs_id(key) if key is not None else DEFAULT_GROUP
            entry["MessageDeduplicationId"] = _sqs_id(headers.get("x-message-id") or uuid.uuid4().hex)
        size = len(text.encode()) + len(ATTRIBUTE) + len("String") + len(attribute.encode())
        for first in (True, False):
            url = await self.queue_url(name)
            try:
                await self._sends.submit(url, entry, size)
                return
            except ClientError as exc:
                if not (first and _queue_missing(exc)):
                    raise
                self.forget_queue(name)  # gone since it was looked up: look it up (create it) again, send again

    async def _send_batch(self, queue_url: str, entries: list[dict[str, Any]]) -> Any:
        return await self._connected_client().send_message_batch(QueueUrl=queue_url, Entries=entries)

    # -- consuming and settling ------------------------------------------------------------------------------

    async def consume(self, topic: str, group: str, handler: Handler, *, prefetch: int) -> Consumer:
        if prefetch < 1:
            raise ConfigurationError("sqs:// consumers need prefetch >= 1")
        name = queue_name(topic, self.queue_prefix)
        consuming, count = self._groups.get(name, (group, 0))
        if consuming != group:
            raise ConfigurationError(
                f"sqs:// has no fan-out: topic {topic!r} is one SQS queue ({name}) that group {consuming!r} "
                f"already consumes, so group {group!r} cannot get its messages too — give each group its own topic"
            )
        queue_url = await self.queue_url(name)  # NOTE: a missing queue fails the start (Broker tries again)
        self._groups[name] = (group, count + 1)
        consumer = _SqsConsumer(self, topic, name, queue_url, handler, prefetch)
        self._consumers.add(consumer)
        consumer.start()
        return consumer

    def _release_group(self, name: str) -> None:
        group, count = self._groups.get(name, ("", 0))
        if count > 1:
            self._groups[name] = (group, count - 1)
        else:
            self._groups.pop(name, None)

    async def settle(self, queue_url: str, receipt_handle: str, outcome: str) -> None:
        """ack and reject delete the message (batched); nack makes it visible again at once."""
        if self.closed:
            logger.debug("sqs message settled (%s) after the transport closed: SQS redelivers it", outcome)
            return
        try:
            if outcome == "nack":
                await self._connected_client().change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=0
                )
            else:
                await self._deletes.submit(queue_url, {"ReceiptHandle": receipt_handle})
        except Exception as exc:
            # NOTE: not raised to the handler: the message comes back after its visibility timeout (at least once)
            logger.warning("sqs message could not be settled (%s), SQS redelivers it: %r", outcome, exc)

    async def _delete_batch(self, queue_url: str, entries: list[dict[str, Any]]) -> Any:
        return await self._connected_client().delete_message_batch(QueueUrl=queue_url, Entries=entries)

    async def extend(self, queue_url: str, receipt_handles: list[str]) -> None:
        """Keep messages whose handlers run invisible for another visibility timeout."""
        client = self._connected_client()
        for start in range(0, len(receipt_handles), BATCH):
            entries = [{"Id": str(n), "ReceiptHandle": handle, "VisibilityTimeout": self.visibility_timeout}
                       for n, handle in enumerate(receipt_handles[start : start + BATCH])]  # fmt: skip
            answer = await client.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
            for failed in answer.get("Failed", ()):  # NOTE: mostly settled meanwhile: its handle is gone
                logger.debug("sqs visibility not extended: %s %s", failed.get("Code"), failed.get("Message"))


class _SqsConsumer(Consumer):
    """The receive loops of one subscription, the tasks of its handlers, and the heartbeat that keeps the messages
    of running handlers invisible."""

    def __init__(self, transport: SqsTransport, topic: str, name: str, queue_url: str, handler: Handler,
                 prefetch: int) -> None:  # fmt: skip
        self.transport = transport
        self.topic = topic
        self.name = name
        self.queue_url = queue_url
        self.handler = handler
        self.free = prefetch  # deliveries that may still be handed over
        self.slot_freed = asyncio.Event()
        self.in_flight: set[str] = set()  # receipt handles of deliveries not yet settled
        self.pollers: list[asyncio.Task[None]] = []
        self.heartbeat: asyncio.Task[None] | None = None
        self.extending = asyncio.Lock()  # held while the heartbeat extends visibility
        self.handed: set[asyncio.Task[None]] = set()
        # NOTE: one receive asks for ten messages at most: more pollers keep a large prefetch busy
        self.poller_count = min(8, math.ceil(prefetch / BATCH))
        self.stopped = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.pollers = [loop.create_task(self._poll()) for _ in range(self.poller_count)]
        self.heartbeat = loop.create_task(self._keep_invisible())

    async def _poll(self) -> None:
        transport = self.transport
        failures = 0
        while True:
            while self.free <= 0:
                self.slot_freed.clear()
                await self.slot_freed.wait()
            wanted = min(BATCH, self.free)
            self.free -= wanted  # NOTE: taken before the call so that pollers do not ask for the same slots
            messages: list[dict[str, Any]] = []
            try:
                answer = await transport._connected_client().receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=wanted,
                    WaitTimeSeconds=transport.wait_time,
                    VisibilityTimeout=transport.visibility_timeout,
                    MessageAttributeNames=["All"],
                    MessageSystemAttributeNames=RECEIVED_ATTRIBUTES,
                )
                messages = answer.get("Messages", [])
                failures = 0
            except asyncio.CancelledError:
                self._release(wanted)
                raise
            except Exception as exc:
                failures += 1
                if _queue_missing(exc):  # deleted, or the server lost its state: look it up (create it) again
                    logger.warning("sqs queue %s is gone; looking it up again", self.name)
                    with contextlib.suppress(Exception):
                        transport.forget_queue(self.name)
                        self.queue_url = await transport.queue_url(self.name)
                else:
                    logger.warning("sqs receive from %s failed (%d in a row): %r", self.name, failures, exc)
                self._release(wanted)
                await asyncio.sleep(min(0.25 * 2**failures, 10.0))
                continue
            self._release(wanted - len(messages))
            if not messages and not transport.wait_time:
                await asyncio.sleep(1.0)  # NOTE: short polling answers at once: pause as a long poll would wait
            for message in messages:
                self.in_flight.add(message["ReceiptHandle"])
                task = asyncio.get_running_loop().create_task(self._hand_over(message))
                self.handed.add(task)
                task.add_done_callback(self.handed.discard)

    def _release(self, slots: int) -> None:
        if slots:
            self.free += slots
            self.slot_freed.set()

    async def _hand_over(self, message: dict[str, Any]) -> None:
        transport, queue_url = self.transport, self.queue_url
        receipt_handle = message["ReceiptHandle"]
        settled = False

        async def settle(outcome: str) -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            self.in_flight.discard(receipt_handle)
            self._release(1)
            if outcome == "nack":
                async with self.extending:  # NOTE: else an extension under way could hide it again after the nack
                    await transport.settle(queue_url, receipt_handle, outcome)
            else:
                await transport.settle(queue_url, receipt_handle, outcome)

        body, headers, key = _unpack(message)
        system = message.get("Attributes", {})
        meta = {"receipt_handle": receipt_handle, "message_id": message.get("MessageId"), "queue_url": queue_url}
        if "MessageGroupId" in system:
            meta["group_id"] = system["MessageGroupId"]
        if "SequenceNumber" in system:
            meta["sequence_number"] = system["SequenceNumber"]
        redelivered = max(0, int(system.get("ApproximateReceiveCount", "1")) - 1)
        delivery = Delivery(self.topic, body, headers, key, settle, redelivered=redelivered, meta=meta)
        try:
            await self.handler(delivery)
        except Exception:
            logger.exception("sqs handler of %s failed outside its subscriber", self.topic)
        finally:
            if not settled:  # the handler ended without settling: visible again now, as a nack
                await settle("nack")

    async def _keep_invisible(self) -> None:
        interval = max(0.5, self.transport.visibility_timeout / 3)
        while True:
            await asyncio.sleep(interval)
            if not self.in_flight:
                continue
            try:
                async with self.extending:
                    await asyncio.wait_for(self.transport.extend(self.queue_url, list(self.in_flight)), interval)
            except Exception as exc:
                logger.warning("sqs visibility of %d messages on %s not extended: %r",
                               len(self.in_flight), self.name, exc)  # fmt: skip

    async def stop(self) -> None:
        if self.stopped:
            return
        pollers, self.pollers = self.pollers, []
        for poller in pollers:
            poller.cancel()  # NOTE: a long poll under way is abandoned, not sat out
        await asyncio.gather(*pollers, return_exceptions=True)
        if self.handed:
            await asyncio.gather(*self.handed, return_exceptions=True)
        await asyncio.gather(*self.halt(), return_exceptions=True)

    def halt(self) -> list[asyncio.Task[None]]:
        """Stop everything but the handlers still running (stopped, or the transport closed); the tasks
        cancelled."""
        if self.stopped:
            return []
        self.stopped = True
        tasks = [*self.pollers, *([self.heartbeat] if self.heartbeat is not None else [])]
        for task in tasks:
            task.cancel()
        self.transport._consumers.discard(self)
        self.transport._release_group(self.name)
        return tasks


def _unpack(message: dict[str, Any]) -> tuple[bytes, dict[str, str], str | None]:
    """A received message's ``(body, headers, key)``: from Cello's attribute, or — published by other software —
    its string attributes and FIFO group id."""
    attributes = message.get("MessageAttributes") or {}
    headers: dict[str, str] = {}
    for name, value in attributes.items():
        if name != ATTRIBUTE and value.get("DataType", "").startswith(("String", "Number")):
            headers[name.lower()] = value.get("StringValue", "")
    key: str | None = message.get("Attributes", {}).get("MessageGroupId")
    encoding: str | None = None
    carried = attributes.get(ATTRIBUTE, {}).get("StringValue")
    if carried is not None:
        try:
            parsed = orjson.loads(carried)
            headers.update({str(name): str(value) for name, value in parsed.get("headers", {}).items()})
            key = parsed.get("key")
            encoding = parsed.get("encoding")
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            logger.warning("sqs message %s has a malformed %r attribute", message.get("MessageId"), ATTRIBUTE)
    text = message.get("Body", "")
    try:
        body = decode_body(text, encoding)
    except ValueError:
        logger.warning("sqs message %s is not valid %s: handed over as it is", message.get("MessageId"), encoding)
        body = text.encode()
    return body, headers, key


def _parse_url(url: str) -> tuple[str | None, str | None]:
    """``(region, endpoint URL)`` of ``sqs://<region>?endpoint_url=<url>``."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqs":
        raise ConfigurationError(f"not an sqs:// URL: {url!r}")
    region = parts.netloc or None
    if region is not None and not _REGION.fullmatch(region):
        raise ConfigurationError(f"sqs:// takes an AWS region (sqs://us-east-1), not {region!r}")
    if parts.path not in ("", "/") or parts.fragment:
        raise ConfigurationError(f"sqs:// URLs are sqs://<region>?endpoint_url=<url>, not {url!r}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"endpoint_url"}
    if unknown:
        raise ConfigurationError(f"sqs:// URLs take only endpoint_url in their query, not {', '.join(sorted(unknown))}")
    endpoint = query.get("endpoint_url", [None])[-1]
    if endpoint is not None:
        endpoint_parts = urlsplit(endpoint)
        if endpoint_parts.scheme not in ("http", "https") or not endpoint_parts.netloc:
            raise ConfigurationError(f"sqs:// endpoint_url is an http(s) URL, not {endpoint!r}")
    return region, endpoint


def _number(options: Mapping[str, Any], name: str, default: float, *, low: float, high: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigurationError(f"sqs:// {name} is a number of seconds from {low:g} to {high:g}, not {value!r}")
    return float(value)


def _queue_attributes(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigurationError("sqs:// queue_attributes maps SQS queue attribute names to values")
    attributes: dict[str, str] = {}
    for name, setting in value.items():
        if not isinstance(name, str) or not isinstance(setting, (str, int, bool)):
            raise ConfigurationError(f"sqs:// queue attribute {name!r} needs a text, number or boolean value")
        if name == "FifoQueue":
            raise ConfigurationError("sqs:// makes a queue FIFO when its topic ends in '.fifo', not by attribute")
        attributes[name] = str(setting).lower() if isinstance(setting, bool) else str(setting)
    return attributes
