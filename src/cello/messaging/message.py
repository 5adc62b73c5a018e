"""A message as a handler sees it: a ``Request`` (so subscribers take the same parameters as routes — a JSON body
model, ``Header("x")``, ``Depends``), with what a broker adds: its topic, key, id, correlation id, the attempt
number, the broker's own coordinates (partition and offset, delivery tag), and ``ack()`` / ``nack()`` /
``reject()`` for subscribers that settle messages themselves.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from ..http.request import Request
from ..http.response import dump_json

if TYPE_CHECKING:
    from ..app import App

__all__ = ["Delivery", "Message", "encode"]

# what settles a message on its broker: "ack", "nack" (redeliver) or "reject" (drop, or dead-letter on the broker)
Settle = Callable[[str], Awaitable[None]]
# what answers a request (``Broker.request``): the reply's body and headers, sent to whoever asked
Reply = Callable[[bytes, Mapping[str, str]], Awaitable[None]]


class Delivery:
    """One message as a transport hands it over: the bytes and metadata, and how to settle it."""

    __slots__ = ("topic", "body", "headers", "key", "settle", "redelivered", "meta", "reply")

    def __init__(
        self,
        topic: str,
        body: bytes,
        headers: Mapping[str, str] | None,
        key: str | None,
        settle: Settle,
        *,
        redelivered: int = 0,
        meta: Mapping[str, Any] | None = None,
        reply: Reply | None = None,
    ) -> None:
        self.topic = topic
        self.body = body
        self.headers = dict(headers or {})
        self.key = key
        self.settle = settle
        self.redelivered = redelivered  # earlier deliveries the broker counts (0: the first)
        self.meta = dict(meta or {})  # partition/offset, delivery_tag, sequence...
        self.reply = reply  # set when the message is a request that awaits an answer


class Message(Request):
    """A message handed to a subscriber; its body, headers and ``request.json()`` work as a request's do.

    ``topic``, ``key``, ``id`` (``x-message-id``), ``correlation_id``, ``attempt`` (1 on the first try, counting
    this process's retries and the broker's redeliveries), ``partition`` / ``offset`` (Kafka), ``delivery_tag``
    (AMQP) and ``meta`` (all the broker reported). ``ack()``, ``nack()`` (deliver again) and ``reject()`` settle
    it by hand, for subscribers declared ``ack="manual"``; otherwise the subscriber settles it. ``batch``: for a
    subscriber with ``batch=n``, the messages whose bodies make up this one's JSON array.
    """

    __slots__ = ("delivery", "attempt", "settled", "batch")

    def __init__(self, app: App, delivery: Delivery, attempt: int = 1) -> None:
        super().__init__(app, delivery, "MESSAGE", delivery.topic, body=delivery.body)
        self.delivery = delivery
        self.attempt = attempt
        self.settled: str | None = None
        self.batch: list[Message] = []  # a batch subscriber's messages, behind the one its handler is given

    # -- what a request reads, from the delivery -------------------------------------------------------------

    @property
    def query_string(self) -> str:
        return ""

    @property
    def http_version(self) -> str:
        return ""

    @property
    def _raw_scheme(self) -> str:
        return "message"

    @property
    def _peer(self) -> str | None:
        return None

    @property
    def _server(self) -> str | None:
        return None

    @property
    def _authority(self) -> str | None:
        return None

    def _header_items(self) -> Iterable[tuple[str, str]]:
        return self.delivery.headers.items()

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.delivery.headers.get(name.lower(), default)

    # -- what a broker adds ----------------------------------------------------------------------------------

    @property
    def topic(self) -> str:
        return self.delivery.topic

    @property
    def key(self) -> str | None:
        return self.delivery.key

    @property
    def id(self) -> str | None:
        return self.delivery.headers.get("x-message-id")

    @property
    def correlation_id(self) -> str | None:
        return self.delivery.headers.get("x-correlation-id")

    @property
    def meta(self) -> dict[str, Any]:
        return self.delivery.meta

    @property
    def partition(self) -> int | None:
        return self.delivery.meta.get("partition")

    @property
    def offset(self) -> int | None:
        return self.delivery.meta.get("offset")

    @property
    def delivery_tag(self) -> int | None:
        return self.delivery.meta.get("delivery_tag")

    async def ack(self) -> None:
        """Done with it: the broker forgets it."""
        await self._settle("ack")

    async def nack(self) -> None:
        """Not done: the broker delivers it again."""
        await self._settle("nack")

    async def reject(self) -> None:
        """Never to be processed: dropped (or dead-lettered by the broker's own rules)."""
        await self._settle("reject")

    async def _settle(self, outcome: str) -> None:
        if self.settled is not None:
            return  # NOTE: settling twice would ack one message twice on some brokers (an AMQP channel error)
        self.settled = outcome
        await self.delivery.settle(outcome)

    def __repr__(self) -> str:
        return f"<Message {self.topic} key={self.key!r} id={self.id!r} attempt={self.attempt}>"


def encode(payload: Any) -> tuple[bytes, str]:
    """``(bytes, content type)`` of a payload to publish: bytes as they are, text as UTF-8, anything else JSON —
    dicts and lists, msgspec Structs, pydantic models and dataclasses alike."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload), "application/octet-stream"
    if isinstance(payload, str):
        return payload.encode(), "text/plain; charset=utf-8"
    return dump_json(payload), "application/json"


def new_id() -> str:
    return uuid.uuid4().hex


def decode_json(body: bytes) -> Any:
    return orjson.loads(body)
