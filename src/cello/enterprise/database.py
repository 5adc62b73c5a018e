"""The one database layer: ``Database("postgresql://...")`` (asyncpg connections) or ``Database("sqlite:///app.db")``
(the embedded default, no server), with one API for handlers, health checks and the event store.

    db = Database("postgresql://localhost/mydb", pool_size=20)
    user = await db.fetch_one("SELECT * FROM users WHERE id = $1", user_id)    # a dict, or None
    async with db.transaction():                                             # nested: savepoints
        await db.execute("UPDATE accounts SET balance = balance - $1 WHERE id = $2", amount, source)

Rows are dicts, directly returnable from handlers. The pool opens on first use in the worker that uses it, or at
startup when attached (``db.attach(app)``: closed at shutdown, and a ``database`` readiness check). Inside
``transaction()`` or ``connection()`` every call of the same task runs on that one connection. A database that
does not answer, or a pool with no connection free within ``acquire_timeout``, raises ``DatabaseUnavailable`` (a
503 with ``Retry-After``); after ``breaker_threshold`` such failures in a row the circuit opens and calls are
refused at once for ``breaker_reset`` seconds, then tried again: the database coming back needs no restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .. import telemetry
from ..http.exceptions import ConfigurationError
from ..middleware.circuit import CircuitBreaker, CircuitOpenError
from ._postgres import PostgresPool
from ._sqlite import SQLitePool
from .errors import DatabaseUnavailable, where
from .row import Row

if TYPE_CHECKING:
    from ..app import App

__all__ = ["Connection", "Database", "DatabaseUnavailable"]

logger = logging.getLogger("cello.database")
_NO_BREAKER = contextlib.nullcontext()  # the breaker's stand-in when there is none (breaker_threshold=0)


class Connection:
    """One connection held for several statements (``async with db.connection() as conn``)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    async def fetch_one(self, query: str, *args: Any) -> Row | None:
        return await self._raw.fetch_one(query, args)  # type: ignore[no-any-return]

    async def fetch_all(self, query: str, *args: Any) -> list[Row]:
        return await self._raw.fetch_all(query, args)  # type: ignore[no-any-return]

    async def fetch_val(self, query: str, *args: Any, column: int = 0) -> Any:
        return await self._raw.fetch_val(query, args, column)

    async def execute(self, query: str, *args: Any) -> int:
        return await self._raw.execute(query, args)  # type: ignore[no-any-return]

    async def execute_many(self, query: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._raw.execute_many(query, rows)

    async def fetch_many(self, query: str, rows: Iterable[Sequence[Any]]) -> list[Row]:
        return await self._raw.fetch_many(query, rows)  # type: ignore[no-any-return]

    def iterate(self, query: str, *args: Any, batch: int = 100) -> AsyncIterator[Row]:
        return self._raw.iterate(query, args, batch)  # type: ignore[no-any-return]

    @contextlib.asynccontextmanager
    async def transaction(self, *, immediate: bool = False) -> AsyncIterator[Connection]:
        """A transaction on this connection; inside another one, a savepoint (``immediate``: see
        ``Database.transaction``)."""
        async with self._raw.transaction(immediate):
            yield self


class Database:
    """An async connection pool to PostgreSQL (asyncpg) or SQLite, with dict rows and one API for both.

    ``pool_size``: most connections at once per worker (each worker has its own pool: the server sees
    workers x pool_size). ``min_size``: connections kept open. ``connect_timeout`` / ``command_timeout``:
    seconds for a connection to open / a statement to finish. ``acquire_timeout``: seconds to wait for a free
    connection before ``DatabaseUnavailable``. ``statement_cache_size``: prepared statements kept per connection.
    ``max_idle``: seconds before an idle connection is closed; ``max_queries``: statements before a connection is
    replaced (recycling). ``ping_after``: seconds of idleness after which a connection is checked before use.
    ``breaker_threshold`` / ``breaker_reset``: the circuit breaker around database calls (0: none).
    """

    def __init__(
        self,
        url: str = "sqlite:///:memory:",
        *,
        pool_size: int = 10,
        min_size: int = 1,
        connect_timeout: float = 5.0,
        command_timeout: float = 30.0,
        acquire_timeout: float = 5.0,
        statement_cache_size: int = 1024,
        max_idle: float = 300.0,
        max_queries: int = 50_000,
        ping_after: float = 30.0,
        breaker_threshold: int = 5,
        breaker_reset: float = 5.0,
    ) -> None:
        if pool_size < 1 or not 0 <= min_size <= pool_size:
            raise ConfigurationError("pool_size must be >= 1 and min_size between 0 and pool_size")
        self.url = url
        scheme = url.partition("://")[0].lower()
        self.dialect = "postgresql" if scheme in ("postgresql", "postgres") else scheme
        self._pool: PostgresPool | SQLitePool
        if self.dialect == "postgresql":
            self._pool = PostgresPool(url, min_size=min_size, max_size=pool_size, connect_timeout=connect_timeout,
                                      command_timeout=command_timeout, acquire_timeout=acquire_timeout,
                                      statement_cache_size=statement_cache_size, max_idle=max_idle,
                                      max_queries=max_queries, ping_after=ping_after)  # fmt: skip
        elif self.dialect == "sqlite":
            path = url.partition("://")[2].removeprefix("/") or ":memory:"
            self._pool = SQLitePool(path, max_size=pool_size, acquire_timeout=acquire_timeout,
                                    busy_timeout=command_timeout)  # fmt: skip
        else:
            raise ConfigurationError(f"unsupported database URL {url!r}: use postgresql:// or sqlite://")
        # what spans name: the database (PostgreSQL) or the file (SQLite)
        self._namespace = where(url).rpartition("/")[2] if self.dialect == "postgresql" else url.rpartition("/")[2]
        self.breaker: CircuitBreaker | None = None
        if breaker_threshold > 0:
            self.breaker = CircuitBreaker(
                name=f"database:{self.dialect}",
                failure_threshold=breaker_threshold,
                reset_timeout=breaker_reset,
                exceptions=(DatabaseUnavailable,),
                traced=False,  # the statements have spans of their own
            )
        # the connection the current task holds inside transaction() / connection(); tasks started meanwhile
        # inherit the variable, but not the connection (one connection serves one task at a time)
        self._current: contextvars.ContextVar[tuple[Any, Connection] | None] = contextvars.ContextVar(
            f"db-{id(self)}", default=None
        )

    # -- lifecycle ------------------------------------------------------------------------------------------------

    async def connect(self) -> None:
        await self._pool.open()

    async def disconnect(self) -> None:
        await self._pool.close()

    async def __aenter__(self) -> Database:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    def attach(self, app: App) -> Database:
        """Open the pool when the app (each worker) starts, close it when it stops, and report it to the
        readiness check (``app.enable_health_checks()``) as ``database``."""

        async def open_pool() -> None:
            try:
                await self.connect()
            except DatabaseUnavailable:
                # NOTE: a worker must start even while the database is down: calls answer 503 and readiness
                # fails until it is back, then the pool opens on the next call
                logger.warning("the database is unreachable at startup", exc_info=True)

        app.on_startup(open_pool)
        app.on_shutdown(self.disconnect)
        app.health_check("database")(self.ping)
        return self

    async def ping(self) -> bool:
        """Whether the database answers a trivial query now (the readiness check)."""
        try:
            return bool(await self.fetch_val("SELECT 1") == 1)
        except (DatabaseUnavailable, CircuitOpenError):
            return False

    # -- statements -----------------------------------------------------------------------------------------------

    async def fetch_one(self, query: str, *args: Any) -> Row | None:
        """The first row as a dict, or None."""
        return await self._run("fetch_one", query, args)  # type: ignore[no-any-return]

    async def fetch_all(self, query: str, *args: Any) -> list[Row]:
        return await self._run("fetch_all", query, args)  # type: ignore[no-any-return]

    async def fetch_val(self, query: str, *args: Any, column: int = 0) -> Any:
        """One value of the first row (``column`` by position), or None."""
        return await self._run("fetch_val", query, args, column)

    async def execute(self, query: str, *args: Any) -> int:
        """Run a statement; the number of rows it affected."""
        return await self._run("execute", query, args)  # type: ignore[no-any-return]

    async def execute_many(self, query: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run a statement once for each set of arguments, in one round trip and as one unit (all or none)."""
        await self._run("execute_many", query, rows)

    async def fetch_many(self, query: str, rows: Iterable[Sequence[Any]]) -> list[Row]:
        """Run a query once for each set of arguments, in one round trip, and return the rows of every run in
        order (one per run for a lookup by key). Each run is its own statement, seeing what the earlier ones
        wrote; like ``execute_many`` they succeed or fail as one unit.

            worlds = await db.fetch_many("SELECT * FROM world WHERE id = $1", [(i,) for i in ids])
        """
        return await self._run("fetch_many", query, rows)  # type: ignore[no-any-return]

    async def _run(self, method: str, query: str, args: Any, *extra: Any) -> Any:
        """One statement: on the connection this task holds, else on a pooled one, through the breaker.

        NOTE: the per-statement path of every handler, written out rather than through ``_use``: each
        asynccontextmanager layer costs a few microseconds per call (the breaker's own is a plain class).
        """
        if telemetry.tracer is not None:
            return await self._run_traced(method, query, args, extra)
        held = self._held()
        if held is not None:
            return await getattr(held._raw, method)(query, args, *extra)
        with self.breaker or _NO_BREAKER:  # NOTE: the breaker's sync form: no coroutine per call to enter or leave
            return await self._pool.run(method, query, args, extra)

    async def _run_traced(self, method: str, query: str, args: Any, extra: tuple[Any, ...]) -> Any:
        """``_run`` inside a client span (``cello.telemetry``), its lines repeated so the untraced path keeps
        its single coroutine."""
        operation = query.lstrip().split(None, 1)[0].upper() if query.strip() else "QUERY"
        attributes = {"db.system": self.dialect, "db.namespace": self._namespace, "db.query.text": query,
                      "db.operation.name": operation}  # fmt: skip
        with telemetry.client_span(f"{operation} {self._namespace}".rstrip(), attributes):
            held = self._held()
            if held is not None:
                return await getattr(held._raw, method)(query, args, *extra)
            with self.breaker or _NO_BREAKER:
                return await self._pool.run(method, query, args, extra)

    async def iterate(self, query: str, *args: Any, batch: int = 100) -> AsyncIterator[Row]:
        """Rows as they stream in (a server-side cursor on PostgreSQL), ``batch`` at a time."""
        async with self._use() as conn:
            async for row in conn.iterate(query, *args, batch=batch):
                yield row

    # -- connections and transactions ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """One connection for several statements; ``db.*`` calls in this task use it too."""
        current = self._held()
        if current is not None:
            yield current
            return
        async with self._use() as conn:
            token = self._current.set((asyncio.current_task(), conn))
            try:
                yield conn
            finally:
                self._current.reset(token)

    @contextlib.asynccontextmanager
    async def transaction(self, *, immediate: bool = False) -> AsyncIterator[Connection]:
        """Commit on success, roll back on an exception; inside another transaction, a savepoint.

        ``immediate``: on SQLite, take the write lock when the transaction begins (``BEGIN IMMEDIATE``), waiting for
        it as long as for any lock. A transaction that reads, then writes what it read, needs it there: SQLite fails
        such a transaction at its first write when another writer committed since its first read. PostgreSQL needs
        nothing of the kind and ignores it."""
        async with self.connection() as conn, conn.transaction(immediate=immediate):
            yield conn

    async def request_connection(self) -> AsyncIterator[Connection]:
        """A dependency: ``conn: Connection = Depends(db.request_connection)``, held for the request."""
        async with self.connection() as conn:
            yield conn

    async def request_transaction(self) -> AsyncIterator[Connection]:
        """A dependency: the request runs in a transaction, committed when the handler returns, rolled back
        when it raises."""
        async with self.transaction() as conn:
            yield conn

    def _held(self) -> Connection | None:
        held = self._current.get()
        return held[1] if held is not None and held[0] is asyncio.current_task() else None

    @contextlib.asynccontextmanager
    async def _use(self) -> AsyncIterator[Connection]:
        current = self._held()
        if current is not None:
            yield current
            return
        async with self.breaker or _NO_BREAKER, self._pool.acquire() as raw:
            yield Connection(raw)
