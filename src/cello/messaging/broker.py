"""``Broker(url)``: publish messages, and subscribe handlers that take the same parameters as routes.

    broker = Broker("memory://")              # the embedded default; see cello.messaging for the others
    app.include_broker(broker)                # connected at startup, drained at shutdown, in every worker

    @broker.subscriber("orders", group="billing", concurrency=8, retries=3, dead_letter="orders.dlq")
    async def bill(order: Order, x_trace: str = Header("")):
        ...

    await broker.publish("orders", Order(...), key="customer-7")

A subscriber's handler is compiled like a route's, and every message goes through the same delivery policy on
every broker — guards, deduplication, retries with backoff, dead letters, per-key order, batches, replies:
``cello.messaging.subscriber`` says how. Delivery is at least once: a message is acked when its handler returns.
The broker itself connects at the app's startup (trying again in the background while it does not answer),
drains at shutdown, publishes, and answers ``request`` where its adapter has request/reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import orjson

from ..http.exceptions import ConfigurationError, ServiceUnavailable
from ..middleware.request_id import current_request_id
from .message import encode, new_id
from .subscriber import Backoff, Subscriber, check_policy
from .transport import Consumer, Transport

if TYPE_CHECKING:
    from ..app import App
    from ..stores.base import Store

__all__ = ["Broker", "BrokerUnavailable", "RequestFailed"]

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("cello.messaging")


class BrokerUnavailable(ServiceUnavailable, ConnectionError):
    """Publishing while the broker is not connected (not started yet, or not answering since startup), or a
    publish the broker did not take. Let through by an HTTP handler, a 503 with ``Retry-After``, as a store's."""


class RequestFailed(Exception):
    """``Broker.request``: the subscriber that took the request failed for good; the message is its error."""


