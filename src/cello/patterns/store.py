"""The event store: streams of typed events in one table of the app's own ``Database`` (PostgreSQL, or SQLite).

    store = EventStore(db)                      # table cello_events, created by setup() (or at startup: attach)
    await store.append("order-42", [OrderPlaced(...)], expected_version=0)     # 0: a new stream
    events = await store.read_stream("order-42")                               # RecordedEvent, oldest first

**Optimistic concurrency.** Every event has a version in its stream (from 1) and the pair is unique: of two
writers appending after the same version, exactly one wins and the other gets ``ConcurrencyError`` — a 409
problem+json when a handler lets it out — with nothing half-written. ``expected_version=ANY`` appends wherever the
stream is.

**Idempotent appends.** Each event has an id (``event_ids=[...]``, else a new UUID); an append whose ids are all
already the stream's newest events is a retry, answered with the events stored the first time.

**A global order.** ``position`` increases across all streams in commit order, and ``read_all(after=...)`` never
shows a position while an earlier one could still commit: on PostgreSQL appends take a transaction-level advisory
lock, so they commit one after another; SQLite lets one writer at a time anyway. A rolled-back append leaves a hole
in the positions, never an event that turns up later behind a reader.

**Transactions.** ``append`` joins the transaction the task holds (``async with db.transaction()``, or a handler's
``Depends(db.request_transaction)``) — the events commit or roll back with the rest of its work; on PostgreSQL the
advisory lock is then held until that transaction ends.

**Following.** ``follow(after=position)`` yields every event past a position, then the new ones as they commit;
``sse(last_event_id)`` serves that as Server-Sent Events, resuming where a reconnecting browser left off.

**Deletion and shredding.** ``delete_stream`` deletes a stream's events and leaves a tombstone (appending again
is a 410). With ``encrypt=`` choosing streams, their events' data is encrypted with a key per stream, and
``shred(stream_id)`` deletes the key: the events stay, their data unreadable (``cello.patterns.shredding``).

**Metadata.** Each event carries ``correlation_id`` (given, or the request id of the request being handled),
``causation_id`` and ``user`` when given, and whatever else ``metadata`` holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from ..enterprise.database import Connection, Database
from ..http.exceptions import ConfigurationError, HTTPException
from ..middleware.request_id import current_request_id
from .events import EventTypes, RecordedEvent
from .shredding import ENCRYPTED_KEY

if TYPE_CHECKING:
    from ..app import App

__all__ = ["ANY", "ConcurrencyError", "EventStore", "StreamDeleted"]

ANY: Any = object()  # expected_version: append wherever the stream is
VERSION_KEY = "event_version"  # metadata: the version of its type's shape an event was written with (when > 1)
LOCK_KEY = 0x63656C6C6F  # "cello": the advisory lock PostgreSQL appends take, one after another
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_COLUMNS = "position, stream_id, version, event_id, type, data, metadata, recorded_at"
# the statements, their {table} filled in once (a name checked against _NAME)
_STATEMENTS = {
    "insert": "INSERT INTO {table} (stream_id, version, event_id, type, data, metadata, recorded_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING position",
    "version": "SELECT max(version) FROM {table} WHERE stream_id = $1",
    "event": "SELECT stream_id, version FROM {table} WHERE event_id = $1",
    "stream": "SELECT {columns} FROM {table} WHERE stream_id = $1 AND version >= $2",
    "stream_to": "SELECT {columns} FROM {table} WHERE stream_id = $1 AND version >= $2 AND version <= $3",
    "all": "SELECT {columns} FROM {table} WHERE position > $1 ORDER BY position LIMIT $2",
    # PostgreSQL, outside a transaction: the lock (before any position is drawn), the version check, the inserts
    "append_at_once": "WITH locked AS (SELECT pg_advisory_xact_lock($1)), "
    "current AS (SELECT coalesce(max(version), 0) AS version FROM {table} WHERE stream_id = $2) "
    "INSERT INTO {table} (stream_id, version, event_id, type, data, metadata, recorded_at) "
    "SELECT $2, current.version + e.n, e.event_id, e.type, e.data, e.metadata, $7 "
    "FROM locked, current, unnest($3::text[], $4::text[], $5::text[], $6::text[]) "
    "WITH ORDINALITY AS e(event_id, type, data, metadata, n) "
    "WHERE ($8::integer IS NULL OR current.version = $8) "
    "AND NOT EXISTS (SELECT 1 FROM {table}_tombstones WHERE stream_id = $2) "
    "ORDER BY e.n RETURNING position, version",
    "checkpoint": "SELECT position FROM {table}_checkpoints WHERE name = $1",
    "save_checkpoint": "INSERT INTO {table}_checkpoints (name, position) VALUES ($1, $2) "
    "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
    "key": "SELECT key FROM {table}_keys WHERE stream_id = $1",
    "add_key": "INSERT INTO {table}_keys (stream_id, key) VALUES ($1, $2) ON CONFLICT (stream_id) DO NOTHING",
    "shred": "DELETE FROM {table}_keys WHERE stream_id = $1",
    "tombstone": "INSERT INTO {table}_tombstones (stream_id, version) VALUES ($1, $2) ON CONFLICT (stream_id) "
    "DO NOTHING",
    "deleted": "SELECT version FROM {table}_tombstones WHERE stream_id = $1",
    "delete_events": "DELETE FROM {table} WHERE stream_id = $1",
    "delete_snapshot": "DELETE FROM {table}_snapshots WHERE stream_id = $1",
    "snapshot": "SELECT version, schema, state FROM {table}_snapshots WHERE stream_id = $1",
    "save_snapshot": "INSERT INTO {table}_snapshots (stream_id, version, schema, state) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, schema = excluded.schema, "
    "state = excluded.state",
}
# an aggregate's latest snapshot (cello.patterns.aggregates), and each projection's checkpoint
# (cello.patterns.projections): the same in both databases
_SNAPSHOTS = """CREATE TABLE IF NOT EXISTS {table}_snapshots (
    stream_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    schema INTEGER NOT NULL,
    state TEXT NOT NULL)"""
_CHECKPOINTS = """CREATE TABLE IF NOT EXISTS {table}_checkpoints (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL)"""
# encrypted streams' keys (cello.patterns.shredding), and deleted streams' tombstones
_KEYS = """CREATE TABLE IF NOT EXISTS {table}_keys (
    stream_id TEXT PRIMARY KEY,
    key TEXT NOT NULL)"""
_TOMBSTONES = """CREATE TABLE IF NOT EXISTS {table}_tombstones (
    stream_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL)"""

# a column numbering rows as they are inserted, in each database's words (the events' positions, the outbox's ids)
IDENTITY = {
    "postgresql": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
}
_TIMESTAMP = {"postgresql": "TIMESTAMPTZ", "sqlite": "TEXT"}
_EVENTS = """CREATE TABLE IF NOT EXISTS {table} (
    position {identity},
    stream_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    metadata TEXT NOT NULL,
    recorded_at {timestamp} NOT NULL,
    UNIQUE (stream_id, version))"""


def lock_key(name: str) -> int:
    """The key of the PostgreSQL advisory lock that makes the workers take turns at ``name``."""
    return zlib.crc32(name.encode())


async def take_turns(db: Database, conn: Connection, key: int) -> None:
    """Hold the transaction-level advisory lock ``key`` (PostgreSQL) until ``conn``'s transaction ends. On SQLite the
    transaction's own write lock (``immediate=True``) already lets one writer in at a time."""
    if db.dialect == "postgresql":
        await conn.execute("SELECT pg_advisory_xact_lock($1)", key)


