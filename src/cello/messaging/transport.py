"""What every broker adapter provides to ``Broker``: connect and close, publish bytes, and consume a topic as a
member of a consumer group, handing each message over as a ``Delivery`` that the subscriber settles.

The contract, the same for every adapter (``Broker`` and its subscribers build everything else on it: retries,
dead letters, validation, per-key order, metrics):

- ``Transport(url, **options)``: the URL's scheme chose the adapter; unknown options raise ``ConfigurationError``.
  Nothing connects before ``connect()``, which runs on the worker's event loop at the app's startup.
- ``publish(topic, body, key=, headers=)``: headers are lower-case ``str -> str`` (``content-type``,
  ``x-message-id``, ``x-correlation-id`` and the user's); the key travels with the message (the broker's own key
  where it has one: Kafka's record key, SQS FIFO's group id) and comes back as ``Delivery.key``.
- ``consume(topic, group, handler, prefetch=)``: every consumer group of a topic gets each message; the members
  of one group (in this process, in other workers, on other machines) share them. At most ``prefetch`` deliveries
  are handed over and not yet settled at a time; each is handed to ``handler`` in its own task.
- ``Delivery.settle(outcome)``, called once per delivery: ``"ack"`` (done: the broker forgets it), ``"nack"``
  (deliver it again, soon) or ``"reject"`` (drop it). ``Delivery.redelivered`` counts the broker's earlier
  deliveries where it knows them (0 otherwise); ``Delivery.meta`` carries the broker's coordinates (``partition``
  and ``offset``, ``delivery_tag``, ``stream_id``...).
- At least once: a delivery not acked — its worker killed, its connection lost — is delivered again, to this
  process or another member of its group, after at most the adapter's redelivery delay.
- ``Consumer.stop()``: stop fetching — at once, before its first ``await`` — then wait for the deliveries handed
  over to be settled, and release what the consumer holds. Once stop() has begun, the subscriber nacks the
  deliveries it had not started; such a nack hands nothing over again in this process: the delivery goes back to
  the broker for the next member (where the broker would send it straight back to this consumer, send the nack
  once the consumer no longer receives). ``Broker.stop`` bounds it by its ``drain_timeout`` and then closes the
  transport, whose unsettled deliveries go back to the broker.
- ``ping()``: whether the broker answers now, for the readiness check; the adapter reconnects by itself after a
  lost connection.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..http.exceptions import ConfigurationError
from .message import Delivery

__all__ = ["Consumer", "Handler", "Transport"]

Handler = Callable[[Delivery], Awaitable[None]]


def refill_at(prefetch: int) -> int:
    """Free slots a consumer waits for before it asks the broker for more (a pull, a read): half its prefetch.
    Asking whenever one slot came free would cost a round trip per message once the handlers keep up."""
    return (prefetch + 1) // 2


class Consumer(abc.ABC):
    """One subscription of a transport, feeding deliveries to its handler until stopped."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop fetching; deliveries already handed over are finished (and settled) by their handlers."""


class Transport(abc.ABC):
    """A broker adapter (see the module)."""

    scheme: str = ""
    supports_request = False  # request/reply (``Broker.request``)
    # every consumer group of a topic gets each message; False where a topic is one queue all groups share (SQS,
    # which then refuses a second group on a topic rather than split its messages silently)
    fan_out = True

    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def publish(self, topic: str, body: bytes, *, key: str | None, headers: Mapping[str, str]) -> None: ...

    @abc.abstractmethod
    async def consume(self, topic: str, group: str, handler: Handler, *, prefetch: int) -> Consumer:
        """Deliver ``topic``'s messages for ``group`` to ``handler``; at most ``prefetch`` unsettled at a time."""

    async def ping(self) -> bool:
        """Whether the broker answers now (the readiness check)."""
        return True

    async def request(self, topic: str, body: bytes, *, headers: Mapping[str, str], timeout: float) -> Delivery:
        """The reply to a message (``supports_request``)."""
        raise ConfigurationError(f"{self.scheme}:// brokers have no request/reply")

    def describe(self) -> dict[str, Any]:
        """What the AsyncAPI document says about the server."""
        return {"protocol": self.scheme}
