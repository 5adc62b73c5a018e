"""A transactional outbox to the message brokers, and an inbox for consumers that must act once per message.

    outbox = Outbox(store, broker)                        # table cello_events_outbox
    outbox.route(OrderPlaced, "orders.placed")            # appended OrderPlaced events go out on orders.placed
    await outbox.add("emails", {"to": ...})               # any other message, in the caller's transaction
    outbox.attach(app)                                    # relayed in the background of every worker

**Outbox.** A message is first a row written in the same transaction as the work it announces — the events'
append (a routed event is written by the append itself), or whatever the caller's transaction holds — so it
exists exactly when that work committed. The relay publishes pending rows in the order they were written, through
the app's ``Broker``, and marks each sent; workers take turns (a PostgreSQL advisory lock; SQLite's write lock). A
crash after a publish and before its mark commits means the message goes out again: delivery is at least once, and
every message keeps one id (``x-message-id``: the event's id for an event) for consumers to recognise it. A broker
that refuses a publish stops the pass; the rows already sent stay marked and the rest wait for the next one.

**Inbox.** ``await inbox.first(consumer, message_id)`` records the message as handled by ``consumer`` and says
whether it was the first time — in the consumer's own transaction, so its effects and the record commit together
and a redelivered message is recognised and skipped: its effects happen once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from ..enterprise.database import Connection, Database
from ..http.exceptions import ConfigurationError
from .events import RecordedEvent
from .projections import Projection
from .store import IDENTITY, EventStore, Poller, create_tables, lock_key, take_turns

if TYPE_CHECKING:
    from ..app import App
    from ..messaging.broker import Broker

__all__ = ["Inbox", "Outbox"]

logger = logging.getLogger("cello.patterns")

_OUTBOX_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    id {identity},
    message_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    key TEXT,
    payload TEXT NOT NULL,
    headers TEXT NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0)"""
