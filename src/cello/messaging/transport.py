"""What every broker adapter provides to ``Broker``: connect and close, publish bytes, and consume a topic as a
member of a consumer group, handing each message over as a ``Delivery`` that the subscriber settles.

Delivery is at least once everywhere: a message a subscriber has not acked is delivered again (to this process or
another member of its group) when its consumer goes away. Retries, dead letters, validation and concurrency are
the subscriber's (``cello.messaging.broker``), the same on every broker.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..http.exceptions import ConfigurationError
from .message import Delivery

__all__ = ["Consumer", "Handler", "Transport"]

Handler = Callable[[Delivery], Awaitable[None]]


class Consumer(abc.ABC):
    """One subscription of a transport, feeding deliveries to its handler until stopped."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop fetching; deliveries already handed over are finished (and settled) by their handlers."""


class Transport(abc.ABC):
    """A broker adapter (see the module)."""

    scheme: str = ""
    supports_request = False  # request/reply (``Broker.request``)

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
