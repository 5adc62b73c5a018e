"""PostgreSQL through an asyncpg pool: the backend behind ``Database("postgresql://...")``.

Rows become dicts; the statement cache, timeouts and recycling are asyncpg's own. What this module adds: a
liveness check on acquire for a connection idle longer than ``ping_after`` (a database restarted behind an idle
pool is found before a query fails on it), a bounded wait for a free connection, strings converted to the
parameter types a statement declares (``WHERE id = $1`` with a path parameter's "42"), and every connection
failure turned into ``DatabaseUnavailable``.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from .errors import DatabaseUnavailable

try:
    import asyncpg
except ImportError:  # pragma: no cover - the message says what to install
    asyncpg = None


_connection_class: Any = None


def _require() -> Any:
    """asyncpg, and the connection class that remembers when it went back to the pool."""
    global _connection_class
    if asyncpg is None:
        from ..http.exceptions import ConfigurationError

        raise ConfigurationError("PostgreSQL support needs asyncpg: pip install 'cello[postgres]'")
    if _connection_class is None:

        class TimedConnection(asyncpg.Connection):  # type: ignore[misc]
            released_at = 0.0
            dirty = False  # held for several statements: its session state may have changed

            def mark_released(self) -> None:
                self.released_at = time.monotonic()

            def mark_dirty(self) -> None:
                self.dirty = True

        _connection_class = TimedConnection
    return asyncpg


async def _reset_if_dirty(connection: Any) -> None:
    """Reset a connection's session (SET, LISTEN, advisory locks...) only when it was held for several
    statements. asyncpg rolls back an open transaction itself; one plain statement leaves nothing else behind
    unless it is itself a session command, which belongs in ``db.connection()`` (see docs/database.md). This saves
    the round trip asyncpg's default reset costs on every release."""
    if connection.dirty:
        connection.dirty = False
        query = connection.get_reset_query()
        if query:
            await connection.execute(query)


def _failures() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the database (not the query) is at fault."""
    errors = asyncpg.exceptions
    return (
        OSError,
        TimeoutError,
        errors.PostgresConnectionError,  # class 08: the connection failed or was lost
        errors.OperatorInterventionError,  # class 57: shutting down, crashed, starting up, cancelled
        errors.InsufficientResourcesError,  # class 53: too many connections, out of memory or disk
        errors.InterfaceError,  # the connection is closed or in use on the client side
        errors.InternalClientError,
    )


# text → the value asyncpg's binary codecs want, by the type name a prepared statement reports
_FROM_TEXT: dict[str, Callable[[str], Any]] = {
    "int2": int,
    "int4": int,
    "int8": int,
    "float4": float,
    "float8": float,
    "numeric": decimal.Decimal,
    "bool": lambda text: text.strip().lower() in ("t", "true", "1", "yes", "on"),
    "uuid": uuid.UUID,
    "date": datetime.date.fromisoformat,
    "timestamp": datetime.datetime.fromisoformat,
    "timestamptz": datetime.datetime.fromisoformat,
}


class PostgresConnection:
    """One pooled connection with the ``Database`` API."""

    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    async def fetch_one(self, query: str, args: Sequence[Any]) -> dict[str, Any] | None:
        row = await self._call(self.raw.fetchrow, query, args)
        return None if row is None else dict(row)

    async def fetch_all(self, query: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._call(self.raw.fetch, query, args)]

    async def fetch_val(self, query: str, args: Sequence[Any], column: int) -> Any:
        return await self._call(self.raw.fetchval, query, args, column=column)

    async def execute(self, query: str, args: Sequence[Any]) -> int:
        status: str = await self._call(self.raw.execute, query, args)
        count = status.rpartition(" ")[2]  # "INSERT 0 3", "UPDATE 2", "CREATE TABLE"
        return int(count) if count.isdigit() else 0

    async def execute_many(self, query: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.raw.executemany(query, [tuple(row) for row in rows])

    async def iterate(self, query: str, args: Sequence[Any], batch: int) -> AsyncIterator[dict[str, Any]]:
        # a server-side cursor lives inside a transaction (a savepoint when one is already open)
        async with self.raw.transaction():
            async for row in self.raw.cursor(query, *args, prefetch=batch):
                yield dict(row)

    def transaction(self) -> Any:
        return self.raw.transaction()  # nested: a savepoint

    async def _call(self, method: Any, query: str, args: Sequence[Any], **options: Any) -> Any:
        try:
            return await method(query, *args, **options)
        except (asyncpg.exceptions.DataError, TypeError) as exc:
            converted = await self._from_text(query, args)
            if converted is None:
                raise exc from None
            return await method(query, *converted, **options)

    async def _from_text(self, query: str, args: Sequence[Any]) -> list[Any] | None:
        """``args`` with strings converted to the statement's parameter types, or None when none would change."""
        if not any(isinstance(arg, str) for arg in args):
            return None
        statement = await self.raw.prepare(query)  # NOTE: cached by asyncpg: the retry does not prepare again
        converted, changed = list(args), False
        for index, (arg, kind) in enumerate(zip(args, statement.get_parameters(), strict=False)):
            convert = _FROM_TEXT.get(kind.name)
            if isinstance(arg, str) and convert is not None:
                try:
                    converted[index], changed = convert(arg), True
                except ValueError:
                    return None  # not a value of that type: the original error says so
        return converted if changed else None


