"""The store contract shared by rate limiting, caching, sessions and broadcast: keys with TTLs, atomic counters
and windows, tag sets, and pub/sub. ``MemoryStore`` serves one process; ``RedisStore`` shares state between
workers and machines.

Every operation is async. A store that cannot reach its backend raises ``StoreUnavailable``; each feature
decides what that means for it (a rate limiter fails open or closed, a cache is bypassed).
"""

from __future__ import annotations

import abc
import builtins
import contextlib
from collections.abc import AsyncIterator
from typing import NamedTuple

from ..http.exceptions import ServiceUnavailable


class StoreUnavailable(ServiceUnavailable):
    """The store's backend (e.g. Redis) did not answer: unhandled, a 503 problem+json with ``Retry-After``."""


class WindowResult(NamedTuple):
    """The outcome of one hit on a rate-limit window or bucket (a tuple: built on every limited request)."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until the window resets (or the bucket is full again)
    retry_after: float  # seconds until a refused client may try again (0 when allowed)


class Store(abc.ABC):
    """Async key-value store with TTLs, atomic counters, rate-limit windows, tag sets and pub/sub."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value, or None when missing or expired."""

    @abc.abstractmethod
    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value``; it expires after ``ttl`` seconds when given."""

    @abc.abstractmethod
    async def delete(self, *keys: str) -> int:
        """Remove keys; returns how many existed."""

    @abc.abstractmethod
    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomically add ``amount``; a key created by this call expires after ``ttl``."""

    @abc.abstractmethod
    async def sliding_window(self, key: str, limit: int, window: float, cost: int = 1) -> WindowResult:
        """Count a hit in a sliding window of ``window`` seconds allowing ``limit`` hits (atomic)."""

    @abc.abstractmethod
    async def token_bucket(self, key: str, capacity: int, refill_per_second: float, cost: int = 1) -> WindowResult:
        """Take ``cost`` tokens from a bucket of ``capacity`` refilled continuously (atomic)."""

    @abc.abstractmethod
    async def tag(self, tag: str, key: str, ttl: float | None = None) -> None:
        """Remember that ``key`` belongs to ``tag`` (for invalidation by tag)."""

    @abc.abstractmethod
    async def tagged(self, tag: str) -> builtins.set[str]:
        """The keys remembered under ``tag``."""

    @abc.abstractmethod
    async def publish(self, channel: str, message: bytes) -> None:
        """Send ``message`` to every current subscriber of ``channel``."""

    @abc.abstractmethod
    def subscription(self, channel: str) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """``async with store.subscription(ch) as messages:`` — subscribed once the block is entered, so nothing
        published after that point is missed; ``async for message in messages`` reads them."""

    async def subscribe(self, channel: str) -> AsyncIterator[bytes]:
        """Messages published to ``channel`` from now on, as an async iterator (close it to unsubscribe).
        The subscription starts with the first iteration; use ``subscription`` to know when it is in place."""
        async with self.subscription(channel) as messages:
            async for message in messages:
                yield message

    async def close(self) -> None:  # noqa: B027 - optional: only stores holding connections need it
        """Release connections (at app shutdown)."""
