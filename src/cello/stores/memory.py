"""The in-process store: the default, bounded, for one worker.

State lives in dicts on the event loop's thread, so every operation is atomic without locks (nothing awaits in
the middle of one). Expired keys are dropped when touched and by a sweep that runs as the store fills; past
``max_keys`` the oldest keys are evicted first. Rate-limit windows use the sliding-window-counter approximation
(the previous fixed window weighted by how much of it still overlaps), which needs two integers per key.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from .base import Store, WindowResult

logger = logging.getLogger("cello.stores")

_clock = time.monotonic


# NOTE: tuple.__new__(WindowResult, values) is a C call; WindowResult(...) would run the namedtuple's Python-level
# __new__, and the rate limiter builds one result per request
_new: Callable[[type[WindowResult], tuple[Any, ...]], WindowResult] = tuple.__new__  # type: ignore[assignment]


class MemoryStore(Store):
    """``MemoryStore(max_keys=100_000)``: what one worker process sees; each worker has its own."""

    def __init__(self, max_keys: int = 100_000, subscriber_queue: int = 1000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self.max_keys = max_keys
        self._subscriber_queue = subscriber_queue
        self._values: dict[str, tuple[Any, float]] = {}  # key -> (value, expires_at or inf)
        self._channels: dict[str, set[asyncio.Queue[bytes]]] = {}

    # -- keys -----------------------------------------------------------------------------------------------

    def _live(self, key: str, now: float) -> Any:
        entry = self._values.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._values[key]
            return None
        return entry[0]

    def _put(self, key: str, value: Any, expires_at: float) -> None:
        values = self._values
        if key not in values and len(values) >= self.max_keys:
            self._make_room()
        values[key] = (value, expires_at)

    def _make_room(self) -> None:
        now = _clock()
        values = self._values
        expired = [k for k, (_, expires_at) in values.items() if expires_at <= now]
        for key in expired:
            del values[key]
        # still full: drop the oldest tenth (dicts keep insertion order)
        overflow = len(values) - self.max_keys + max(1, self.max_keys // 10)
        if overflow > 0 and not expired:
            for key in list(values)[:overflow]:
                del values[key]

    @staticmethod
    def _expiry(ttl: float | None, now: float) -> float:
        return now + ttl if ttl is not None else math.inf

    async def get(self, key: str) -> bytes | None:
        value = self._live(key, _clock())
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        now = _clock()
        self._put(key, value, self._expiry(ttl, now))

    async def delete(self, *keys: str) -> int:
        removed = 0
        for key in keys:
            if self._values.pop(key, None) is not None:
                removed += 1
        return removed

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        now = _clock()
        current = self._live(key, now)
        if isinstance(current, int):
            value = current + amount
            self._values[key] = (value, self._values[key][1])
        else:
            value = amount
            self._put(key, value, self._expiry(ttl, now))
        return value

    # -- rate-limit windows ---------------------------------------------------------------------------------

    async def sliding_window(self, key: str, limit: int, window: float, cost: int = 1) -> WindowResult:
        return self.sliding_window_now(key, limit, window, cost)

    def sliding_window_now(self, key: str, limit: int, window: float, cost: int = 1) -> WindowResult:
        """The synchronous body of ``sliding_window`` (the rate limiter calls it directly: no await needed).

        State: a list ``[window_start, hits_now, hits_before]`` updated in place while the window lasts, so the
        common hit allocates nothing but its result.
        """
        now = _clock()
        start = now - now % window
        entry = self._values.get(key)
        if entry is not None and entry[1] > now:
            state = entry[0]
            if state[0] != start:  # the window moved on since the last hit
                # the stored window is now the previous one, or older than that (then it no longer counts)
                state = [start, 0, state[1] if state[0] >= start - window else 0]
                self._put(key, state, start + 2 * window)
        else:
            state = [start, 0, 0]
            self._put(key, state, start + 2 * window)
        previous = state[2]
        reset_after = start + window - now
        # the previous window's hits weighted by how much of it the sliding window still covers
        estimate = state[1] + previous * (reset_after / window)
        if estimate + cost > limit:
            # the weighted previous window decays linearly: when will the estimate leave room for this hit?
            retry = reset_after if previous == 0 else min(reset_after, (estimate + cost - limit) / previous * window)
            remaining = int(limit - estimate) if estimate < limit else 0
            return _new(WindowResult, (False, limit, remaining, reset_after, retry if retry > 0.001 else 0.001))
        state[1] += cost
        remaining = int(limit - estimate - cost)
        return _new(WindowResult, (True, limit, remaining if remaining > 0 else 0, reset_after, 0.0))

    async def token_bucket(self, key: str, capacity: int, refill_per_second: float, cost: int = 1) -> WindowResult:
        return self.token_bucket_now(key, capacity, refill_per_second, cost)

    def token_bucket_now(self, key: str, capacity: int, refill_per_second: float, cost: int = 1) -> WindowResult:
        """The synchronous body of ``token_bucket``."""
        now = _clock()
        state = self._live(key, now)
        if state is None:
            tokens = float(capacity)
        else:
            tokens = min(float(capacity), state[0] + (now - state[1]) * refill_per_second)
        full_in = capacity / refill_per_second
        if tokens < cost:
            retry = (cost - tokens) / refill_per_second
            self._put(key, (tokens, now), now + full_in)
            reset_after = (capacity - tokens) / refill_per_second
            return WindowResult(False, capacity, int(tokens), reset_after, retry)
        tokens -= cost
        self._put(key, (tokens, now), now + full_in)
        return WindowResult(True, capacity, int(tokens), (capacity - tokens) / refill_per_second, 0.0)

    # -- tags -----------------------------------------------------------------------------------------------

    async def tag(self, tag: str, key: str, ttl: float | None = None) -> None:
        now = _clock()
        members = self._live("tag:" + tag, now)
        if not isinstance(members, set):
            members = set()
        members.add(key)
        expiry = self._expiry(ttl, now)
        previous = self._values.get("tag:" + tag)
        if previous is not None:
            expiry = max(expiry, previous[1])
        self._put("tag:" + tag, members, expiry)

    async def tagged(self, tag: str) -> builtins.set[str]:
        members = self._live("tag:" + tag, _clock())
        return set(members) if isinstance(members, set) else set()

    # -- pub/sub --------------------------------------------------------------------------------------------

    async def publish(self, channel: str, message: bytes) -> None:
        for queue in list(self._channels.get(channel, ())):
            if queue.full():
                queue.get_nowait()  # a subscriber that does not keep up loses its oldest message, not the others
                logger.warning("subscriber of %r is too slow; its oldest message was dropped", channel)
            queue.put_nowait(message)

    @contextlib.asynccontextmanager
    async def subscription(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(self._subscriber_queue)
        self._channels.setdefault(channel, set()).add(queue)

        async def messages() -> AsyncIterator[bytes]:
            while True:
                yield await queue.get()

        try:
            yield messages()
        finally:
            subscribers = self._channels.get(channel)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del self._channels[channel]

    async def close(self) -> None:
        self._values.clear()

    def __len__(self) -> int:
        return len(self._values)