class Broker:
    """One broker connection, its subscribers and its publishing; see the module.

    ``url``'s scheme picks the adapter (``memory://``; ``cello.messaging`` lists them).
    ``drain_timeout``: seconds shutdown waits for handlers under way before their messages go back to the broker.
    """

    def __init__(self, url: str = "memory://", *, drain_timeout: float = 10.0, **options: Any) -> None:
        self.url = url
        self.drain_timeout = drain_timeout
        self.transport: Transport = _transport_for(url, options)
        self.subscribers: list[Subscriber] = []
        self.app: App | None = None
        self._consumers: list[Consumer] = []
        self._real_transport: Transport | None = None  # while in_memory() stands in for it
        self._connecting: asyncio.Task[None] | None = None  # trying again after a failed connect at startup
        self.started = False  # start() ran (and stop() did not)
        self.connected = False  # the transport is connected and the subscribers consume

    # -- declaring -------------------------------------------------------------------------------------------

    def subscriber(
        self,
        topic: str,
        *,
        group: str | None = None,
        concurrency: int = 1,
        retries: int = 0,
        backoff: Backoff | None = None,
        dead_letter: str | None = None,
        ack: Literal["auto", "manual"] = "auto",
        name: str | None = None,
        dedup: Store | None = None,
        dedup_ttl: float = 86_400.0,
        guards: Sequence[Any] = (),
        batch: int | None = None,
        batch_timeout: float = 0.05,
        prefetch: int | None = None,
    ) -> Callable[[F], F]:
        """Handle ``topic``'s messages with the decorated function (``cello.messaging.subscriber`` says how).

        ``group``: the consumer group whose members share the messages (default: the handler's qualified name).
        ``concurrency``: messages (or batches) handled at once. ``retries``, ``backoff(attempt) -> seconds`` and
        ``dead_letter``: what happens when the handler raises. ``ack="manual"``: the handler settles the message.
        ``name``: in logs and metrics. ``dedup``: a store remembering handled message ids for ``dedup_ttl``
        seconds. ``guards``: rules that may refuse a message. ``batch``: up to that many messages per call,
        gathered for at most ``batch_timeout`` seconds. ``prefetch``: unsettled messages taken from the broker
        ahead of the handlers (default: twice the concurrency, at least 32, times the batch)."""
        # a mistake shows at the decorator
        check_policy(concurrency, retries, ack, batch, batch_timeout, dedup_ttl, prefetch)

        def decorator(handler: F) -> F:
            subscriber = Subscriber(
                self, topic, handler, group=group, concurrency=concurrency, retries=retries, backoff=backoff,
                dead_letter=dead_letter, ack=ack, name=name, dedup=dedup, dedup_ttl=dedup_ttl, guards=guards,
                batch=batch, batch_timeout=batch_timeout, prefetch=prefetch,
            )  # fmt: skip
            subscriber.forward_to.extend(getattr(handler, "__cello_publish_to__", ()))
            self.subscribers.append(subscriber)
            return handler

        return decorator

    def publisher(self, topic: str) -> Callable[[F], F]:
        """Publish what a subscriber's handler returns (when not None) to ``topic``; above or below
        ``@broker.subscriber``."""

        def decorator(handler: F) -> F:
            targets = getattr(handler, "__cello_publish_to__", None)
            if targets is None:
                targets = []
                handler.__cello_publish_to__ = targets  # type: ignore[attr-defined]
            targets.append(topic)
            for subscriber in self.subscribers:
                if subscriber.handler is handler and topic not in subscriber.forward_to:
                    subscriber.forward_to.append(topic)
            return handler

        return decorator

    # -- publishing ------------------------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
        message_id: str | None = None,
    ) -> str:
        """Send ``payload`` (JSON for dicts, lists and models; bytes and text as they are) to ``topic``; returns
        its message id. ``key`` keeps messages in order (one partition, one lane). ``correlation_id`` defaults to
        the request id of the request (``app.enable_request_id()``) or message being handled, if any."""
        self._check_connected()
        body, content_type = encode(payload)
        sent = {name.lower(): str(value) for name, value in (headers or {}).items()}
        sent.setdefault("content-type", content_type)
        message_id = message_id or sent.get("x-message-id") or new_id()
        sent["x-message-id"] = message_id
        if correlation_id is None:
            correlation_id = sent.get("x-correlation-id") or current_request_id.get()
        if correlation_id is not None:
            sent["x-correlation-id"] = correlation_id
        try:
            await self.transport.publish(topic, body, key=key, headers=sent)
        except (BrokerUnavailable, ConfigurationError, ValueError, TypeError):
            raise  # already said, or a mistake of the caller's (a topic or header the broker cannot carry)
        except Exception as exc:  # the client library's own error: the message may not have reached the broker
            scheme = self.transport.scheme
            raise BrokerUnavailable(f"{scheme}:// did not take a message for {topic!r}: {exc!r}") from exc
        return message_id

    async def request(
        self, topic: str, payload: Any, *, timeout: float = 5.0, headers: Mapping[str, str] | None = None
    ) -> Any:
        """Publish and wait for the reply of the subscriber that answers: its handler's return value (decoded from
        JSON). Where the broker has request/reply; ``TimeoutError`` when none comes within ``timeout`` seconds,
        ``RequestFailed`` when the handler failed for good."""
        if not self.transport.supports_request:
            raise ConfigurationError(f"{self.transport.scheme}:// brokers have no request/reply")
        self._check_connected()
        body, content_type = encode(payload)
        sent = {"content-type": content_type, "x-message-id": new_id(), **(headers or {})}
        reply = await self.transport.request(topic, body, headers=sent, timeout=timeout)
        if "x-cello-error" in reply.headers:
            raise RequestFailed(reply.headers["x-cello-error"])
        return (
            orjson.loads(reply.body)
            if reply.headers.get("content-type", "").startswith("application/json")
            else reply.body
        )

    def _check_connected(self) -> None:
        # NOTE: the memory broker keeps what is published before it starts, as a real one keeps it for its groups
        if not self.connected and self.transport.scheme != "memory":
            raise BrokerUnavailable(
                f"broker {self.transport.scheme}:// is not connected"
                + (" yet: it connects when the app starts" if not self.started else ", trying again")
            )

    # -- life ------------------------------------------------------------------------------------------------

    def attach(self, app: App) -> Broker:
        """``app.include_broker(broker)``: start with the app (each worker), drain and close when it stops, and
        report to the readiness check as ``broker``."""
        self.app = app
        app.on_startup(self.start)
        app.drain_hooks.append(self.stop)
        app.health_check("broker")(self.ping)
        return self

    async def start(self) -> None:
        """Connect, then start every subscriber's consumer. A broker that does not answer does not stop the app:
        it is tried again in the background (readiness failing meanwhile) until it does."""
        if self.started:
            return
        self.started = True
        for subscriber in self.subscribers:
            subscriber.compile(self.app)
        try:
            await self._connect()
        except ConfigurationError:
            self.started = False
            raise
        except Exception as exc:
            logger.error("broker %s unreachable at startup, trying again in the background: %r", self.url, exc)
            self._connecting = asyncio.get_running_loop().create_task(self._keep_connecting())

    async def _connect(self) -> None:
        await self.transport.connect()
        try:
            for subscriber in self.subscribers:
                subscriber.draining = False
                consumer = await self.transport.consume(
                    subscriber.topic, subscriber.group, subscriber.handle, prefetch=subscriber.prefetch
                )
                self._consumers.append(consumer)
        except BaseException:
            await self._stop_consumers()
            await self.transport.close()
            raise
        self.connected = True

    async def _keep_connecting(self) -> None:
        delay = 0.5
        while True:
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except ConfigurationError as exc:  # the broker answered, and refused: trying again changes nothing
                logger.error("broker %s refused this configuration; not trying again: %s", self.url, exc)
                return
            except Exception as exc:
                delay = min(delay * 2, 30.0)
                logger.warning("broker %s still unreachable, next try in %.0f s: %r", self.url, delay, exc)
            else:
                logger.info("broker %s connected", self.url)
                return

    async def stop(self) -> None:
        """Stop fetching, let the handlers under way finish within ``drain_timeout`` (their messages are settled;
        any still running then go back to the broker), close the connection."""
        if not self.started:
            return
        self.started = False
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
            self._connecting = None
        if not self.connected:
            return
        self.connected = False
        await self._stop_consumers()
        await self.transport.close()
        for subscriber in self.subscribers:
            subscriber.metrics.flush()

    async def _stop_consumers(self) -> None:
        for subscriber in self.subscribers:
            subscriber.draining = True  # nothing more starts
        consumers, self._consumers = self._consumers, []
        stopping = [asyncio.ensure_future(consumer.stop()) for consumer in consumers]
        await asyncio.sleep(0)  # each consumer has stopped fetching: what is released now goes back to the broker
        for subscriber in self.subscribers:
            await subscriber.release_waiting()
        try:
            await asyncio.wait_for(asyncio.gather(*stopping), self.drain_timeout)
        except TimeoutError:
            logger.warning(
                "handlers still running after %.0f s at shutdown; their messages go back", self.drain_timeout
            )

    async def ping(self) -> bool:
        """Whether the broker answers now (the readiness check)."""
        return self.connected and await self.transport.ping()

    async def settled(self) -> None:
        """Wait until everything published so far was handled (the memory broker; tests)."""
        wait = getattr(self.transport, "settled", None)
        if wait is None:
            raise ConfigurationError(f"{self.transport.scheme}:// brokers cannot tell when all is handled")
        await wait()

    def in_memory(self) -> None:
        """Run on an in-process memory broker instead of the real one until ``restore_transport()`` — what the
        test clients do, so a test needs no broker service. A no-op once started."""
        if self.started or self._real_transport is not None or self.transport.scheme == "memory":
            return
        from .memory import MemoryTransport

        self._real_transport, self.transport = self.transport, MemoryTransport()

    def restore_transport(self) -> None:
        """Back to the real broker after ``in_memory()`` (once stopped)."""
        if self._real_transport is not None and not self.started:
            self.transport, self._real_transport = self._real_transport, None

    def __repr__(self) -> str:
        return f"<Broker {self.transport.scheme}:// {len(self.subscribers)} subscribers>"


