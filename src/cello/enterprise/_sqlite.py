"""SQLite, the embedded default behind ``Database("sqlite://...")``: the same API as PostgreSQL, no server.

sqlite3 blocks, so each connection lives on a thread of its own and every call is handed to it. ``$1``, ``$2``
placeholders work as written: SQLite reads ``$1`` as a named parameter, which is given by number. A file
database gets a small pool (WAL mode lets readers work while one writer writes); an in-memory one is a single
connection, since each connection to ``:memory:`` would be a database of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import decimal
import itertools
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

from .errors import DatabaseUnavailable, refused_argument
from .row import Row

_savepoints = itertools.count()


# what SQLite has no type for is stored as text, in the form the value would take in JSON
_AS_TEXT = (decimal.Decimal, uuid.UUID)
_AS_ISO = (datetime.date, datetime.time)  # datetime.datetime is a date


def _value(value: Any) -> Any:
    if isinstance(value, _AS_TEXT):
        return str(value)
    if isinstance(value, _AS_ISO):
        return value.isoformat()
    return value


def _named(args: Sequence[Any]) -> dict[str, Any]:
    return {str(index): _value(value) for index, value in enumerate(args, 1)}


# what SQLite (or sqlite3, binding) raises for a value it will not take: a type it cannot bind, an integer past
# 64 bits, text that is no UTF-8, a blob past its size limit, a value a STRICT column or INTEGER PRIMARY KEY refuses
_VALUE_ERRORS = (sqlite3.ProgrammingError, sqlite3.IntegrityError, sqlite3.DataError, OverflowError, UnicodeEncodeError)
_SQLITE_MISMATCH, _SQLITE_CONSTRAINT_DATATYPE = 20, 3091
_BINDING = re.compile(r"Error binding parameter :?(\d+)")


def _reraise(error: Exception, runs: Sequence[Sequence[Any]]) -> NoReturn:
    """Raise ``InvalidQueryArgument`` when ``error`` (one of ``_VALUE_ERRORS``) is about a value among a
    statement's arguments (``runs``: one sequence of values per run), else ``error`` itself: the statement's own
    fault (a missing binding, a constraint, a syntax error)."""
    if not any(runs):
        raise error
    position = None  # SQLite's own refusals name a column, not an argument
    if isinstance(error, sqlite3.ProgrammingError):
        named = _BINDING.match(str(error))
        if named is None:
            raise error
        position = int(named.group(1))
    elif isinstance(error, sqlite3.IntegrityError) and error.sqlite_errorcode not in (
        _SQLITE_MISMATCH,
        _SQLITE_CONSTRAINT_DATATYPE,
    ):
        raise error  # unique, foreign key, check, not null: the data's rules, not a value's type
    culprit = {OverflowError: _too_large, UnicodeEncodeError: _not_utf8}.get(type(error))
    if culprit is not None:
        position = next((i for run in runs for i, value in enumerate(run, 1) if culprit(value)), None)
    raise refused_argument(position, error) from error


def _too_large(value: Any) -> bool:
    return isinstance(value, int) and not -(2**63) <= value < 2**63


def _not_utf8(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return True
    return False


def _rows(cursor: sqlite3.Cursor, rows: list[tuple[Any, ...]]) -> list[Row]:
    names = [column[0] for column in cursor.description or ()]
    return [Row(zip(names, row, strict=True)) for row in rows]


class SQLiteConnection:
    """One sqlite3 connection on its own thread, with the ``Database`` API."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="cello-sqlite")
        self.raw: sqlite3.Connection | None = None
        self.depth = 0  # open transactions: 0 none, 1 BEGIN, more savepoints

    async def _run(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.thread, function, *args)

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            raw = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            if self.path != ":memory:":
                raw.execute("PRAGMA journal_mode=WAL")
            raw.execute("PRAGMA foreign_keys=ON")
            return raw

        try:
            self.raw = await self._run(connect)
        except sqlite3.Error as exc:
            raise DatabaseUnavailable(f"SQLite database {self.path!r} cannot be opened: {exc}") from exc

    async def close(self) -> None:
        if self.raw is not None:
            await self._run(self.raw.close)
            self.raw = None
        self.thread.shutdown(wait=False)

    def _execute(self, query: str, args: Sequence[Any]) -> sqlite3.Cursor:
        """One statement, on the connection's thread; a value SQLite will not take is ``InvalidQueryArgument``."""
        assert self.raw is not None
        try:
            return self.raw.execute(query, _named(args))
        except _VALUE_ERRORS as exc:
            _reraise(exc, [args])

    def _query(self, query: str, args: Sequence[Any], many: int | None) -> list[Row]:
        cursor = self._execute(query, args)
        try:
            rows = cursor.fetchall() if many is None else cursor.fetchmany(many)
            return _rows(cursor, rows)
        finally:
            cursor.close()

    async def fetch_one(self, query: str, args: Sequence[Any]) -> Row | None:
        rows = await self._run(self._query, query, args, 1)
        return rows[0] if rows else None

    async def fetch_all(self, query: str, args: Sequence[Any]) -> list[Row]:
        return await self._run(self._query, query, args, None)  # type: ignore[no-any-return]

    async def fetch_val(self, query: str, args: Sequence[Any], column: int) -> Any:
        row = await self.fetch_one(query, args)
        return None if row is None else list(row.values())[column]

    async def execute(self, query: str, args: Sequence[Any]) -> int:
        def run() -> int:
            cursor = self._execute(query, args)
            cursor.close()
            return max(cursor.rowcount, 0)

        return await self._run(run)  # type: ignore[no-any-return]

    async def execute_many(self, query: str, rows: Iterable[Sequence[Any]]) -> None:
        runs = [list(row) for row in rows]

        def run() -> None:
            assert self.raw is not None
            try:
                self.raw.executemany(query, [_named(row) for row in runs])
            except _VALUE_ERRORS as exc:
                _reraise(exc, runs)

        await self._run(self._atomic, run)

    async def fetch_many(self, query: str, rows: Iterable[Sequence[Any]]) -> list[Row]:
        def run() -> list[Row]:
            return [found for row in rows for found in self._query(query, row, None)]

        return await self._run(self._atomic, run)  # type: ignore[no-any-return]

    def _atomic(self, work: Any) -> Any:
        """``work()`` on the connection's thread as one unit, as PostgreSQL runs a batch: all or nothing."""
        assert self.raw is not None
        self.raw.execute("SAVEPOINT cello_batch")  # NOTE: outside a transaction, a savepoint opens one
        try:
            result = work()
        except BaseException:
            self.raw.execute("ROLLBACK TO SAVEPOINT cello_batch")
            self.raw.execute("RELEASE SAVEPOINT cello_batch")
            raise
        self.raw.execute("RELEASE SAVEPOINT cello_batch")
        return result

    async def iterate(self, query: str, args: Sequence[Any], batch: int) -> AsyncIterator[Row]:
        cursor = await self._run(self._execute, query, args)
        try:
            while rows := await self._run(cursor.fetchmany, batch):
                for row in _rows(cursor, rows):
                    yield row
        finally:
            await self._run(cursor.close)

    @contextlib.asynccontextmanager
    async def transaction(self, immediate: bool = False) -> AsyncIterator[None]:
        """BEGIN ... COMMIT, or a savepoint inside one already open; rolled back on an exception. ``immediate``:
        BEGIN IMMEDIATE, the write lock taken at once (waiting for it as for any lock)."""
        name = f"cello_{next(_savepoints)}" if self.depth else None
        try:
            await self.execute(f"SAVEPOINT {name}" if name else ("BEGIN IMMEDIATE" if immediate else "BEGIN"), ())
        except asyncio.CancelledError:
            # NOTE: the statement goes on in the connection's thread (BEGIN IMMEDIATE waits there for the write
            # lock): undone there once it is done, before anything else the thread runs, or the connection would
            # go back to the pool inside a transaction, holding the write lock for good
            self.thread.submit(self._undo, name)
            raise
        self.depth += 1
        try:
            yield
            await self.execute(f"RELEASE SAVEPOINT {name}" if name else "COMMIT", ())
        except BaseException:
            # a failed or cancelled block, or a COMMIT that did not go through: rolled back on the thread, which
            # finishes it even if this task is cancelled meanwhile
            await asyncio.shield(asyncio.wrap_future(self.thread.submit(self._undo, name)))
            raise
        finally:
            self.depth -= 1

    def _undo(self, savepoint: str | None) -> None:
        """On the connection's thread: roll back to ``savepoint`` (and drop it), or the whole transaction, when it
        is still open."""
        if self.raw is None or not self.raw.in_transaction:
            return
        with contextlib.suppress(sqlite3.Error):  # a savepoint never made, or released already: nothing to undo
            if savepoint is None:
                self.raw.execute("ROLLBACK")
            else:
                self.raw.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
                self.raw.execute(f"RELEASE SAVEPOINT {savepoint}")


