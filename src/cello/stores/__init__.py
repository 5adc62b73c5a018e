"""Stores: shared state for rate limiting, caching, sessions and broadcast (see ``base``)."""

from .base import Store, StoreUnavailable, WindowResult
from .memory import MemoryStore

__all__ = ["MemoryStore", "RedisStore", "Store", "StoreUnavailable", "WindowResult"]


def __getattr__(name: str) -> object:
    # the Redis store pulls in redis-py, an extra: import it only when asked for
    if name == "RedisStore":
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(f"module 'cello.stores' has no attribute {name!r}")
