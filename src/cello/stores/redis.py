"""The Redis store: state shared by every worker and machine that points at the same Redis.

Counters, windows and buckets are updated by Lua scripts, so each hit is one atomic round trip whatever the
number of workers; the scripts read Redis's own clock (``TIME``), so workers on machines with skewed clocks
still agree. Keys are namespaced by ``prefix``. Connection failures raise ``StoreUnavailable`` within the
client's socket timeout.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ..enterprise.redis import Redis
from .base import Store, WindowResult

# state: s = start of the current fixed window (ms), c = hits in it, p = hits in the previous one
_WINDOW_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local current_start = now - (now % window)
local state = redis.call('HMGET', KEYS[1], 's', 'c', 'p')
local s = tonumber(state[1])
local previous, current = 0, 0
if s and s >= current_start - window then
  if s < current_start then
    previous = tonumber(state[2]) or 0
  else
    current = tonumber(state[2]) or 0
    previous = tonumber(state[3]) or 0
  end
end
local estimate = previous * (1 - (now - current_start) / window) + current
local allowed = 0
if estimate + cost <= limit then
  current = current + cost
  estimate = estimate + cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 's', current_start, 'c', current, 'p', previous)
redis.call('PEXPIRE', KEYS[1], 2 * window)
return {allowed, tostring(estimate), current_start + window - now, previous}
"""

# state: t = tokens left, ts = when they were counted (ms)
_BUCKET_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1])
if tokens then
  tokens = math.min(capacity, tokens + (now - tonumber(state[2])) * per_ms)
else
  tokens = capacity
end
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / per_ms) + 1000)
return {allowed, tostring(tokens)}
"""

_INCR_SCRIPT = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if value == tonumber(ARGV[1]) and tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""


class RedisStore(Store):
    """``RedisStore("redis://localhost:6379", prefix="cello:")`` — or pass a ``cello.enterprise.Redis``."""

    def __init__(self, redis: Redis | str = "redis://localhost:6379", *, prefix: str = "cello:") -> None:
        self.redis = Redis(redis) if isinstance(redis, str) else redis
        self.prefix = prefix
        self._scripts: dict[str, Any] = {}

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def _script(self, name: str, source: str, keys: list[str], args: list[Any]) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.redis.client.register_script(source)
        try:
            return await script(keys=keys, args=args)
        except self.redis.failures() as exc:
            raise self.redis.unavailable(exc) from exc

    async def get(self, key: str) -> bytes | None:
        value = await self.redis.execute("GET", self._key(key))  # the shared connection: no pool checkout
        return bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        if ttl:
            await self.redis.execute("SET", self._key(key), value, "PX", max(1, int(ttl * 1000)))
        else:
            await self.redis.execute("SET", self._key(key), value)

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        return int(await self.redis.call("delete", *(self._key(k) for k in keys)))

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        ttl_ms = int(ttl * 1000) if ttl else 0
        return int(await self._script("incr", _INCR_SCRIPT, [self._key(key)], [amount, ttl_ms]))

    async def sliding_window(self, key: str, limit: int, window: float, cost: int = 1) -> WindowResult:
        window_ms = max(1, int(window * 1000))
        allowed, estimate, reset_ms, previous = await self._script(
            "sliding", _WINDOW_SCRIPT, [self._key(key)], [limit, window_ms, cost]
        )
        used = float(estimate)
        reset_after = int(reset_ms) / 1000
        if allowed:
            return WindowResult(True, limit, max(0, int(limit - used)), reset_after, 0.0)
        previous = int(previous)
        needed = used + cost - limit
        retry = reset_after if previous == 0 else min(reset_after, needed / previous * window)
        return WindowResult(False, limit, max(0, int(limit - used)), reset_after, max(retry, 0.001))

    async def token_bucket(self, key: str, capacity: int, refill_per_second: float, cost: int = 1) -> WindowResult:
        per_ms = refill_per_second / 1000
        allowed, tokens_text = await self._script(
            "bucket", _BUCKET_SCRIPT, [self._key(key)], [capacity, repr(per_ms), cost]
        )
        tokens = float(tokens_text)
        reset_after = (capacity - tokens) / refill_per_second
        if allowed:
            return WindowResult(True, capacity, int(tokens), reset_after, 0.0)
        return WindowResult(False, capacity, int(tokens), reset_after, (cost - tokens) / refill_per_second)

    async def tag(self, tag: str, key: str, ttl: float | None = None) -> None:
        name = self._key("tag:" + tag)
        await self.redis.call("sadd", name, key)
        if ttl:
            # keep the set as long as its longest-lived member
            current = await self.redis.call("pttl", name)
            if current is not None and 0 <= int(current) < ttl * 1000:
                await self.redis.call("pexpire", name, int(ttl * 1000))

    async def tagged(self, tag: str) -> builtins.set[str]:
        members = await self.redis.call("smembers", self._key("tag:" + tag))
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}

    async def publish(self, channel: str, message: bytes) -> None:
        await self.redis.call("publish", self._key(channel), message)

    @contextlib.asynccontextmanager
    async def subscription(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        async with self.redis.subscribe(self.prefix + channel, raw=True) as messages:

            async def payloads() -> AsyncIterator[bytes]:
                async for message in messages:
                    yield message.data

            yield payloads()

    async def close(self) -> None:
        await self.redis.close()