class SQLitePool:
    """A few connections to one file (one for ``:memory:``), handed out one caller at a time."""

    def __init__(self, path: str, *, max_size: int, acquire_timeout: float, busy_timeout: float) -> None:
        self.path = path
        self.size = 1 if path == ":memory:" else max(1, max_size)
        self.acquire_timeout = acquire_timeout
        self.busy_timeout = busy_timeout
        self.idle: asyncio.Queue[SQLiteConnection] | None = None
        self.all: list[SQLiteConnection] = []

    async def open(self) -> None:
        if self.idle is not None:
            return
        idle: asyncio.Queue[SQLiteConnection] = asyncio.Queue()
        for _ in range(self.size):
            connection = SQLiteConnection(self.path, self.busy_timeout)
            await connection.open()
            self.all.append(connection)
            idle.put_nowait(connection)
        self.idle = idle

    async def close(self) -> None:
        connections, self.all, self.idle = self.all, [], None
        for connection in connections:
            await connection.close()

    async def run(self, method: str, query: str, args: Sequence[Any], extra: tuple[Any, ...]) -> Any:
        """One statement on a connection of its own: ``SQLiteConnection.<method>(query, args, *extra)``."""
        async with self.acquire() as connection:
            return await getattr(connection, method)(query, args, *extra)

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[SQLiteConnection]:
        if self.idle is None:
            await self.open()
        assert self.idle is not None
        idle = self.idle
        try:
            connection = await asyncio.wait_for(idle.get(), self.acquire_timeout)
        except TimeoutError as exc:
            raise DatabaseUnavailable(
                f"no free SQLite connection within {self.acquire_timeout:g} s (pool of {self.size})"
            ) from exc
        try:
            yield connection
        finally:
            idle.put_nowait(connection)
