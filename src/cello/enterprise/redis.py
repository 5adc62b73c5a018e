"""The one Redis connection layer: the user-facing ``Redis`` client, and the connection the Redis store and the
broadcast backplane use.

``Redis("redis://localhost:6379")`` connects lazily (on first use, in the worker that uses it). Single commands
(get, set, get_many, incr, hashes, publish...) share one multiplexed connection per worker (see _multiplexed.py:
concurrent requests pipeline on it); pub/sub, locks, pipelines and scripts use redis-py's asyncio client and its
pool. ``Redis("redis://node1:7000", cluster=True)`` (or a ``redis+cluster://`` URL) speaks to a Redis Cluster
through redis-py instead, discovering the other nodes from that one. Values are JSON (orjson), so a
dict stored with ``set`` comes back from ``get`` as the same dict; so are hash fields, pipeline results and
pub/sub messages. Keys are namespaced by ``prefix``. A backend that does not answer within ``socket_timeout``
raises ``StoreUnavailable`` (a 503 when unhandled) quickly instead of hanging a request. redis-py comes with the
``redis`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from .. import telemetry
from ..http.exceptions import ConfigurationError
from ..middleware.circuit import CircuitBreaker, CircuitOpenError
from ..stores.base import StoreUnavailable
from .errors import where

if TYPE_CHECKING:
    from ..app import App

__all__ = ["LockNotAcquired", "Message", "Pipeline", "Redis"]

try:
    from . import _multiplexed
except ImportError:  # without hiredis (or redis-py), single commands go through redis-py's client
    _multiplexed = None  # type: ignore[assignment]

_NO_BREAKER = contextlib.nullcontext()  # the breaker's stand-in when there is none (breaker_threshold=0)
_TRACING: ContextVar[bool] = ContextVar("cello_redis_traced", default=False)  # a command's span is open


class LockNotAcquired(StoreUnavailable):
    """Another holder kept the lock past ``blocking_timeout`` (unhandled: a 503, try again shortly)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One pub/sub message: the channel (without the prefix) and its JSON-decoded data."""

    channel: str
    data: Any


def _dumps(value: Any) -> bytes:
    from ..http.response import dump_json

    return dump_json(value)


def _loads(raw: bytes | None) -> Any:
    return None if raw is None else orjson.loads(raw)


class Redis:
    """An asyncio Redis client with JSON values: ``await cache.set("user:1", row, ttl=300)``."""

    def __init__(
        self,
        url: str = "redis://localhost:6379",
        *,
        prefix: str = "",
        cluster: bool = False,
        max_connections: int = 50,
        socket_timeout: float = 1.0,
        connect_timeout: float = 1.0,
        health_check_interval: float = 15.0,
        breaker_threshold: int = 5,
        breaker_reset: float = 5.0,
    ) -> None:
        self.cluster = cluster or url.startswith("redis+cluster://")
        self.url = url.replace("redis+cluster://", "redis://", 1)
        self._address = urlsplit(self.url).hostname or ""  # what spans name as the server
        self.prefix = prefix
        self._options: dict[str, Any] = {
            "max_connections": max_connections,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            "health_check_interval": health_check_interval,
        }
        self._client: Any = None
        self._multiplexed: Any = None  # the shared connection for single commands (_multiplexed.py)
        self._connecting: asyncio.Task[Any] | None = None
        self._failures: tuple[type[BaseException], ...] | None = None
        self._in_flight: asyncio.Semaphore | None = None
        # NOTE: an open circuit raises StoreUnavailable like any outage, so every feature's fallback (fail open,
        # skip the cache) still applies - only faster than waiting for the socket timeout on every call
        self.breaker: CircuitBreaker | None = None
        if breaker_threshold > 0:
            self.breaker = CircuitBreaker(name="redis", failure_threshold=breaker_threshold, traced=False,
                                          reset_timeout=breaker_reset, exceptions=(StoreUnavailable,))  # fmt: skip

    @property
    def client(self) -> Any:
        """The underlying ``redis.asyncio`` client (bytes in, bytes out), created on first use."""
        if self._client is None:
            try:
                import redis.asyncio
                from redis.asyncio.cluster import RedisCluster
            except ImportError:
                raise ConfigurationError("Redis support needs redis-py: pip install 'cello[redis]'") from None
            if self.cluster:
                options = {k: v for k, v in self._options.items() if k != "health_check_interval"}
                self._client = RedisCluster.from_url(self.url, **options)
            else:
                # NOTE: the pool itself is not capped (a capped redis-py pool fails calls past its size, and its
                # blocking variant pays a timer on every call); `call` caps the commands in flight instead, and
                # pub/sub connections, held for as long as a subscription lasts, stay outside that cap
                options = {**self._options, "max_connections": None}
                self._client = redis.asyncio.Redis.from_url(self.url, **options)
        return self._client

    def key(self, key: str) -> str:
        return self.prefix + key

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        """The error to raise for a connection failure: it names host and port, never credentials."""
        return StoreUnavailable(f"Redis at {where(self.url)} did not answer: {type(exc).__name__}")

    def failures(self) -> tuple[type[BaseException], ...]:
        """The exceptions that mean Redis (not the command) is at fault."""
        if self._failures is None:
            import redis.exceptions

            self._failures = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
        return self._failures

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run one client command through the circuit breaker, turning connection failures into
        ``StoreUnavailable``."""
        if telemetry.tracer is not None and not _TRACING.get():
            operation = str(args[0]) if method == "execute_command" and args else method
            return await self._traced(operation, self.call(method, *args, **kwargs))
        slots = self._in_flight
        if slots is None:
            slots = self._in_flight = asyncio.Semaphore(self._options["max_connections"])
        if slots.locked():  # every connection busy: wait for one, but not for ever (and busy is not broken)
            try:
                await asyncio.wait_for(slots.acquire(), self._options["socket_timeout"])
            except TimeoutError:
                raise StoreUnavailable(f"no free Redis connection among {self._options['max_connections']}") from None
        else:
            await slots.acquire()
        try:
            async with self.breaker or _NO_BREAKER:
                try:
                    return await getattr(self.client, method)(*args, **kwargs)
                except self.failures() as exc:
                    raise self.unavailable(exc) from exc
        except CircuitOpenError:
            raise StoreUnavailable("Redis keeps failing: the circuit is open") from None
        finally:
            slots.release()

    async def execute(self, *command: Any) -> Any:
        """One command (``"GET", key``), its reply as Redis gives it (bytes, int, list), on the shared connection;
        in cluster mode (or without hiredis) through redis-py. Connection failures raise ``StoreUnavailable``."""
        if telemetry.tracer is not None and not _TRACING.get():
            return await self._traced(str(command[0]), self.execute(*command))
        connection = self._multiplexed
        if connection is None or not connection.usable or connection.loop is not asyncio.get_running_loop():
            if self.cluster or _multiplexed is None:
                return await self.call("execute_command", *command)
            connection = None
        try:
            with self.breaker or _NO_BREAKER:  # NOTE: the sync form: no coroutine per call to enter or leave
                try:
                    if connection is None:
                        connection = await self._connect()
                    return await connection.send(_multiplexed.pack(*command))
                except self.failures() as exc:
                    raise self.unavailable(exc) from exc
        except CircuitOpenError:
            raise StoreUnavailable("Redis keeps failing: the circuit is open") from None

    async def _traced(self, operation: str, command: Any) -> Any:
        """``command`` (a coroutine of ``call`` or ``execute``) inside a client span (``cello.telemetry``)."""
        operation = operation.upper()
        attributes = {"db.system": "redis", "db.operation.name": operation, "server.address": self._address}
        token = _TRACING.set(True)  # NOTE: the command itself, started below, must not make a span again
        try:
            with telemetry.client_span(operation, attributes):
                return await command
        finally:
            _TRACING.reset(token)

    async def _connect(self) -> Any:
        """The shared connection, opened once however many commands are waiting for it."""
        loop = asyncio.get_running_loop()
        if self._connecting is None or self._connecting.get_loop() is not loop:
            self._connecting = loop.create_task(
                _multiplexed.connect(
                    self.url,
                    timeout=self._options["socket_timeout"],
                    connect_timeout=self._options["socket_connect_timeout"],
                )
            )
        connecting = self._connecting
        try:
            connection = await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None  # failed or done: the next command starts afresh
        self._multiplexed = connection
        return connection

    # -- values -----------------------------------------------------------------------------------------------

    async def get(self, key: str) -> Any:
        """The JSON value stored under ``key``, or None."""
        return _loads(await self.execute("GET", self.prefix + key))

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` as JSON; it expires after ``ttl`` seconds when given."""
        if ttl:
            await self.execute("SET", self.prefix + key, _dumps(value), "PX", max(1, int(ttl * 1000)))
        else:
            await self.execute("SET", self.prefix + key, _dumps(value))

    async def get_many(self, *keys: str) -> list[Any]:
        """The JSON values under ``keys`` (None where missing), in one round trip (MGET)."""
        if not keys:
            return []
        prefix, loads = self.prefix, orjson.loads
        names = [prefix + k for k in keys]
        # NOTE: a cluster keeps keys in different slots on different nodes: redis-py splits the command by slot
        found = await (self.call("mget_nonatomic", names) if self.cluster else self.execute("MGET", *names))
        return [None if raw is None else loads(raw) for raw in found]

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        names = [self.key(k) for k in keys]
        return int(await (self.call("delete", *names) if self.cluster else self.execute("DEL", *names)))

    async def exists(self, key: str) -> bool:
        return bool(await self.execute("EXISTS", self.key(key)))

    async def incr(self, key: str, amount: int = 1) -> int:
        """Add ``amount`` to the integer at ``key`` (0 when missing), atomically; the new value."""
        return int(await self.execute("INCRBY", self.key(key), amount))

    async def expire(self, key: str, ttl: float) -> bool:
        """Let ``key`` expire after ``ttl`` seconds; False when there is no such key."""
        return bool(await self.execute("PEXPIRE", self.key(key), max(1, int(ttl * 1000))))

    async def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires; None when it does not exist or never expires."""
        left = int(await self.execute("PTTL", self.key(key)))
        return None if left < 0 else left / 1000

    # -- hashes -------------------------------------------------------------------------------------------------

    async def hset(self, key: str, mapping: dict[str, Any]) -> int:
        """Set fields of the hash at ``key`` (values as JSON); how many fields are new."""
        pairs = [part for field, value in mapping.items() for part in (field, _dumps(value))]
        return int(await self.execute("HSET", self.key(key), *pairs))

    async def hget(self, key: str, field: str) -> Any:
        return _loads(await self.execute("HGET", self.key(key), field))

    async def hgetall(self, key: str) -> dict[str, Any]:
        raw = await self.execute("HGETALL", self.key(key))
        pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)  # redis-py: a dict
        return {field.decode(): _loads(value) for field, value in pairs}

    async def hdel(self, key: str, *fields: str) -> int:
        return int(await self.execute("HDEL", self.key(key), *fields))

    # -- pipelines, pub/sub, locks ---------------------------------------------------------------------------

    def pipeline(self, transaction: bool = True) -> Pipeline:
        """Commands sent together in one round trip (``MULTI``/``EXEC`` when ``transaction``; a cluster runs
        them per node, without one):

            async with cache.pipeline() as pipe:
                pipe.incr("hits").expire("hits", 60).get("hits")
            hits = pipe.results[-1]
        """
        return Pipeline(self, transaction and not self.cluster)

    async def publish(self, channel: str, message: Any) -> int:
        """Publish ``message`` as JSON; how many subscribers received it."""
        return int(await self.execute("PUBLISH", self.key(channel), _dumps(message)))

    @contextlib.asynccontextmanager
    async def subscribe(self, *channels: str, raw: bool = False) -> AsyncIterator[AsyncIterator[Message]]:
        """Subscribed once the block is entered (nothing published afterwards is missed); iterate for messages:

            async with cache.subscribe("news") as messages:
                async for message in messages:
                    print(message.channel, message.data)

        ``raw``: ``data`` is the bytes as published, not decoded.
        """
        failures = self.failures()
        pubsub = self.client.pubsub()
        names = [self.key(channel) for channel in channels]
        try:
            try:
                await pubsub.subscribe(*names)
                # NOTE: wait for Redis to confirm every channel: from then on every PUBLISH reaches this connection
                confirmed = 0
                async with asyncio.timeout(10):
                    while confirmed < len(names):
                        reply = await pubsub.get_message(timeout=1.0)
                        confirmed += reply is not None and reply["type"] == "subscribe"
            except failures as exc:
                raise self.unavailable(exc) from exc
            yield self._messages(pubsub, raw)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _messages(self, pubsub: Any, raw: bool) -> AsyncIterator[Message]:
        skip = len(self.prefix)
        try:
            while True:
                # NOTE: not pubsub.listen(): its blocking read is bounded by the client's socket timeout (a
                # second), so a quiet channel would look like a dead Redis; an explicit wait returns None when
                # nothing came, and a real failure still raises
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=30.0)
                if message is None or message.get("type") != "message":
                    continue
                channel = message["channel"]
                channel = (channel.decode() if isinstance(channel, bytes) else str(channel))[skip:]
                data = message["data"]
                data = data if isinstance(data, bytes) else str(data).encode()
                yield Message(channel, data if raw else orjson.loads(data))
        except self.failures() as exc:
            raise self.unavailable(exc) from exc

    @contextlib.asynccontextmanager
    async def lock(self, name: str, timeout: float = 10.0, blocking_timeout: float = 5.0) -> AsyncIterator[None]:
        """A distributed lock: one holder at a time across workers and machines. It expires after ``timeout``
        seconds even if its holder dies; waiting longer than ``blocking_timeout`` raises ``LockNotAcquired``."""
        lock = self.client.lock(self.key("lock:" + name), timeout=timeout, blocking_timeout=blocking_timeout)
        try:
            acquired = await lock.acquire()
        except self.failures() as exc:
            raise self.unavailable(exc) from exc
        if not acquired:
            raise LockNotAcquired(f"the lock {name!r} is held elsewhere")
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # expired meanwhile, or Redis gone: the TTL frees it
                await lock.release()

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def ping(self) -> bool:
        """Whether Redis answers now (the readiness check)."""
        try:
            return bool(await self.execute("PING"))
        except StoreUnavailable:
            return False

    def attach(self, app: App) -> Redis:
        """Close the connections when the app (each worker) stops, and report Redis to the readiness check
        (``app.enable_health_checks()``) as ``redis``."""
        app.on_shutdown(self.close)
        app.health_check("redis")(self.ping)
        return self

    async def close(self) -> None:
        connection, self._multiplexed = self._multiplexed, None
        if connection is not None:
            connection.abort(StoreUnavailable("the Redis client was closed"))
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


class Pipeline:
    """Queued commands (``set``, ``get``, ``delete``, ``incr``, ``expire``, ``hset``, ``hget``) run in one round
    trip when the ``async with`` block ends; ``results`` holds their answers, decoded like the client's."""

    def __init__(self, redis: Redis, transaction: bool) -> None:
        self.redis = redis
        self.transaction = transaction
        self._queued: list[tuple[str, tuple[Any, ...], dict[str, Any], Any]] = []
        self.results: list[Any] = []

    def _add(self, command: str, *args: Any, decode: Any = None, **kwargs: Any) -> Pipeline:
        self._queued.append((command, args, kwargs, decode))
        return self

    def set(self, key: str, value: Any, ttl: float | None = None) -> Pipeline:
        return self._add("set", self.redis.key(key), _dumps(value), px=int(ttl * 1000) if ttl else None)

    def get(self, key: str) -> Pipeline:
        return self._add("get", self.redis.key(key), decode=_loads)

    def delete(self, *keys: str) -> Pipeline:
        return self._add("delete", *(self.redis.key(k) for k in keys), decode=int)

    def incr(self, key: str, amount: int = 1) -> Pipeline:
        return self._add("incrby", self.redis.key(key), amount, decode=int)

    def expire(self, key: str, ttl: float) -> Pipeline:
        return self._add("pexpire", self.redis.key(key), max(1, int(ttl * 1000)), decode=bool)

    def hset(self, key: str, mapping: dict[str, Any]) -> Pipeline:
        return self._add("hset", self.redis.key(key), mapping={f: _dumps(v) for f, v in mapping.items()}, decode=int)

    def hget(self, key: str, field: str) -> Pipeline:
        return self._add("hget", self.redis.key(key), field, decode=_loads)

    async def execute(self) -> list[Any]:
        pipe = self.redis.client.pipeline(transaction=self.transaction)
        for command, args, kwargs, _ in self._queued:
            getattr(pipe, command)(*args, **kwargs)
        try:
            raw = await pipe.execute()
        except self.redis.failures() as exc:
            raise self.redis.unavailable(exc) from exc
        self.results = [
            decode(value) if decode else value for (_, _, _, decode), value in zip(self._queued, raw, strict=True)
        ]
        self._queued.clear()
        return self.results

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None and self._queued:
            await self.execute()