async def create_tables(db: Database, key: int, *statements: str) -> None:
    """Run ``CREATE TABLE IF NOT EXISTS`` statements one worker at a time (every worker's startup may run them at
    once, and concurrent ones collide on PostgreSQL)."""
    async with db.transaction(immediate=True) as conn:
        await take_turns(db, conn, key)
        for statement in statements:
            await conn.execute(statement)


class Poller:
    """``work()`` run over and over in the background of one worker, from ``start()`` to ``stop()``: again at once
    while it does something (returns a count above 0), else after ``interval`` seconds. A pass that raises goes to
    ``failed(exc)`` (called while the exception is handled, so ``logger.exception`` has it) and the next pass tries
    again."""

    def __init__(self, work: Callable[[], Awaitable[int]], interval: float,
                 failed: Callable[[Exception], None]) -> None:  # fmt: skip
        self.work = work
        self.interval = interval
        self.failed = failed
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                done = await self.work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failed(exc)
                done = 0
            if not done:
                await asyncio.sleep(self.interval)


class ConcurrencyError(HTTPException):
    """The stream was not at the version the append expected (another writer got there first): a 409."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(409, "The resource was changed by another request; read it again and retry.")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class StreamDeleted(HTTPException):
    """The stream was deleted (``delete_stream``): it takes no more events — a 410."""

    def __init__(self) -> None:
        super().__init__(410, "The resource was deleted.")


class EventStore:
    """Streams of events in ``table`` of ``db``; ``events``: the event classes to read back as themselves (others
    register on first append)."""

    def __init__(self, db: Database, *, table: str = "cello_events", events: Iterable[type] = (),
                 encrypt: Callable[[str], bool] | None = None) -> None:  # fmt: skip
        if not _NAME.match(table):
            raise ConfigurationError(f"table is a plain SQL name (letters, digits, _), not {table!r}")
        self.db = db
        self.table = table
        self.sql = {name: template.format(table=table, columns=_COLUMNS) for name, template in _STATEMENTS.items()}
        self.types = EventTypes(events)
        self.inline: list[Any] = []  # projections updated in each append's transaction
        self.encrypt = encrypt  # which streams' event data is encrypted (cello.patterns.shredding)
        self._cipher: Any = None
        if encrypt is not None:
            from .shredding import StreamCipher

            self._cipher = StreamCipher()
        self._followers: set[asyncio.Event] = set()  # one per follow(): set after each append
        self._postgres = db.dialect == "postgresql"

    def event(self, cls: type | None = None, *, name: str | None = None, version: int = 1) -> Any:
        """Register an event class (``@store.event``, ``@store.event(name="order-placed", version=2)``)."""
        if cls is None:
            return lambda cls: self.types.register(cls, name=name, version=version)
        return self.types.register(cls, name=name, version=version)

    def project(self, projection: Any) -> Any:
        """Update ``projection`` (``cello.patterns.projections.Projection``) inline: in the transaction of every
        append, with the events appended."""
        self.inline.append(projection)
        return projection

    def upcaster(self, name: str, from_version: int) -> Any:
        """Register a function turning version ``from_version`` of event type ``name`` into the next one
        (``cello.patterns.events``)."""
        return self.types.upcaster(name, from_version)

    async def setup(self) -> None:
        """Create the table when it is missing (every worker may run this at once: on PostgreSQL one at a time,
        under the appends' advisory lock, as concurrent ``CREATE TABLE IF NOT EXISTS`` collide)."""
        dialect = self.db.dialect
        events = _EVENTS.format(table=self.table, identity=IDENTITY[dialect], timestamp=_TIMESTAMP[dialect])
        others = (table.format(table=self.table) for table in (_SNAPSHOTS, _CHECKPOINTS, _KEYS, _TOMBSTONES))
        await create_tables(self.db, LOCK_KEY, events, *others)

    def attach(self, app: App) -> EventStore:
        """Create the table at the app's startup."""
        app.startup_hooks.append(self.setup)
        return self

    # -- writing ----------------------------------------------------------------------------------------------

    async def append(self, stream_id: str, events: Sequence[Any], *, expected_version: int = ANY,
                     event_ids: Sequence[str] | None = None, metadata: dict[str, Any] | None = None,
                     correlation_id: str | None = None, causation_id: str | None = None,
                     user: str | None = None) -> list[RecordedEvent]:  # fmt: skip
        """Append ``events`` to the stream after ``expected_version`` (its current version; 0 for a new stream,
        ``ANY`` for wherever it is); returns them as recorded. Raises ``ConcurrencyError`` when the stream is
        elsewhere."""
        if not events:
            return []
        if event_ids is not None and len(event_ids) != len(events):
            raise ConfigurationError("event_ids needs one id per event")
        ids = [str(event_id) for event_id in event_ids] if event_ids is not None else [uuid.uuid4().hex for _ in events]
        shared = {key: value for key, value in (metadata or {}).items() if value is not None}
        for key, value in (("correlation_id", correlation_id or current_request_id.get()),
                           ("causation_id", causation_id), ("user", user)):  # fmt: skip
            if value is not None:
                shared.setdefault(key, value)
        meta_json = msgspec.json.encode(shared).decode()
        now = dt.datetime.now(dt.UTC)
        if self._postgres and event_ids is None and not self.inline and self.encrypt is None and not self.db._held():
            recorded = await self._append_at_once(stream_id, events, ids, expected_version, shared, meta_json, now)
            if recorded is not None:
                self._wake()
                return recorded
        # NOTE: immediate: on SQLite the version read and the insert must not be split by another writer's commit
        async with self.db.transaction(immediate=True) as conn:
            await take_turns(self.db, conn, LOCK_KEY)
            current = await self._version(conn, stream_id)
            if current == 0 and await conn.fetch_val(self.sql["deleted"], stream_id) is not None:
                raise StreamDeleted()
            encrypted = self.encrypt is not None and self.encrypt(stream_id)
            stream_key = await self._key(conn, stream_id) if encrypted else None
            if event_ids is not None:
                retried = await self._retried(conn, stream_id, ids, current)
                if retried is not None:
                    return retried
            if expected_version is not ANY and current != expected_version:
                raise ConcurrencyError(stream_id, expected_version, current)
            stamp = now if self._postgres else now.isoformat()
            rows = []
            for n, (event_id, event) in enumerate(zip(ids, events, strict=True), start=1):
                name = self.types.name_of(event)
                version = self.types.version_of(name)
                data = self.types.encode(event)
                extra = {VERSION_KEY: version} if version > 1 else {}
                if stream_key is not None:
                    extra[ENCRYPTED_KEY] = 1
                    text = self._cipher.encrypt(stream_key, stream_id, event_id, data)
                else:
                    text = data.decode()
                meta = msgspec.json.encode({**shared, **extra}).decode() if extra else meta_json
                rows.append((stream_id, current + n, event_id, name, text, meta, stamp))
            try:
                inserted = await conn.fetch_many(self.sql["insert"], rows)
            except Exception as exc:
                if _unique_violation(exc):  # NOTE: SQLite: a writer that read the version before another committed
                    raise ConcurrencyError(stream_id, current, current + 1) from None
                raise
            stored = zip(rows, inserted, events, strict=True)
            recorded = [RecordedEvent(stream_id, version, row["position"], event_id, name, event,
                                      msgspec.json.decode(meta), now)
                        for (_, version, event_id, name, _, meta, _), row, event in stored]  # fmt: skip
            for projection in self.inline:
                for each in recorded:
                    await projection.handle(each, conn)
        self._wake()
        return recorded

    def _wake(self) -> None:
        for follower in self._followers:  # NOTE: they look now (inside a caller's transaction: maybe before it commits)
            follower.set()

    async def _append_at_once(self, stream_id: str, events: Sequence[Any], ids: list[str], expected_version: Any,
                              shared: dict[str, Any], meta_json: str, now: dt.datetime,
                              ) -> list[RecordedEvent] | None:  # fmt: skip
        """A PostgreSQL append outside any transaction as one statement — the lock, the version check, the
        inserts and the commit in one round trip instead of five. None: the slow path must decide (an ``ANY``
        append that raced another on its stream)."""
        names, texts, metas = [], [], []
        for event in events:
            name = self.types.name_of(event)
            version = self.types.version_of(name)
            names.append(name)
            texts.append(self.types.encode(event).decode())
            metas.append(meta_json if version == 1 else msgspec.json.encode({**shared, VERSION_KEY: version}).decode())
        expected = None if expected_version is ANY else int(expected_version)
        try:
            rows = await self.db.fetch_all(self.sql["append_at_once"], LOCK_KEY, stream_id, ids, names, texts, metas,
                                           now, expected)  # fmt: skip
        except Exception as exc:
            if not _unique_violation(exc):
                raise
            if expected is None:
                return None  # NOTE: read the stream's version before another append to it committed: do it slowly
            raise ConcurrencyError(stream_id, expected, expected + 1) from None
        if not rows:  # the version did not match, or the stream was deleted
            if await self.db.fetch_val(self.sql["deleted"], stream_id) is not None:
                raise StreamDeleted()
            raise ConcurrencyError(stream_id, expected or 0, await self.version(stream_id))
        return [RecordedEvent(stream_id, row["version"], row["position"], event_id, name, event,
                              msgspec.json.decode(meta), now)
                for row, event_id, name, event, meta in zip(rows, ids, names, events, metas, strict=True)]  # fmt: skip

    async def _version(self, conn: Connection, stream_id: str) -> int:
        found = await conn.fetch_val(self.sql["version"], stream_id)
        return int(found or 0)

    async def _retried(self, conn: Connection, stream_id: str, ids: list[str], current: int,
                       ) -> list[RecordedEvent] | None:  # fmt: skip
        """The events stored under ``ids`` when the same append already happened: they are the stream's last."""
        first = await conn.fetch_one(self.sql["event"], ids[0])
        if first is None:
            return None
        stored = await self.read_stream(stream_id, from_version=first["version"])
        if first["stream_id"] != stream_id or [event.event_id for event in stored] != ids:
            raise ConcurrencyError(stream_id, current, current)  # the ids were used for other events
        return stored

    # -- snapshots and checkpoints ----------------------------------------------------------------------------

    async def save_checkpoint(self, name: str, position: int) -> None:
        """Record that projection ``name`` has applied every event up to ``position``."""
        await self.db.execute(self.sql["save_checkpoint"], name, position)

    async def load_checkpoint(self, name: str) -> int:
        """The position projection ``name`` has applied events up to (0: none yet)."""
        return int(await self.db.fetch_val(self.sql["checkpoint"], name) or 0)

    async def save_snapshot(self, stream_id: str, version: int, schema: int, state: str) -> None:
        """Keep ``state`` (JSON) as the stream's snapshot at ``version``, written as ``schema`` of its shape."""
        await self.db.execute(self.sql["save_snapshot"], stream_id, version, schema, state)

    async def load_snapshot(self, stream_id: str) -> tuple[int, int, str] | None:
        """The stream's latest snapshot: ``(version, schema, state)``, or None."""
        row = await self.db.fetch_one(self.sql["snapshot"], stream_id)
        return None if row is None else (row["version"], row["schema"], row["state"])

    # -- reading ----------------------------------------------------------------------------------------------

    async def version(self, stream_id: str) -> int:
        """The stream's current version (0: no such stream)."""
        async with self.db.connection() as conn:
            return await self._version(conn, stream_id)

    async def read_stream(self, stream_id: str, *, from_version: int = 1, to_version: int | None = None,
                          ) -> list[RecordedEvent]:  # fmt: skip
        """The stream's events from ``from_version`` (to ``to_version``, inclusive), oldest first."""
        if to_version is None:
            rows = await self.db.fetch_all(self.sql["stream"] + " ORDER BY version", stream_id, from_version)
        else:
            rows = await self.db.fetch_all(self.sql["stream_to"] + " ORDER BY version", stream_id, from_version,
                                           to_version)  # fmt: skip
        return await self._records(rows)

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Up to ``limit`` events of every stream with a position above ``after``, in position order."""
        rows = await self.db.fetch_all(self.sql["all"], after, limit)
        return await self._records(rows)

    async def follow(self, *, after: int = 0, types: Iterable[str] | None = None, stream_prefix: str | None = None,
                     poll: float = 0.25, batch: int = 500) -> AsyncIterator[RecordedEvent]:  # fmt: skip
        """Every event past position ``after`` in order, then each new one as it commits, for ever (until the
        iterator is closed); ``types`` / ``stream_prefix`` keep only those. New events are looked for every ``poll``
        seconds, and at once after an append of this store's."""
        wanted = set(types) if types is not None else None
        appended = asyncio.Event()
        self._followers.add(appended)
        try:
            while True:
                appended.clear()
                events = await self.read_all(after=after, limit=batch)
                for event in events:
                    after = event.position
                    if (wanted is None or event.type in wanted) and (
                        stream_prefix is None or event.stream_id.startswith(stream_prefix)
                    ):
                        yield event
                if len(events) < batch:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(poll):
                            await appended.wait()
        finally:
            self._followers.discard(appended)

    def sse(self, last_event_id: str | None = None, **options: Any) -> Any:
        """An ``EventSourceResponse`` of ``follow(...)`` (``options``): every event after ``last_event_id`` (a
        position: what a reconnecting browser sends back), then the live ones; each as JSON, with its type as the
        SSE event name and its position as the SSE id."""
        from ..realtime.sse import EventSourceResponse, ServerSentEvent

        after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0

        async def events() -> AsyncIterator[Any]:
            async for event in self.follow(after=after, **options):
                yield ServerSentEvent(msgspec.json.encode(event).decode(), event=event.type, id=str(event.position))

        return EventSourceResponse(events())

    async def _records(self, rows: list[Any]) -> list[RecordedEvent]:
        """Rows as events; encrypted data decrypted with its stream's key (None once the key is shredded)."""
        keys: dict[str, str | None] = {}
        if self._cipher is not None:
            for row in rows:
                stream_id = row["stream_id"]
                if stream_id not in keys and f'"{ENCRYPTED_KEY}"' in row["metadata"]:
                    keys[stream_id] = await self.db.fetch_val(self.sql["key"], stream_id)
        return [self._recorded(row, keys) for row in rows]

    def _recorded(self, row: Any, keys: dict[str, str | None]) -> RecordedEvent:
        recorded_at = row["recorded_at"]
        if isinstance(recorded_at, str):
            recorded_at = dt.datetime.fromisoformat(recorded_at)
        metadata = msgspec.json.decode(row["metadata"])
        data: Any = row["data"]
        if metadata.get(ENCRYPTED_KEY):
            key = keys.get(row["stream_id"])
            data = None if key is None else self._cipher.decrypt(key, row["stream_id"], row["event_id"], data)
        if data is not None:
            data = self.types.decode(row["type"], data, metadata.get(VERSION_KEY, 1))
        return RecordedEvent(row["stream_id"], row["version"], row["position"], row["event_id"], row["type"], data,
                             metadata, recorded_at)  # fmt: skip

    # -- keys and deletion ------------------------------------------------------------------------------------

    async def _key(self, conn: Connection, stream_id: str) -> str:
        """The stream's key, made on its first encrypted append."""
        key = await conn.fetch_val(self.sql["key"], stream_id)
        if key is None:
            await conn.execute(self.sql["add_key"], stream_id, self._cipher.new_key())
            key = await conn.fetch_val(self.sql["key"], stream_id)
        return str(key)

    async def shred(self, stream_id: str) -> bool:
        """Delete the stream's key (crypto-shredding): its events' data can never be read again. True when there
        was one."""
        return bool(await self.db.execute(self.sql["shred"], stream_id))

    async def delete_stream(self, stream_id: str) -> int:
        """Delete the stream's events, snapshot and key, and leave a tombstone: appending to it again is refused
        (``StreamDeleted``, a 410). Returns how many events went."""
        async with self.db.transaction(immediate=True) as conn:
            version = await self._version(conn, stream_id)
            await conn.execute(self.sql["tombstone"], stream_id, version)
            deleted = await conn.execute(self.sql["delete_events"], stream_id)
            await conn.execute(self.sql["delete_snapshot"], stream_id)
            await conn.execute(self.sql["shred"], stream_id)
        return int(deleted)


def _unique_violation(exc: BaseException) -> bool:
    """Whether ``exc`` is the database refusing a duplicate key (asyncpg's UniqueViolationError, sqlite3's
    IntegrityError of a UNIQUE constraint)."""
    name = type(exc).__name__
    return name == "UniqueViolationError" or (name == "IntegrityError" and "UNIQUE" in str(exc))