_INBOX_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    consumer TEXT NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (consumer, message_id))"""
# the statements, their {table} filled in once (the event store's checked name, or a checked one)
_STATEMENTS = {
    "insert": "INSERT INTO {table} (message_id, topic, key, payload, headers) VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (message_id) DO NOTHING",
    "pending": "SELECT id, message_id, topic, key, payload, headers FROM {table} WHERE sent = 0 ORDER BY id LIMIT $1",
    "mark": "UPDATE {table} SET sent = 1 WHERE id = $1",
    "count": "SELECT count(*) FROM {table} WHERE sent = 0",
    "inbox": "INSERT INTO {table} (consumer, message_id) VALUES ($1, $2) ON CONFLICT (consumer, message_id) DO NOTHING",
}


class Outbox:
    """Messages written with the work they announce, relayed to ``broker``; see the module."""

    def __init__(self, store: EventStore, broker: Broker, *, batch: int = 100, interval: float = 0.2) -> None:
        if batch < 1 or interval <= 0:
            raise ConfigurationError("batch is >= 1 and interval (seconds between passes) above 0")
        self.store = store
        self.db: Database = store.db
        self.broker = broker
        self.table = f"{store.table}_outbox"
        self.batch = batch
        self.interval = interval
        self._projection = Projection("outbox")
        store.project(self._projection)
        self._poller = Poller(self.relay, interval, _relay_failed)
        self._lock_key = lock_key(f"outbox:{self.table}")
        self.sql = {name: template.format(table=self.table) for name, template in _STATEMENTS.items()}

    async def setup(self) -> None:
        """Create the table when it is missing."""
        await create_tables(
            self.db, self._lock_key, _OUTBOX_TABLE.format(table=self.table, identity=IDENTITY[self.db.dialect])
        )

    def route(self, event: type, topic: str, *, key: Callable[[Any, RecordedEvent], str | None] | None = None) -> None:
        """Send the appended events of class ``event`` to ``topic``, keyed (kept in order) by ``key(event,
        recorded)`` — by default their stream's id."""

        @self._projection.on(event)
        async def write(data: Any, recorded: RecordedEvent, conn: Connection) -> None:
            chosen = recorded.stream_id if key is None else key(data, recorded)
            headers = {"x-event-type": recorded.type, "x-stream-id": recorded.stream_id,
                       "x-stream-version": str(recorded.version)}  # fmt: skip
            correlation = recorded.metadata.get("correlation_id")
            if correlation is not None:
                headers["x-correlation-id"] = str(correlation)
            await self._write(conn, recorded.event_id, topic, chosen, msgspec.json.encode(data), headers)

    async def add(self, topic: str, payload: Any, *, key: str | None = None, message_id: str | None = None,
                  headers: dict[str, str] | None = None) -> str:  # fmt: skip
        """Write a message for ``topic`` in the transaction the task holds (or on its own); returns its id."""
        import uuid

        message_id = message_id or uuid.uuid4().hex
        async with self.db.connection() as conn:
            await self._write(conn, message_id, topic, key, msgspec.json.encode(payload), dict(headers or {}))
        return message_id

    async def _write(self, conn: Connection, message_id: str, topic: str, key: str | None, payload: bytes,
                     headers: dict[str, str]) -> None:  # fmt: skip
        await conn.execute(self.sql["insert"], message_id, topic, key, payload.decode(),
                           msgspec.json.encode(headers).decode())  # fmt: skip

    # -- the relay ----------------------------------------------------------------------------------------------

    def attach(self, app: App) -> Outbox:
        """Create the table at startup and relay in the background of every worker until shutdown."""
        app.startup_hooks.append(self.start)
        app.drain_hooks.append(self.stop)
        return self

    async def start(self) -> None:
        """Create the table, then relay in the background until ``stop()``: again at once while messages went out,
        else after ``interval`` seconds; a failed pass is logged and tried again."""
        await self.setup()
        self._poller.start()

    async def stop(self) -> None:
        await self._poller.stop()

    async def relay(self) -> int:
        """Publish every pending message in order, marking each sent; returns how many went out."""
        total = 0
        while True:
            failure: BaseException | None = None
            async with self.db.transaction(immediate=True) as conn:
                await take_turns(self.db, conn, self._lock_key)
                rows = await conn.fetch_all(self.sql["pending"], self.batch)
                for row in rows:
                    try:
                        await self._publish(row)
                    except Exception as exc:  # NOTE: what went out stays marked; this and the rest wait
                        failure = exc
                        break
                    await conn.execute(self.sql["mark"], row["id"])
                    total += 1
            if failure is not None:
                raise failure
            if len(rows) < self.batch:
                return total

    async def _publish(self, row: Any) -> None:
        headers = msgspec.json.decode(row["headers"])
        headers["content-type"] = "application/json"
        correlation = headers.get("x-correlation-id")
        await self.broker.publish(row["topic"], row["payload"].encode(), key=row["key"], headers=headers,
                                  message_id=row["message_id"], correlation_id=correlation)  # fmt: skip

    async def pending(self) -> int:
        """How many messages wait to be relayed."""
        return int(await self.db.fetch_val(self.sql["count"]) or 0)


def _relay_failed(exc: Exception) -> None:
    logger.warning("the outbox relay stopped a pass: %r; the rest goes out on the next one", exc)


class Inbox:
    """Which messages each consumer has handled; see the module."""

    def __init__(self, db: Database, *, table: str = "cello_inbox") -> None:
        if not table.replace("_", "").isalnum():
            raise ConfigurationError(f"table is a plain SQL name, not {table!r}")
        self.db = db
        self.table = table
        self._insert = _STATEMENTS["inbox"].format(table=table)

    async def setup(self) -> None:
        """Create the table when it is missing (one worker at a time on PostgreSQL)."""
        await create_tables(self.db, lock_key(f"inbox:{self.table}"), _INBOX_TABLE.format(table=self.table))

    async def first(self, consumer: str, message_id: str) -> bool:
        """Record ``message_id`` as handled by ``consumer`` (in the task's transaction): True the first time."""
        return bool(await self.db.execute(self._insert, consumer, message_id))