# scheme -> (module, class, the extra that installs its client library)
ADAPTERS = {
    "memory": ("memory", "MemoryTransport", None),
    "redis": ("redis_streams", "RedisStreamsTransport", "redis"),
    "rediss": ("redis_streams", "RedisStreamsTransport", "redis"),
    "amqp": ("amqp", "AmqpTransport", "amqp"),
    "amqps": ("amqp", "AmqpTransport", "amqp"),
    "nats": ("nats", "NatsTransport", "nats"),
    "kafka": ("kafka", "KafkaTransport", "kafka"),
    "sqs": ("sqs", "SqsTransport", "sqs"),
}


def _transport_for(url: str, options: Mapping[str, Any]) -> Transport:
    scheme = url.partition("://")[0].lower()
    if scheme not in ADAPTERS or "://" not in url:
        raise ConfigurationError(f"no broker adapter for {url!r} (known: {', '.join(s + '://' for s in ADAPTERS)})")
    module_name, class_name, extra = ADAPTERS[scheme]
    try:
        module = importlib.import_module(f"{__package__}.{module_name}")
    except ImportError as exc:
        if exc.name is not None and exc.name.startswith(f"{__package__}."):
            raise
        raise ConfigurationError(f"{scheme}:// needs {exc.name}: pip install 'cello[{extra}]'") from exc
    transport: Transport = getattr(module, class_name)(url, **options)
    return transport
