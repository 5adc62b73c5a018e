"""PostgreSQL through asyncpg connections in a pool of Cello's own: the backend behind
``Database("postgresql://...")``.

Rows become ``Row`` dicts; the statement cache and connect timeout are asyncpg's. What this module adds: the pool (see
``PostgresPool`` for why it is not asyncpg's), the command timeout (see ``PostgresPool._watch``), a liveness
check for a connection idle longer than ``ping_after`` (a database restarted behind an idle pool is found before
a query fails on it), a bounded wait for a free connection, strings converted to the parameter types a statement
declares (``WHERE id = $1`` with a path parameter's "42"), every connection failure turned into
``DatabaseUnavailable``, and a value PostgreSQL would not take for its parameter into ``InvalidQueryArgument``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import decimal
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from .errors import DatabaseUnavailable, InvalidQueryArgument, refused_argument, where
from .row import Row

try:
    import asyncpg
except ImportError:  # pragma: no cover - the message says what to install
    asyncpg = None


if asyncpg is not None:

    class TimedConnection(asyncpg.Connection):  # type: ignore[misc]
        released_at = 0.0  # when it last went back to the pool
        queries = 0  # uses so far (recycled at max_queries)
        busy_since = 0.0  # when the statement running now started (0: none running)
        api: PostgresConnection  # the connection with the Database API, made once
        timed_out = False  # closed by the pool's watchdog: a statement went unanswered

    # the exceptions that mean the database (not the query) is at fault
    FAILURES: tuple[type[BaseException], ...] = (
        OSError,
        TimeoutError,
        asyncpg.exceptions.PostgresConnectionError,  # class 08: the connection failed or was lost
        asyncpg.exceptions.OperatorInterventionError,  # class 57: shutting down, crashed, starting up, cancelled
        asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, out of memory or disk
        asyncpg.exceptions.InterfaceError,  # the connection is closed or in use on the client side
        asyncpg.exceptions.InternalClientError,
    )
else:  # pragma: no cover
    FAILURES = (OSError, TimeoutError)


def _require() -> None:
    if asyncpg is None:
        from ..http.exceptions import ConfigurationError

        raise ConfigurationError("PostgreSQL support needs asyncpg: pip install 'cello[postgres]'")


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


_ARGUMENT = re.compile(r"query argument \$(\d+)")


def _refused(error: Exception, args: Sequence[Any]) -> InvalidQueryArgument:
    """A data exception (class 22) of a statement with arguments, taken as a value's fault (most come from the
    client: text that is no number, a number out of range, a string too long for its column).

    asyncpg names the argument it could not encode ("invalid input for query argument $1: ..."); PostgreSQL names
    none, but quotes the text it could not read ('invalid input syntax for type integer: "abc"'), which finds the
    argument when exactly one is that text.
    """
    message = str(error)
    named = _ARGUMENT.search(message)
    if named is not None:
        return refused_argument(int(named.group(1)), error)
    quoted = [index for index, arg in enumerate(args, 1) if isinstance(arg, str) and f'"{arg}"' in message]
    return refused_argument(quoted[0] if len(quoted) == 1 else None, error)


class PostgresConnection:
    """One pooled connection with the ``Database`` API."""

    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    async def fetch_one(self, query: str, args: Sequence[Any]) -> Row | None:
        row = await self._call(self.raw.fetchrow, query, args)
        return None if row is None else Row(row)

    async def fetch_all(self, query: str, args: Sequence[Any]) -> list[Row]:
        return [Row(row) for row in await self._call(self.raw.fetch, query, args)]

    async def fetch_val(self, query: str, args: Sequence[Any], column: int) -> Any:
        return await self._call(self.raw.fetchval, query, args, column=column)

    async def execute(self, query: str, args: Sequence[Any]) -> int:
        status: str = await self._call(self.raw.execute, query, args)
        count = status.rpartition(" ")[2]  # "INSERT 0 3", "UPDATE 2", "CREATE TABLE"
        return int(count) if count.isdigit() else 0

    async def execute_many(self, query: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._call(self.raw.executemany, query, ([tuple(row) for row in rows],))

    async def fetch_many(self, query: str, rows: Iterable[Sequence[Any]]) -> list[Row]:
        # NOTE: asyncpg pipelines the runs (every Bind/Execute in one write, one Sync after the last): one round
        # trip for all, and one implicit transaction, as with executemany
        return [Row(row) for row in await self._call(self.raw.fetchmany, query, ([tuple(row) for row in rows],))]

    async def iterate(self, query: str, args: Sequence[Any], batch: int) -> AsyncIterator[Row]:
        # a server-side cursor lives inside a transaction (a savepoint when one is already open)
        raw = self.raw
        async with raw.transaction():
            rows = raw.cursor(query, *args, prefetch=batch).__aiter__()
            while True:
                raw.busy_since = time.monotonic()  # each batch is a statement of its own (FETCH)
                try:
                    row = await rows.__anext__()
                except StopAsyncIteration:
                    return
                except asyncpg.exceptions.DataError as exc:
                    if not args:
                        raise
                    raise _refused(exc, args) from exc
                finally:
                    raw.busy_since = 0.0
                yield Row(row)

    def transaction(self, immediate: bool = False) -> Any:
        # NOTE: immediate is SQLite's: PostgreSQL takes each row's lock as it writes it, and never fails a transaction
        # for another's commit between its reads and its writes (read committed)
        return self.raw.transaction()  # nested: a savepoint

    async def _call(self, method: Any, query: str, args: Sequence[Any], **options: Any) -> Any:
        raw = self.raw
        raw.busy_since = time.monotonic()  # for the pool's watchdog (the command timeout)
        try:
            try:
                return await method(query, *args, **options)
            except (asyncpg.exceptions.DataError, TypeError) as exc:
                # NOTE: only a value the driver could not encode is worth converting; the server's refusal (it has a
                # severity) has aborted any transaction this runs in, so even preparing the statement would fail
                converted = None if getattr(exc, "severity", None) else await self._from_text(query, args)
                if converted is None:
                    raise exc from None
                return await method(query, *converted, **options)
        except asyncpg.exceptions.DataError as exc:
            if not args:
                raise  # the statement itself is at fault, not a value
            raise _refused(exc, args) from exc
        finally:
            raw.busy_since = 0.0

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
    """A pool of asyncpg connections, written for the per-statement path.

    NOTE: asyncpg's own pool costs about three times a query's client CPU on every acquire and release (a
    shielded task, timers, and a reset query round trip after each use), measured; here taking an idle
    connection is a list pop and giving it back a list push. A connection goes back reset only when it was held
    for several statements (``acquire``) or left a transaction open; one that failed, was cancelled mid-call,
    ran ``max_queries`` statements or sat idle past ``max_idle`` is closed instead, and one idle past
    ``ping_after`` is checked before use. When every connection is busy, callers queue for up to
    ``acquire_timeout``.

    The command timeout is kept without a timer per statement (asyncpg's costs about 5 us of client CPU on every
    query, measured): the server cancels a statement past ``statement_timeout`` (set to ``command_timeout`` for
    each connection), and the pool's watchdog closes a connection whose statement has had no answer for a second
    longer than that, which only a database that stopped answering at all leaves unanswered.
    """

    def __init__(self, url: str, *, min_size: int, max_size: int, connect_timeout: float, command_timeout: float,
                 acquire_timeout: float, statement_cache_size: int, max_idle: float, max_queries: int,
                 ping_after: float) -> None:  # fmt: skip
        self.url = url
        self.min_size = min_size
        self.max_size = max_size
        self.connect_options: dict[str, Any] = {
            "timeout": connect_timeout,
            "statement_cache_size": statement_cache_size,
        }
        self.command_timeout = command_timeout
        if command_timeout:
            self.connect_options["server_settings"] = {"statement_timeout": str(max(1, int(command_timeout * 1000)))}
        self.acquire_timeout = acquire_timeout
        self.max_idle = max_idle
        self.max_queries = max_queries
        self.ping_after = ping_after
        self.idle: list[Any] = []  # LIFO: the warmest connection first
        self.size = 0  # connections open or opening
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.taken: set[Any] = set()  # connections out of the pool: the watchdog's round
        self.watchdog: asyncio.TimerHandle | None = None
        self.opened = False

    async def open(self) -> None:
        _require()
        self.opened = True
        missing = max(0, self.min_size - self.size)
        self.size += missing
        opened = await asyncio.gather(*(self._connect() for _ in range(missing)), return_exceptions=True)
        for connection in opened:
            if not isinstance(connection, BaseException):
                self._give(connection)
        failed = [error for error in opened if isinstance(error, BaseException)]
        if failed:
            raise failed[0]  # the pool stays open: the connections missing are opened when needed

    async def close(self) -> None:
        self.opened = False
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        idle, self.idle = self.idle, []
        self.size -= len(idle)
        for connection in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2)

    async def run(self, method: str, query: str, args: Sequence[Any], extra: tuple[Any, ...]) -> Any:
        """One statement on a connection of its own: ``PostgresConnection.<method>(query, args, *extra)``."""
        raw = await self._take()
        self.taken.add(raw)
        try:
            result = await getattr(raw.api, method)(query, args, *extra)
        except BaseException as exc:
            await self._after_failure(raw, exc)
            if isinstance(exc, FAILURES):
                raise self._lost(raw, exc) from exc
            raise
        if raw.is_in_transaction():  # a statement that opened one ("BEGIN"): never hand it to the next caller
            await self._release(raw, reset=True)
        else:
            self._give(raw)
        return result

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[PostgresConnection]:
        """A connection held for several statements (reset when it goes back)."""
        raw = await self._take()
        self.taken.add(raw)
        try:
            yield raw.api
        except BaseException as exc:
            await self._after_failure(raw, exc)
            if isinstance(exc, FAILURES):
                raise self._lost(raw, exc) from exc
            raise
        await self._release(raw, reset=True)

    def _lost(self, raw: Any, exc: BaseException) -> DatabaseUnavailable:
        if raw.timed_out:
            return DatabaseUnavailable(f"PostgreSQL did not answer within {self.command_timeout:g} s")
        if isinstance(exc, asyncpg.exceptions.QueryCanceledError) and self.command_timeout:
            return DatabaseUnavailable(f"a statement ran past the command timeout ({self.command_timeout:g} s)")
        return DatabaseUnavailable(f"PostgreSQL connection lost: {type(exc).__name__}")

    def _watch(self) -> None:
        """The watchdog (a timer, re-armed while the pool has connections): close every connection whose statement
        has gone unanswered a second past ``command_timeout`` (the server's own ``statement_timeout`` cancels a
        slow one before that); its caller gets the failure at once, and the pool opens a new connection when one
        is needed."""
        self.watchdog = None
        if self.size <= 0:
            return  # NOTE: the next connection opened re-arms it
        now = time.monotonic()
        for raw in list(self.taken):
            if raw.busy_since and now - raw.busy_since > self.command_timeout + 1.0 and not raw.is_closed():
                raw.timed_out = True
                raw.terminate()
        self._arm_watchdog()

    def _arm_watchdog(self) -> None:
        interval = min(1.0, (self.command_timeout + 1.0) / 4)
        self.watchdog = asyncio.get_running_loop().call_later(interval, self._watch)

    # -- the pool ---------------------------------------------------------------------------------------------

    async def _take(self) -> Any:
        if not self.opened:
            await self.open()
        now = time.monotonic()
        while self.idle:
            raw = self.idle.pop()
            if raw.is_closed():
                self._discard(raw)
            elif now - raw.released_at > self.max_idle:
                self._discard(raw, close=True)  # recycled: idle too long
            elif now - raw.released_at < self.ping_after:
                return raw
            else:
                self.taken.add(raw)
                try:  # idle a while: the database may have restarted behind it
                    await raw.api.execute("SELECT 1", ())
                    return raw
                except FAILURES:
                    self._discard(raw, close=True)
                except BaseException:
                    self._discard(raw, close=True)  # cancelled mid-check: its state is unknown, its slot freed
                    raise
        if self.size < self.max_size:
            self.size += 1
            return await self._connect()
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            raw = await asyncio.wait_for(waiter, self.acquire_timeout)
        except TimeoutError:
            raise DatabaseUnavailable(
                f"no free connection within {self.acquire_timeout:g} s (pool of {self.max_size})"
            ) from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                handed = waiter.result()
                if handed is not None:
                    self._give(handed)  # handed over just as we gave up: pass it on
                else:
                    self.size -= 1  # a slot handed over: give it back
                    self._wake()
            raise
        if raw is None:  # a slot, not a connection: open one
            return await self._connect()
        return raw

    async def _connect(self) -> Any:
        """A new connection for a slot already counted in ``size``."""
        try:
            raw = await asyncpg.connect(self.url, connection_class=TimedConnection, **self.connect_options)
        except BaseException as exc:
            self.size -= 1
            self._wake()
            if isinstance(exc, FAILURES):
                raise DatabaseUnavailable(
                    f"PostgreSQL at {where(self.url)} did not answer: {type(exc).__name__}"
                ) from exc
            raise
        raw.api = PostgresConnection(raw)
        if self.command_timeout and self.watchdog is None:
            self._arm_watchdog()
        return raw

    def _give(self, raw: Any) -> None:
        """Back to the pool: to the first caller waiting, else onto the idle list."""
        self.taken.discard(raw)
        raw.released_at = time.monotonic()
        raw.queries += 1
        if raw.queries >= self.max_queries or not self.opened:
            self._discard(raw, close=True)
            return
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(raw)
                return
        self.idle.append(raw)

    async def _release(self, raw: Any, *, reset: bool) -> None:
        try:
            if raw.is_in_transaction():
                await raw.api.execute("ROLLBACK", ())
            if reset:
                query = raw.get_reset_query()
                if query:
                    await raw.api.execute(query, ())
        except BaseException:
            self._discard(raw, close=True)
            raise
        self._give(raw)

    async def _after_failure(self, raw: Any, exc: BaseException) -> None:
        """A connection whose call raised: kept when the statement was merely wrong, closed when the connection
        failed or the call was cancelled halfway (its protocol state is unknown)."""
        if isinstance(exc, Exception) and not isinstance(exc, FAILURES) and not raw.is_closed():
            try:
                await self._release(raw, reset=False)
            except Exception:  # noqa: S110 - _release closed it already
                pass
            return
        self._discard(raw, close=True)

    def _discard(self, raw: Any, *, close: bool = False) -> None:
        self.taken.discard(raw)
        self.size -= 1
        if close and not raw.is_closed():
            raw.terminate()  # NOTE: no round trip: the server sees the socket close
        self._wake()

    def _wake(self) -> None:
        """A slot freed: the first caller waiting may open a connection in it."""
        while self.waiters and self.size < self.max_size:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.size += 1
                waiter.set_result(None)
                return
