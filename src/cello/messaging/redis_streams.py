"""``Broker("redis://host:6379/0")`` (or ``rediss://`` for TLS): Redis Streams with consumer groups, through the
one Redis connection layer, ``cello.enterprise.Redis``.

Topology: a topic is a stream at the key ``prefix + topic`` (``cello:stream:orders``); a Cello group is a consumer
group of that stream, so every group gets each entry and the members of one group share them; each consumer is
named ``<host>-<pid>-<random>``. An entry's fields are ``body`` (the bytes), ``key`` (when the message has one) and
``header:<name>`` per header.

Delivery: a consumer reads new entries with ``XREADGROUP ... >`` (``COUNT`` up to its free ``prefetch`` slots, once
at least half of them are free; ``BLOCK`` up to ``block`` seconds) on a connection of its own, made by the layer's
pool, so a blocking read never holds up publishing or settling, which share the layer's pipelined connection.
``stop()`` wakes a read with ``CLIENT UNBLOCK`` rather than waiting it out (or cancels it, where an ACL refuses
that). A new group starts at the stream's end (``new_groups="latest"``: entries added from then on) or at its first
retained entry (``"earliest"``). A group that vanished while its consumers ran (a Redis restarted without
persistence) is created again from the stream's first entry: after a loss, a repeat beats a gap. Keys do not pick a
consumer (Redis has no partitions): one key's order holds within a consumer, not across the members of a group.

Settling: ack and reject are ``XACK`` (the entry stays in the stream for the other groups: no ``XDEL``, which
would take it from them too; ``maxlen`` trims old entries on ``XADD``). Nack is ``XCLAIM`` of the entry by its
own consumer, which counts one more delivery, and hands it over again at once in the slot it held; nacked while
the consumer stops, it is left claimable by the other members at once. ``Delivery.redelivered`` is Redis's
delivery counter minus one; ``Delivery.meta`` holds ``stream_id``, ``stream``, ``group`` and ``consumer``.

At least once: an entry read and not acked stays in the group's pending list. Every ``claim_after / 2`` seconds
each consumer claims (``XAUTOCLAIM``) the entries idle for ``claim_after`` seconds - those of a killed worker, or
of a handler cut off at shutdown - and hands them over again. A consumer touches its own entries under way every
``claim_after / 3`` seconds (``XCLAIM ... JUSTID``), so a slow handler's entry is never taken while it runs. A
consumer stopped cleanly with nothing pending leaves its group; names of vanished consumers with nothing pending
are removed after ``forget_consumers_after`` seconds of silence.

Options: ``claim_after`` (30.0), ``block`` (2.0), ``maxlen`` (None: no trimming; else ``MAXLEN ~ n``),
``new_groups`` ("latest"), ``forget_consumers_after`` (3600.0; None keeps every name), ``prefix``
("cello:stream:"), and the connection options of ``cello.enterprise.Redis``: ``socket_timeout`` (1.0),
``connect_timeout`` (1.0), ``max_connections`` (50), ``health_check_interval`` (15.0), ``breaker_threshold`` (5),
``breaker_reset`` (5.0). Redis 6.2 or newer; a Redis Cluster is not supported. Redis has no request/reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
from collections.abc import Mapping
from typing import Any

from redis.asyncio.connection import parse_url
from redis.exceptions import ResponseError

from ..enterprise.errors import where
from ..enterprise.redis import Redis
from ..http.exceptions import ConfigurationError
from ..stores.base import StoreUnavailable
from .broker import BrokerUnavailable
from .message import Delivery
from .transport import Consumer, Handler, Transport, refill_at

__all__ = ["RedisStreamsTransport"]

logger = logging.getLogger("cello.messaging.redis")

HEADER = b"header:"  # the field name prefix of a header
MINIMUM_VERSION = (6, 2)  # XAUTOCLAIM

# XAUTOCLAIM idle entries, then read each one's delivery counter (XAUTOCLAIM does not report it); an entry trimmed
# away meanwhile is acked on Redis 6.2 (7.0 drops it from the pending list by itself): nobody can handle it
CLAIM_IDLE = """
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local found = {}
for _, entry in ipairs(claimed[2]) do
  if entry[2] then
    local pending = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
    found[#found + 1] = {entry[1], entry[2], pending[1][4]}
  else
    redis.call('XACK', KEYS[1], ARGV[1], entry[1])
  end
end
return {claimed[1], found}
"""

# a nacked entry claimed again by its own consumer: one more delivery, the entry and its counter; nil when it is
# no longer pending (acked elsewhere, trimmed away)
CLAIM_AGAIN = """
local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3])
if #claimed == 0 or not claimed[1][2] then return false end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
return {claimed[1][1], claimed[1][2], pending[1][4]}
"""

# reset the idle time of the entries under way that this consumer still owns (not the counter: JUSTID); returns
# those another consumer owns now, claimed because this one was silent for longer than claim_after
KEEP_ALIVE = """
local claim = {KEYS[1], ARGV[1], ARGV[2], 0}
local lost = {}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if pending[1] then
    if pending[1][2] == ARGV[2] then claim[#claim + 1] = ARGV[i] else lost[#lost + 1] = ARGV[i] end
  end
end
if #claim > 4 then
  claim[#claim + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(claim))
end
return lost
"""

# a nacked entry left by a consumer that stops: idle for claim_after already, so the next member's claim takes it
LET_GO = """
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'JUSTID')
return 1
"""

# a consumer leaving its group, unless entries are still pending on it (deleting it would lose them)
LEAVE = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
"""

# the names of consumers silent for ARGV[2] ms that own nothing: workers that vanished (atomic, so an entry cannot
# reach a consumer between the check and its deletion)
FORGET = """
local found = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if found.err then return 0 end
local forgotten = 0
for _, consumer in ipairs(found) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['pending'] == 0 and info['idle'] >= tonumber(ARGV[2]) and info['name'] ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    forgotten = forgotten + 1
  end
end
return forgotten
"""


def _number(name: str, value: Any, *, zero: bool = False) -> float:
    """A finite number option, > 0 (or >= 0 with ``zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ConfigurationError(f"redis:// option {name} must be a number, not {value!r}")
    if value < 0 or (value == 0 and not zero):
        raise ConfigurationError(f"redis:// option {name} must be {'>= 0' if zero else '> 0'}, not {value!r}")
    return float(value)


def _integer(name: str, value: Any, *, zero: bool = False) -> int:
    """An integer option, > 0 (or >= 0 with ``zero``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"redis:// option {name} must be an integer, not {value!r}")
    _number(name, value, zero=zero)
    return value


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(fields: Any) -> list[tuple[Any, Any]]:
    """An entry's fields as ``(name, value)`` pairs: a flat RESP array, or a map where a parser made one."""
    if isinstance(fields, dict):
        return list(fields.items())
    return list(zip(fields[::2], fields[1::2], strict=True))


class RedisStreamsTransport(Transport):
    """Redis Streams (see the module)."""

    scheme = "redis"
    supports_request = False

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        claim_after: float = 30.0,
        block: float = 2.0,
        maxlen: int | None = None,
        new_groups: str = "latest",
        forget_consumers_after: float | None = 3600.0,
        prefix: str = "cello:stream:",
        socket_timeout: float = 1.0,
        connect_timeout: float = 1.0,
        max_connections: int = 50,
        health_check_interval: float = 15.0,
        breaker_threshold: int = 5,
        breaker_reset: float = 5.0,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ConfigurationError(
                f"unknown redis:// broker option(s): {', '.join(sorted(unknown))} (known: claim_after, block, "
                "maxlen, new_groups, forget_consumers_after, prefix, socket_timeout, connect_timeout, "
                "max_connections, health_check_interval, breaker_threshold, breaker_reset)"
            )
        self.scheme = url.partition("://")[0].lower()
        if self.scheme not in ("redis", "rediss"):
            raise ConfigurationError(f"a Redis Streams broker URL is redis:// or rediss://, not {where(url)!r}")
        try:
            parse_url(url)  # NOTE: what the layer's connections will make of it, checked now rather than at connect
        except ValueError as exc:
            raise ConfigurationError(f"bad Redis URL for the broker ({where(url)}): {exc}") from None
        self.claim_after = _number("claim_after", claim_after)
        self.block = _number("block", block)
        if maxlen is not None:
            _integer("maxlen", maxlen)
        self.maxlen = maxlen
        if new_groups not in ("latest", "earliest"):
            raise ConfigurationError(f"redis:// option new_groups is 'latest' or 'earliest', not {new_groups!r}")
        self.new_groups = new_groups
        if forget_consumers_after is not None:
            _number("forget_consumers_after", forget_consumers_after)
            if forget_consumers_after < 2 * self.block:
                # NOTE: a live consumer waiting in a blocking read looks silent for up to `block` seconds
                raise ConfigurationError("redis:// option forget_consumers_after must be at least twice block")
        self.forget_after = None if forget_consumers_after is None else float(forget_consumers_after)
        if not isinstance(prefix, str):
            raise ConfigurationError(f"redis:// option prefix must be a string, not {prefix!r}")
        self.socket_timeout = _number("socket_timeout", socket_timeout)
        self.redis = Redis(
            url,
            prefix=prefix,
            socket_timeout=self.socket_timeout,
            connect_timeout=_number("connect_timeout", connect_timeout),
            max_connections=_integer("max_connections", max_connections),
            health_check_interval=_number("health_check_interval", health_check_interval, zero=True),
            breaker_threshold=_integer("breaker_threshold", breaker_threshold, zero=True),
            breaker_reset=_number("breaker_reset", breaker_reset),
        )
        # what means Redis is not there now (retry later), and that plus a refused command (logged, retried)
        self.failures: tuple[type[BaseException], ...] = (*self.redis.failures(), StoreUnavailable)
        self.refusals: tuple[type[BaseException], ...] = (*self.failures, ResponseError)
        self.closed = True  # until connect(); settling then is dropped (the entry stays pending)
        self.consumers: set[_StreamConsumer] = set()

    def stream(self, topic: str) -> str:
        """The stream key of ``topic``."""
        return self.redis.key(topic)

    async def connect(self) -> None:
        try:
            info = await self.redis.execute("INFO", "server")  # raises StoreUnavailable when Redis is not there
        except ResponseError:  # INFO refused (renamed away on some hosted Redis): the version goes unchecked
            await self.redis.execute("PING")
            info = {}
        if isinstance(info, dict):  # parsed by redis-py (the layer's path without hiredis)
            version = str(info.get("redis_version", ""))
        else:
            version = next((line[14:] for line in _text(info).splitlines() if line.startswith("redis_version:")), "")
        parts = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
        if parts and parts < MINIMUM_VERSION:
            raise ConfigurationError(f"Redis Streams brokers need Redis 6.2 or newer, not {version}")
        self.closed = False

    async def close(self) -> None:
        self.closed = True
        for consumer in list(self.consumers):
            await consumer.abort()
        await self.redis.close()

    async def ping(self) -> bool:
        return not self.closed and await self.redis.ping()

    async def publish(self, topic: str, body: bytes, *, key: str | None, headers: Mapping[str, str]) -> None:
        if self.closed:  # NOTE: the layer would quietly open a new connection, outliving the broker
            raise BrokerUnavailable(f"broker {self.scheme}:// is closed")
        command: list[Any] = ["XADD", self.stream(topic)]
        if self.maxlen is not None:
            command += ["MAXLEN", "~", self.maxlen]
        command += ["*", "body", body]
        if key is not None:
            command += ["key", key]
        for name, value in headers.items():
            command += [HEADER + name.encode(), value]
        await self.redis.execute(*command)

    async def consume(self, topic: str, group: str, handler: Handler, *, prefetch: int) -> Consumer:
        consumer = _StreamConsumer(self, topic, group, handler, prefetch)
        await consumer.create_group("$" if self.new_groups == "latest" else "0")
        consumer.start()
        return consumer

    def describe(self) -> dict[str, Any]:
        return {
            "protocol": self.scheme,
            "description": f"Redis Streams: a stream per topic at {self.redis.prefix}<topic>, a consumer group "
            "per subscriber group",
        }


class _Backoff:
    """Seconds to wait before trying Redis again: doubling from 0.1 to 2, reset by a success."""

    def __init__(self) -> None:
        self.delay = 0.0

    def next(self) -> float:
        self.delay = min(2.0, self.delay * 2 or 0.1)
        return self.delay

    def reset(self) -> bool:
        """Back to the start; whether it had been failing."""
        failing, self.delay = self.delay > 0, 0.0
        return failing


class _StreamConsumer(Consumer):
    """One member of a consumer group: a read loop on a connection of its own, handlers in their own tasks."""

    def __init__(self, transport: RedisStreamsTransport, topic: str, group: str, handler: Handler,
                 prefetch: int) -> None:  # fmt: skip
        self.transport = transport
        self.redis = transport.redis
        self.topic = topic
        self.stream = transport.stream(topic)
        self.group = group
        self.handler = handler
        self.name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.free = prefetch  # slots for deliveries not yet settled
        self.refill = refill_at(prefetch)
        self.room = asyncio.Event()  # set when a slot came free (or the consumer stops)
        self.under_way: dict[str, int] = {}  # stream id -> handovers of it not yet settled
        self.handed: set[asyncio.Task[None]] = set()
        self.connection: Any = None  # the connection of the blocking reads
        self.client_id: int | None = None  # its CLIENT ID, for CLIENT UNBLOCK
        self.reading = False
        self.stopping = False
        self.halted = asyncio.Event()  # set by stop(): ends a pause between tries
        self.claim_every = transport.claim_after / 2
        self.claim_cursor = "0-0"
        self.task: asyncio.Task[None] | None = None
        self.keeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self._run(), name=f"cello redis consumer {self.stream} {self.group}")
        self.keeper = loop.create_task(self._keep_alive(), name=f"cello redis keep-alive {self.stream}")
        self.transport.consumers.add(self)

    async def create_group(self, start: str) -> None:
        try:
            await self.redis.execute("XGROUP", "CREATE", self.stream, self.group, start, "MKSTREAM")
        except ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    # -- reading --------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = _Backoff()
        forget_after = self.transport.forget_after
        next_claim = next_forget = loop.time()  # NOTE: at once: a restarted worker takes its predecessor's entries
        while not self.stopping:
            if self.free < self.refill:
                self.room.clear()
                await self.room.wait()
                continue
            try:
                now = loop.time()
                if forget_after is not None and now >= next_forget:
                    next_forget = now + forget_after / 2
                    await self._forget_vanished()
                if now >= next_claim:
                    next_claim = now + self.claim_every
                    await self._claim_idle()
                    if self.free <= 0 or self.stopping:
                        continue
                wake = next_claim if forget_after is None else min(next_claim, next_forget)
                wait = min(self.transport.block, max(0.001, wake - loop.time()))
                for entry_id, fields in await self._read(self.free, wait):
                    self._hand(_text(entry_id), fields, 0)
                if backoff.reset():
                    logger.info("consuming %s as group %s again", self.stream, self.group)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # NOTE: inside a script on Redis 6.2 the error comes after an ERR
                    # the stream or its group vanished (Redis restarted without persistence, or they were deleted)
                    logger.warning("group %s of %s is gone: creating it again from the stream's start",
                                   self.group, self.stream)  # fmt: skip
                    with contextlib.suppress(*self.transport.refusals):
                        await self.create_group("0")
                    continue
                logger.error("Redis refused to serve %s to group %s: %s", self.stream, self.group, exc)
                await self._pause(backoff.next())
            except self.transport.failures as exc:
                await self._disconnect()
                if not backoff.delay:
                    logger.warning("lost Redis while consuming %s as group %s, reconnecting: %r",
                                   self.stream, self.group, exc)  # fmt: skip
                await self._pause(backoff.next())

    async def _pause(self, seconds: float) -> None:
        """Wait before trying Redis again; stop() ends the wait."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.halted.wait(), seconds)

    async def _read(self, count: int, wait: float) -> list[tuple[Any, Any]]:
        """New entries for this consumer (``XREADGROUP ... >``), waiting at most ``wait`` seconds for some."""
        connection = await self._connect()
        self.reading = True
        try:
            await connection.send_command("XREADGROUP", "GROUP", self.group, self.name, "COUNT", count,
                                          "BLOCK", max(1, int(wait * 1000)), "STREAMS", self.stream, ">")  # fmt: skip
            # NOTE: the reply comes within `wait` seconds, so past that plus the socket timeout the connection is
            # dead; timeout=inf lifts redis-py's own read timeout (the socket timeout), shorter than a long block
            async with asyncio.timeout(wait + self.transport.socket_timeout):
                reply = await connection.read_response(timeout=math.inf)
        finally:
            self.reading = False
        if not reply:
            return []
        entries: list[tuple[Any, Any]] = []
        for _, stream_entries in reply.items() if isinstance(reply, dict) else reply:
            entries.extend((entry[0], entry[1]) for entry in stream_entries if entry[1] is not None)
        return entries

    async def _connect(self) -> Any:
        """The consumer's own connection for blocking reads, made by the layer's pool (URL, TLS, credentials and
        database as every other Redis connection of the app) but kept out of it, connected, its client id known."""
        connection = self.connection
        if connection is None:
            connection = self.connection = self.redis.client.connection_pool.make_connection()
        if not connection.is_connected:
            self.client_id = None
            await connection.connect()
        if self.client_id is None:
            await connection.send_command("CLIENT", "ID")
            try:
                self.client_id = int(await connection.read_response())
            except ResponseError:  # refused by an ACL: stop() cancels the read instead of waking it
                self.client_id = 0
        return connection

    async def _disconnect(self) -> None:
        self.client_id = None
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.disconnect(nowait=True)

    async def _claim_idle(self) -> None:
        """Take the group's entries idle for ``claim_after`` seconds (a vanished consumer's), as many as there are
        free slots."""
        idle_ms = str(int(self.transport.claim_after * 1000))
        for _ in range(10):  # NOTE: XAUTOCLAIM scans at most 10 * COUNT pending entries per call
            if self.free <= 0:
                return
            cursor, found = await self.redis.execute("EVAL", CLAIM_IDLE, 1, self.stream, self.group, self.name,
                                                     idle_ms, self.claim_cursor, self.free)  # fmt: skip
            self.claim_cursor = _text(cursor)
            claimed = 0
            for entry_id, fields, deliveries in found:
                entry = _text(entry_id)
                if entry in self.under_way:  # this consumer's own, still under way (its keep-alive was late)
                    continue
                self._hand(entry, fields, int(deliveries) - 1)
                claimed += 1
            if claimed:
                logger.info("claimed %d entries of %s for group %s, idle for %g s (their consumer gone)", claimed,
                            self.stream, self.group, self.transport.claim_after)  # fmt: skip
            if self.claim_cursor == "0-0":
                return

    async def _forget_vanished(self) -> None:
        assert self.transport.forget_after is not None
        forgotten = await self.redis.execute("EVAL", FORGET, 1, self.stream, self.group,
                                             int(self.transport.forget_after * 1000), self.name)  # fmt: skip
        if forgotten:
            logger.info("removed %d vanished consumers with nothing pending from group %s of %s", forgotten,
                        self.group, self.stream)  # fmt: skip

    # -- handing over and settling ---------------------------------------------------------------------------

    def _hand(self, entry: str, fields: Any, redelivered: int, *, slot_taken: bool = False) -> None:
        """Run the handler on one entry in a task of its own; it holds one slot until settled."""
        if not slot_taken:
            self.free -= 1
        self.under_way[entry] = self.under_way.get(entry, 0) + 1
        task = asyncio.get_running_loop().create_task(self._hand_over(entry, fields, redelivered))
        self.handed.add(task)
        task.add_done_callback(self.handed.discard)

    async def _hand_over(self, entry: str, fields: Any, redelivered: int) -> None:
        body, key, headers = b"", None, {}
        for name, value in _pairs(fields):
            name = name if isinstance(name, bytes) else str(name).encode()
            if name == b"body":
                body = value if isinstance(value, bytes) else str(value).encode()
            elif name == b"key":
                key = _text(value)
            elif name.startswith(HEADER):
                headers[name[len(HEADER) :].decode()] = _text(value)
        settled = False

        async def settle(outcome: str) -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            await self._settle(entry, outcome)

        meta = {"stream_id": entry, "stream": self.stream, "group": self.group, "consumer": self.name}
        delivery = Delivery(self.topic, body, headers, key, settle, redelivered=redelivered, meta=meta)
        try:
            await self.handler(delivery)
        except Exception:
            logger.exception("the handler of %s (group %s) failed on %s", self.stream, self.group, entry)
        finally:
            if not settled:  # the handler ended without settling: not done, so delivered again
                await settle("nack")

    async def _settle(self, entry: str, outcome: str) -> None:
        count = self.under_way.get(entry, 0) - 1
        if count > 0:
            self.under_way[entry] = count
        else:
            self.under_way.pop(entry, None)
        if self.transport.closed:
            # NOTE: a handler that outlived the drain: its entry stays pending, claimed by a live member later
            logger.debug("%s of %s settled (%s) after the broker closed: it will be delivered again",
                         entry, self.stream, outcome)  # fmt: skip
            self._release()
            return
        try:
            if outcome != "nack":
                await self.redis.execute("XACK", self.stream, self.group, entry)
            elif self.stopping:  # leaving: claimable by the other members at once rather than after claim_after
                await self.redis.execute("EVAL", LET_GO, 1, self.stream, self.group, self.name, entry,
                                         int(self.transport.claim_after * 1000))  # fmt: skip
            else:
                again = await self.redis.execute("EVAL", CLAIM_AGAIN, 1, self.stream, self.group, self.name, entry)
                if again:
                    self._hand(entry, again[1], int(again[2]) - 1, slot_taken=True)
                    return
        except Exception as exc:
            # NOTE: the entry stays pending: a live member claims it after claim_after (at least once)
            logger.warning("could not %s %s of %s (group %s), it will be delivered again: %r",
                           outcome, entry, self.stream, self.group, exc)  # fmt: skip
        self._release()

    def _release(self) -> None:
        self.free += 1
        self.room.set()

    async def _keep_alive(self) -> None:
        """Reset the idle time of the entries under way, so no other member claims them while they run."""
        while True:
            await asyncio.sleep(self.transport.claim_after / 3)
            entries = list(self.under_way)
            try:
                for start in range(0, len(entries), 100):
                    lost = await self.redis.execute("EVAL", KEEP_ALIVE, 1, self.stream, self.group, self.name,
                                                    *entries[start : start + 100])  # fmt: skip
                    if lost:
                        logger.warning(
                            "%d entries of %s under way in group %s were claimed by another member (silent for "
                            "claim_after=%g s): they may be handled twice", len(lost), self.stream, self.group,
                            self.transport.claim_after,
                        )  # fmt: skip
            except self.transport.refusals as exc:
                logger.debug("keep-alive of %s (group %s) failed: %r", self.stream, self.group, exc)

    # -- stopping -------------------------------------------------------------------------------------------

    async def stop(self) -> None:
        self.stopping = True  # NOTE: before the first await: from here on nothing more is fetched
        self.halted.set()
        self.room.set()
        await self._interrupt()
        while self.handed:  # the drain: the handlers under way settle their entries
            await asyncio.wait(set(self.handed))
        await self._stop_keeper()
        if not self.transport.closed:
            with contextlib.suppress(*self.transport.refusals):
                await self.redis.execute("EVAL", LEAVE, 1, self.stream, self.group, self.name)
        await self._release_connection()
        self.transport.consumers.discard(self)

    async def abort(self) -> None:
        """The transport closes: stop reading at once; handlers still running settle into nothing."""
        self.stopping = True
        self.halted.set()
        self.room.set()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
            self.task = None
        await self._stop_keeper()
        await self._release_connection()
        self.transport.consumers.discard(self)

    async def _interrupt(self) -> None:
        """End the read loop: wake its blocking read with CLIENT UNBLOCK (what it read meanwhile is handed over
        still), or cancel it when that does not work within a second (what it had read is claimed later)."""
        task = self.task
        if task is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        while not task.done() and loop.time() < deadline:
            if self.reading:
                if not self.client_id:
                    break
                try:
                    await self.redis.execute("CLIENT", "UNBLOCK", self.client_id)
                except ResponseError:  # refused by an ACL
                    break
                except self.transport.failures:
                    pass
            await asyncio.wait({task}, timeout=0.05)
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        self.task = None

    async def _stop_keeper(self) -> None:
        keeper, self.keeper = self.keeper, None
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await keeper

    async def _release_connection(self) -> None:
        connection, self.connection = self.connection, None
        self.client_id = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)

    def in_flight(self) -> int:
        return len(self.handed)
