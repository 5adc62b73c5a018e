"""``Broker("memory://")``: a broker inside this process, the embedded default and the test broker.

It behaves like a real one within the process: every consumer group of a topic gets each message, the members of
one group share them, an unsettled message is delivered again when nacked, a rejected one is dropped. Messages
published to a topic nobody consumes yet wait for its first group. Nothing leaves the process: each worker has
its own (use a real broker to share work between workers and machines).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping
from typing import Any

from ..http.exceptions import ConfigurationError
from .message import Delivery, Reply
from .transport import Consumer, Handler, Transport

__all__ = ["MemoryTransport"]


class _Envelope:
    __slots__ = ("topic", "body", "headers", "key", "redelivered", "sequence", "reply")

    def __init__(self, topic: str, body: bytes, headers: Mapping[str, str], key: str | None, sequence: int,
                 reply: Reply | None = None) -> None:  # fmt: skip
        self.reply = reply
        self.topic = topic
        self.body = body
        self.headers = dict(headers)
        self.key = key
        self.redelivered = 0
        self.sequence = sequence


class _Group:
    """One consumer group of a topic: a queue its members share, handed round to those waiting in turn (as a
    broker spreads a queue over its consumers)."""

    def __init__(self) -> None:
        self.queue: deque[_Envelope] = deque()
        self.takers: deque[asyncio.Future[_Envelope]] = deque()

    def put(self, envelope: _Envelope, back: bool = False) -> None:
        """Queue a message (``back``: one given back, which takes its old place — before those published after it —
        as a broker requeues it)."""
        while self.takers:
            taker = self.takers.popleft()
            if not taker.done():
                taker.set_result(envelope)
                return
        if not back:
            self.queue.append(envelope)
            return
        later = (i for i, queued in enumerate(self.queue) if queued.sequence > envelope.sequence)
        self.queue.insert(next(later, len(self.queue)), envelope)

    async def take(self) -> _Envelope:
        if self.queue and not self.takers:
            return self.queue.popleft()
        taker: asyncio.Future[_Envelope] = asyncio.get_running_loop().create_future()
        self.takers.append(taker)
        try:
            return await taker
        except asyncio.CancelledError:
            if taker.done() and not taker.cancelled():  # handed over just as the consumer stopped: keep it
                self.put(taker.result(), back=True)
            with contextlib.suppress(ValueError):
                self.takers.remove(taker)
            raise


class MemoryTransport(Transport):
    scheme = "memory"
    supports_request = True

    def __init__(self, url: str = "memory://", **options: Any) -> None:
        if options:
            raise ConfigurationError(f"memory:// takes no options, not {', '.join(sorted(options))}")
        self.groups: dict[str, dict[str, _Group]] = {}  # topic -> group -> queue
        self.waiting: dict[str, list[_Envelope]] = {}  # topic -> messages no group has taken yet
        self.unsettled = 0  # published or handed over, not yet acked, rejected or dropped
        self.idle = asyncio.Event()
        self.idle.set()
        self.sequence = 0

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def publish(self, topic: str, body: bytes, *, key: str | None, headers: Mapping[str, str],
                      reply: Reply | None = None) -> None:  # fmt: skip
        groups = self.groups.get(topic)
        self.sequence += 1
        if not groups:
            self.waiting.setdefault(topic, []).append(_Envelope(topic, body, headers, key, self.sequence, reply))
            self._count(1)
            return
        for group in groups.values():
            group.put(_Envelope(topic, body, headers, key, self.sequence, reply))
            self._count(1)

    async def request(self, topic: str, body: bytes, *, headers: Mapping[str, str], timeout: float) -> Delivery:
        answer: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()

        async def reply(body: bytes, headers: Mapping[str, str]) -> None:
            if not answer.done():  # NOTE: the first group to answer does; later answers are not waited for
                answer.set_result(Delivery(topic, body, headers, None, _settled))

        await self.publish(topic, body, key=None, headers=headers, reply=reply)
        return await asyncio.wait_for(answer, timeout)

    async def consume(self, topic: str, group: str, handler: Handler, *, prefetch: int) -> Consumer:
        groups = self.groups.setdefault(topic, {})
        state = groups.get(group)
        if state is None:
            state = groups[group] = _Group()
            for envelope in self.waiting.pop(topic, []):  # the first group takes what was published before it
                state.put(envelope)
        consumer = _MemoryConsumer(self, state, handler, prefetch)
        consumer.start()
        return consumer

    async def settled(self) -> None:
        """Wait until every message published so far was acked or rejected (tests)."""
        await self.idle.wait()

    def _count(self, change: int) -> None:
        self.unsettled += change
        if self.unsettled:
            self.idle.clear()
        else:
            self.idle.set()


async def _settled(outcome: str) -> None:
    """A reply is not a delivery of the broker's: nothing to settle."""


class _MemoryConsumer(Consumer):
    def __init__(self, transport: MemoryTransport, group: _Group, handler: Handler, prefetch: int) -> None:
        self.transport = transport
        self.group = group
        self.handler = handler
        self.slots = asyncio.Semaphore(prefetch)
        self.task: asyncio.Task[None] | None = None
        self.handed: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        group = self.group
        while True:
            await self.slots.acquire()
            try:
                envelope = await group.take()
            except asyncio.CancelledError:
                self.slots.release()
                raise
            task = asyncio.get_running_loop().create_task(self._hand_over(envelope))
            self.handed.add(task)
            task.add_done_callback(self.handed.discard)

    async def _hand_over(self, envelope: _Envelope) -> None:
        transport, group = self.transport, self.group
        settled = False

        async def settle(outcome: str) -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            self.slots.release()
            if outcome == "nack":
                envelope.redelivered += 1
                group.put(envelope, back=True)
            else:
                transport._count(-1)

        delivery = Delivery(envelope.topic, envelope.body, envelope.headers, envelope.key, settle,
                            redelivered=envelope.redelivered, meta={"sequence": envelope.sequence},
                            reply=envelope.reply)  # fmt: skip
        try:
            await self.handler(delivery)
        finally:
            if not settled:  # the handler ended without settling (cancelled at shutdown): back in the queue
                await settle("nack")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        if self.handed:
            await asyncio.gather(*self.handed, return_exceptions=True)

    def in_flight(self) -> Any:
        return len(self.handed)