class PostgresPool:
    """An asyncpg pool with a bounded acquire and an idle-time liveness check."""

    def __init__(self, url: str, *, min_size: int, max_size: int, connect_timeout: float, command_timeout: float,
                 acquire_timeout: float, statement_cache_size: int, max_idle: float, max_queries: int,
                 ping_after: float) -> None:  # fmt: skip
        self.url = url
        self.options = {
            "min_size": min_size,
            "max_size": max_size,
            "timeout": connect_timeout,
            "command_timeout": command_timeout,
            "statement_cache_size": statement_cache_size,
            "max_inactive_connection_lifetime": max_idle,
            "max_queries": max_queries,
        }
        self.acquire_timeout = acquire_timeout
        self.ping_after = ping_after
        self.pool: Any = None
        self.failures = _failures() if asyncpg is not None else (OSError,)

    async def open(self) -> None:
        module = _require()
        self.failures = _failures()
        try:
            self.pool = await module.create_pool(
                self.url, connection_class=_connection_class, reset=_reset_if_dirty, **self.options
            )
        except self.failures as exc:
            raise DatabaseUnavailable(f"PostgreSQL at {_where(self.url)} did not answer: {type(exc).__name__}") from exc

    async def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                await pool.close()

    async def run(self, method: str, query: str, args: Sequence[Any], extra: tuple[Any, ...]) -> Any:
        """One statement on a connection of its own: ``PostgresConnection.<method>(query, args, *extra)``."""
        if self.pool is None:
            await self.open()
        raw = await self._acquire_live()
        try:
            return await getattr(PostgresConnection(raw), method)(query, args, *extra)
        except self.failures as exc:
            raise DatabaseUnavailable(f"PostgreSQL connection lost: {type(exc).__name__}") from exc
        finally:
            _mark_released(raw)
            await self.pool.release(raw)

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[PostgresConnection]:
        """A connection held for several statements (reset when it goes back)."""
        if self.pool is None:
            await self.open()
        raw = await self._acquire_live()
        raw.mark_dirty()
        try:
            yield PostgresConnection(raw)
        except self.failures as exc:
            raise DatabaseUnavailable(f"PostgreSQL connection lost: {type(exc).__name__}") from exc
        finally:
            _mark_released(raw)
            await self.pool.release(raw)

    async def _acquire_live(self) -> Any:
        """A connection from the pool; one idle longer than ``ping_after`` is checked first, and a dead one
        (the database restarted behind it) is dropped for a fresh one."""
        pool = self.pool
        for attempt in range(2):
            try:
                # NOTE: with a connection idle, take it without a timeout: asyncpg's timeout wraps the acquire in
                # wait_for and the release in a timer, several microseconds each; a new connection's own connect
                # timeout still bounds the wait
                if pool.get_idle_size():
                    raw = await pool.acquire()
                else:
                    raw = await pool.acquire(timeout=self.acquire_timeout)
            except TimeoutError as exc:
                raise DatabaseUnavailable(
                    f"no free connection within {self.acquire_timeout:g} s (pool of {self.options['max_size']})"
                ) from exc
            except self.failures as exc:
                raise DatabaseUnavailable(
                    f"PostgreSQL at {_where(self.url)} did not answer: {type(exc).__name__}"
                ) from exc
            released_at = raw.released_at
            if not released_at or time.monotonic() - released_at < self.ping_after:
                return raw
            try:
                await raw.execute("SELECT 1")
                return raw
            except self.failures as exc:
                await self.pool.release(raw)  # closed: the pool replaces it
                if attempt == 1:
                    raise DatabaseUnavailable(f"PostgreSQL connection lost: {type(exc).__name__}") from exc
        raise AssertionError("unreachable")


def _mark_released(raw: Any) -> None:
    try:
        raw.mark_released()
    except AttributeError:
        pass  # asyncpg already detached a connection it lost: nothing left to mark


def _where(url: str) -> str:
    """host:port/database of a URL, without credentials (for logs)."""
    rest = url.partition("://")[2]
    return rest.rpartition("@")[2].partition("?")[0]
