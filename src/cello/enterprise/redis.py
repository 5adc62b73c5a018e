"""The one Redis connection layer: the user-facing ``Redis`` client, and the connection the Redis store and the
broadcast backplane use.

``Redis("redis://localhost:6379")`` connects lazily (on first use, in the worker that uses it) through redis-py's
asyncio client with a connection pool; values are JSON (orjson), so a dict stored with ``set`` comes back from
``get`` as the same dict. A backend that does not answer within ``socket_timeout`` raises ``StoreUnavailable``
quickly instead of hanging a request. redis-py comes with the ``redis`` extra.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..http.exceptions import ConfigurationError
from ..stores.base import StoreUnavailable

__all__ = ["Redis"]


class Redis:
    """An asyncio Redis client with JSON values: ``await cache.set("user:1", row, ttl=300)``."""

    def __init__(
        self,
        url: str = "redis://localhost:6379",
        *,
        prefix: str = "",
        max_connections: int = 50,
        socket_timeout: float = 1.0,
        connect_timeout: float = 1.0,
        health_check_interval: float = 15.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self._options: dict[str, Any] = {
            "max_connections": max_connections,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            "health_check_interval": health_check_interval,
        }
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The underlying ``redis.asyncio.Redis`` (bytes in, bytes out), created on first use."""
        if self._client is None:
            try:
                import redis.asyncio
            except ImportError:
                raise ConfigurationError("Redis support needs redis-py: pip install 'cello[redis]'") from None
            self._client = redis.asyncio.Redis.from_url(self.url, **self._options)
        return self._client

    def key(self, key: str) -> str:
        return self.prefix + key

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run one client command, turning connection failures into ``StoreUnavailable``."""
        import redis.exceptions

        try:
            return await getattr(self.client, method)(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"Redis at {self.url} did not answer: {type(exc).__name__}") from exc

    async def get(self, key: str) -> Any:
        """The JSON value stored under ``key``, or None."""
        raw = await self.call("get", self.key(key))
        return None if raw is None else orjson.loads(raw)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` as JSON; it expires after ``ttl`` seconds when given."""
        from ..http.response import dump_json

        await self.call("set", self.key(key), dump_json(value), px=int(ttl * 1000) if ttl else None)

    async def delete(self, *keys: str) -> int:
        return int(await self.call("delete", *(self.key(k) for k in keys)))

    async def ping(self) -> bool:
        return bool(await self.call("ping"))

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
