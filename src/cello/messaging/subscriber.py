"""A subscriber: one handler of one topic, and the delivery policy every broker adapter shares.

The handler is compiled like a route's (``cello.handlers``): its body model is validated from the message's JSON;
headers, ``Depends``, singletons and the raw ``Message`` are resolved the same way; sync handlers run in the
thread pool. Then, for each delivery:

- **guards** (``guards=[...]``, the route guards of ``cello.security.guards`` or functions of the message) may
  refuse it: refused, it goes to the dead letter at once (or is dropped without one);
- **deduplication** (``dedup=store``): a message whose id the store remembers as handled is acked unhandled, so
  a redelivery or a producer's resend runs the handler once (within ``dedup_ttl``; the store — ``MemoryStore`` for
  one process, ``RedisStore`` for all — is written after the handler succeeds, before the ack);
- **retries**: a handler that raises runs again ``retries`` times, ``backoff(attempt)`` seconds apart, then the
  message is published to ``dead_letter`` with the error in its headers and acked — never a crash loop; a body
  that does not validate goes to the dead letter at once, the validation errors in ``x-cello-error``;
- **order**: messages with the same key are handled one after another in the order they came, whatever the
  concurrency (with ``concurrency=1``, every message is);
- **flow**: ``concurrency`` messages are handled at a time; the broker hands over up to ``prefetch`` unsettled
  ones (default: twice the concurrency, at least 32 — times ``batch``), so the next is at hand when one is done;
- **replies and forwarding**: a request's caller gets the handler's return value (or its error); the topics of
  ``@broker.publisher`` get the return value when it is not None.

``batch=n`` hands the handler up to ``n`` messages at once — those that arrived within ``batch_timeout`` seconds
of the first — as one JSON array, so its body parameter is a list (``orders: list[Order]``); ``message.batch``
holds the messages. A message of the batch that does not validate goes to the dead letter alone and the handler
runs with the others; a failure retries the whole batch, then dead-letters each of its messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ..http.exceptions import ConfigurationError, RequestValidationError
from ..middleware.request_id import current_request_id
from ..routing.router import Route
from . import metrics
from .message import Delivery, Message, encode, new_id

if TYPE_CHECKING:
    from ..app import App
    from ..stores.base import Store
    from .broker import Broker

__all__ = ["Backoff", "Subscriber", "exponential"]

PREFETCH_FLOOR = 32  # unsettled deliveries a subscriber takes at least, however low its concurrency

logger = logging.getLogger("cello.messaging")

Backoff = Callable[[int], float]


def exponential(base: float = 0.1, cap: float = 30.0) -> Backoff:
    """``base * 2**(attempt - 1)`` seconds before try ``attempt + 1``, at most ``cap``."""
    return lambda attempt: min(cap, base * 2 ** (attempt - 1))


def check_policy(
    concurrency: int,
    retries: int,
    ack: str,
    batch: int | None,
    batch_timeout: float,
    dedup_ttl: float,
    prefetch: int | None,
) -> None:
    """A ``ConfigurationError`` for options no subscriber can work with."""
    if concurrency < 1 or retries < 0:
        raise ConfigurationError("a subscriber needs concurrency >= 1 and retries >= 0")
    if prefetch is not None and prefetch < 1:
        raise ConfigurationError("prefetch is at least 1")
    if ack not in ("auto", "manual"):
        raise ConfigurationError("ack is 'auto' or 'manual'")
    if batch is not None and (batch < 1 or batch_timeout < 0):
        raise ConfigurationError("a batch holds at least 1 message and waits batch_timeout >= 0 seconds")
    if dedup_ttl <= 0:
        raise ConfigurationError("dedup_ttl is a number of seconds above 0")


class Subscriber:
    """One handler of one topic with its delivery policy (see the module); made by ``@broker.subscriber``."""

    def __init__(
        self,
        broker: Broker,
        topic: str,
        handler: Callable[..., Any],
        *,
        group: str | None = None,
        concurrency: int = 1,
        retries: int = 0,
        backoff: Backoff | None = None,
        dead_letter: str | None = None,
        ack: str = "auto",
        name: str | None = None,
        dedup: Store | None = None,
        dedup_ttl: float = 86_400.0,
        guards: Sequence[Any] = (),
        batch: int | None = None,
        batch_timeout: float = 0.05,
        prefetch: int | None = None,
    ) -> None:
        check_policy(concurrency, retries, ack, batch, batch_timeout, dedup_ttl, prefetch)
        self.broker = broker
        self.topic = topic
        self.handler = handler
        self.name: str = name or getattr(handler, "__qualname__", None) or repr(handler)
        self.group = group or self.name
        self.concurrency = concurrency
        self.retries = retries
        self.backoff = backoff or exponential()
        self.dead_letter = dead_letter
        self.manual = ack == "manual"
        self.dedup = dedup
        self.dedup_ttl = dedup_ttl
        self.guards = list(guards)
        self.batch = batch
        self.batch_timeout = batch_timeout
        # deliveries the transport may hand over unsettled: more than are handled at once, so the next ones are
        # already here when a handler finishes (a broker round trip per message would bound the rate)
        self.prefetch = prefetch or max(PREFETCH_FLOOR, 2 * concurrency) * (batch or 1)
        self._slots: asyncio.Semaphore | None = None  # `concurrency` handler runs at a time (from compile())
        self._waiting: dict[int, list[Message]] = {}  # messages (or batches) waiting for a slot
        self.draining = False  # shutting down: nothing more starts
        self.forward_to: list[str] = []
        # the handler compiled like a route's (parameters, DI, validation), on a route nobody can request
        self.route = Route("/" + topic.lstrip("/"), ["POST"], handler, name=self.name,
                           meta={"strict_content_type": False, "include_in_schema": False})  # fmt: skip
        self.endpoint: Callable[[Any], Any] | None = None
        self._lanes: dict[str, _Lane] = {}  # key -> what keeps its messages in order
        self._gathering: _Batch | None = None  # the batch still taking messages
        self.metrics = metrics.SubscriberMetrics(None)  # counted from compile(): prometheus-client comes late

    def compile(self, app: App | None) -> None:
        if app is None:
            raise ConfigurationError("a broker's subscribers run inside an app: app.include_broker(broker)")
        from ..handlers import compile_handler

        if self.guards:
            from ..security.guards import as_guard

            self.guards = [as_guard(guard) for guard in self.guards]
        self.metrics = metrics.SubscriberMetrics(self.name)
        self._slots = asyncio.Semaphore(self.concurrency)
        self.draining = False
        self.route.signature = None
        self.endpoint = compile_handler(self.route, app.dispatcher.pool, app.config.threadpool, app.singletons,
                                        encode_result=False)  # fmt: skip

    # -- one delivery ----------------------------------------------------------------------------------------

    async def handle(self, delivery: Delivery) -> None:
        """A delivery from the transport: through the policy (see the module) until it is settled."""
        assert self.broker.app is not None
        message = Message(self.broker.app, delivery, attempt=delivery.redelivered + 1)
        message.route = self.route
        self.metrics.received()
        if (self.guards or self.dedup is not None) and not await self._admitted(message):
            return
        if self.batch is not None:
            await self._join_batch(message)
            return
        key = delivery.key
        if key is None or self.concurrency == 1:  # NOTE: the slots are taken in arrival order
            await self._run_in_slot([message])
            return
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.users += 1
        try:
            async with lane.lock:  # NOTE: asyncio.Lock is fair: waiters go in the order they arrived
                await self._run_in_slot([message])
        finally:
            lane.users -= 1
            if not lane.users:  # NOTE: not lock.locked(): a woken waiter holds no lock until it runs
                del self._lanes[key]

    async def _run_in_slot(self, messages: list[Message]) -> None:
        assert self._slots is not None
        if self.draining:
            await _release(messages)
            return
        waiting = id(messages)
        self._waiting[waiting] = messages
        try:
            async with self._slots:
                del self._waiting[waiting]
                if self.draining:  # released while it waited
                    await _release(messages)
                    return
                await self._run(messages)
        finally:
            self._waiting.pop(waiting, None)

    async def release_waiting(self) -> None:
        """Shutdown, once the transport stopped fetching (``draining`` set before): the messages not yet started go
        back to the broker (nacked); those under way finish."""
        self.draining = True
        batch, self._gathering = self._gathering, None
        if batch is not None:
            if batch.timer is not None:
                batch.timer.cancel()
            await _release(batch.messages)
            batch.done.set_result(None)
        for messages in list(self._waiting.values()):
            await _release(messages)

    async def _admitted(self, message: Message) -> bool:
        """Whether the message goes on to the handler: not refused by a guard, not handled before."""
        for guard in self.guards:
            try:
                allowed = await guard.check_async(message, message.context.get("user"))
            except Exception:
                logger.exception("guard %r failed on message %s; refusing", guard, message.id)
                allowed = False
            if not allowed:
                logger.warning("message %s on %s refused by %r", message.id, self.topic, guard)
                self.metrics.failed()
                await self._give_up([message], f"refused by {guard!r}")
                return False
        if self.dedup is not None and message.id is not None and await self.dedup.get(self._dedup_key(message)):
            logger.info("message %s on %s was handled before: acked again, not handled", message.id, self.topic)
            self.metrics.deduplicated()
            await message.ack()
            return False
        return True

    def _dedup_key(self, message: Message) -> str:
        return f"cello:handled:{self.group}:{message.id}"

    # -- batches ---------------------------------------------------------------------------------------------

    async def _join_batch(self, message: Message) -> None:
        assert self.batch is not None
        batch = self._gathering
        if batch is None:
            batch = self._gathering = _Batch()
            batch.timer = asyncio.get_running_loop().call_later(self.batch_timeout, self._close_batch, batch)
        batch.messages.append(message)
        if len(batch.messages) >= self.batch:
            self._close_batch(batch)
        await batch.done  # the transport's task for this delivery lives until its batch is through

    def _close_batch(self, batch: _Batch) -> None:
        if self._gathering is batch:
            self._gathering = None
            if batch.timer is not None:
                batch.timer.cancel()
            batch.task = asyncio.get_running_loop().create_task(self._run_in_slot(batch.messages))
            batch.task.add_done_callback(batch.finished)

    # -- the handler, retried --------------------------------------------------------------------------------

    async def _run(self, messages: list[Message]) -> None:
        """The handler over one message (or one batch), with retries; then replies, forwards, settles."""
        assert self.endpoint is not None
        while True:
            call = messages[0] if self.batch is None else self._batch_message(messages)
            if call is None:
                return  # nothing of the batch was left to handle
            timed = self.metrics.timed
            started = time.perf_counter() if timed else 0.0
            # NOTE: the handler's log lines carry the correlation id as their request id (RequestIdLogFilter), and
            # what it publishes keeps it as its correlation id
            traced = current_request_id.set(call.correlation_id or call.id)
            try:
                result = await self.endpoint(call)
            except RequestValidationError as exc:
                self.metrics.failed()
                invalid = self._invalid(messages, exc.errors)
                for message, errors in invalid:
                    problem = orjson.dumps(errors).decode()
                    logger.warning("message %s on %s does not validate: %s", message.id, self.topic, problem)
                    await self._give_up([message], problem)
                if self.batch is None or not invalid:
                    return
                handed = {id(message) for message, _ in invalid}
                messages = [message for message in messages if id(message) not in handed]
                continue  # the rest of the batch, without what cannot be handled
            except Exception as exc:
                self.metrics.failed()
                unsettled = [message for message in messages if message.settled is None]
                attempt = messages[0].attempt
                if unsettled and attempt <= self.retries and self.draining:
                    logger.info("message %s on %s failed at shutdown: back to the broker", messages[0].id, self.topic)
                    await _release(messages)
                    return
                if unsettled and attempt <= self.retries:
                    self.metrics.retried()
                    delay = self.backoff(attempt)
                    logger.info("message %s on %s failed (attempt %d), trying again in %.2f s: %r",
                                messages[0].id, self.topic, attempt, delay, exc)  # fmt: skip
                    await asyncio.sleep(delay)
                    for message in messages:
                        message.attempt += 1
                    continue
                logger.error("message %s on %s failed for good after %d attempts (correlation %s)",
                             messages[0].id, self.topic, attempt, messages[0].correlation_id, exc_info=exc)  # fmt: skip
                await self._give_up(messages, f"{type(exc).__name__}: {exc}")
                return
            finally:
                current_request_id.reset(traced)
                if timed:
                    self.metrics.handled(time.perf_counter() - started)
            break
        await self._succeeded(messages, result)

    async def _succeeded(self, messages: list[Message], result: Any) -> None:
        for message in messages:
            self.metrics.processed()
            if message.delivery.reply is not None:  # a request: its answer is the handler's return value
                body, content_type = encode(result)
                await message.delivery.reply(body, {"content-type": content_type, "x-message-id": new_id()})
        if result is not None and self.forward_to:
            first = messages[0]
            for topic in self.forward_to:
                await self.broker.publish(topic, result, key=first.key, correlation_id=first.correlation_id)
        for message in messages:
            if self.dedup is not None and message.id is not None:
                await self.dedup.set(self._dedup_key(message), b"1", ttl=self.dedup_ttl)
            if not self.manual and message.settled is None:
                await message.ack()

    def _batch_message(self, messages: list[Message]) -> Message | None:
        """The batch as one message whose body is the JSON array of the messages' bodies (``message.batch``)."""
        if not messages:
            return None
        first = messages[0]
        body = b"[" + b",".join(message.delivery.body or b"null" for message in messages) + b"]"
        headers = {**first.delivery.headers, "content-type": "application/json"}
        delivery = Delivery(first.topic, body, headers, first.key, _not_settled, meta={"batch": len(messages)})
        assert self.broker.app is not None
        combined = Message(self.broker.app, delivery, attempt=first.attempt)
        combined.route = self.route
        combined.batch = list(messages)
        return combined

    def _invalid(self, messages: list[Message], errors: list[dict[str, Any]]) -> list[tuple[Message, list[Any]]]:
        """Which messages the validation errors are about: all of them for a single message, or a batch's errors
        that do not point at one item; else the items their ``loc`` points at."""
        if self.batch is None:
            return [(messages[0], errors)]
        by_index: dict[int, list[Any]] = {}
        for error in errors:
            loc = error.get("loc") or []
            index = loc[1] if len(loc) > 1 and loc[0] == "body" and isinstance(loc[1], int) else None
            if index is None or not 0 <= index < len(messages):
                return [(message, errors) for message in messages]
            by_index.setdefault(index, []).append(error)
        return [(messages[index], found) for index, found in sorted(by_index.items())]

    # -- giving up -------------------------------------------------------------------------------------------

    async def _give_up(self, messages: Iterable[Message], error: str) -> None:
        """Dead-letter each message (or drop it, without a dead letter), then settle it; a request's caller is told
        at once."""
        for message in messages:
            if message.delivery.reply is not None:
                await message.delivery.reply(b"", {"x-cello-error": error[:2000], "x-message-id": new_id()})
            if message.settled is not None:
                continue  # settled by hand already: the handler decided
            if self.dead_letter is None:
                logger.error("message %s on %s dropped: no dead letter for %s", message.id, self.topic, self.name)
                await message.reject()
                continue
            headers = dict(message.delivery.headers)
            headers.update({"x-cello-error": error[:2000], "x-cello-original-topic": self.topic,
                            "x-cello-attempts": str(message.attempt), "x-cello-subscriber": self.name})  # fmt: skip
            await self.broker.transport.publish(self.dead_letter, message.delivery.body, key=message.key,
                                                headers=headers)  # fmt: skip
            self.metrics.dead_lettered()
            await message.ack()


async def _release(messages: Iterable[Message]) -> None:
    """Give unsettled messages back to the broker, to be delivered again (here or to another member)."""
    for message in messages:
        if message.settled is None:
            await message.nack()


async def _not_settled(outcome: str) -> None:
    """A batch's combined message is not the broker's: its messages are settled one by one."""


class _Lane:
    """The messages of one key under way: handled one at a time, in the order they arrived."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class _Batch:
    """Messages gathered for one run of a batch handler."""

    __slots__ = ("messages", "done", "timer", "task")

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None

    def finished(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("a batch of %d messages failed", len(self.messages), exc_info=task.exception())
        if not self.done.done():
            self.done.set_result(None)
