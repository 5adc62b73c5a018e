"""Projections: read models fed by the event store, inline or caught up in the background.

    summary = Projection("order_summary")

    @summary.on(OrderPlaced)
    async def placed(event: OrderPlaced, recorded: RecordedEvent, conn: Connection) -> None:
        await conn.execute("INSERT INTO order_summary (id, total) VALUES ($1, $2)", event.order_id, event.total)

    @summary.reset                                  # what a rebuild clears first
    async def clear(conn: Connection) -> None:
        await conn.execute("DELETE FROM order_summary")

    store.project(summary)                          # inline: in each append's own transaction
    Projector(store, summary).attach(app)           # or: caught up by every worker in the background

**Inline** projections run inside the append's transaction: the read model changes with the events or not at all,
and a request reads its own writes. **Asynchronous** ones are caught up by a ``Projector``: it reads the events
after the projection's checkpoint in batches and, per batch, updates the read model and moves the checkpoint in
one transaction — a crash anywhere rolls both back and the next run resumes from the checkpoint, so each event
takes effect once. Several workers may run the same projector: a batch takes the projection's lock (a PostgreSQL
advisory lock; SQLite's write lock), so they take turns. ``rebuild(name)`` clears the read model (its ``reset``
handler), moves the checkpoint back to 0 and catches up from the first event; ``cello projections rebuild``
does it from the command line.

A handler receives the event (an instance of its class, or the document of an unknown type), the
``RecordedEvent`` around it, and the ``Connection`` of the transaction it runs in: write the read model through it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..enterprise.database import Connection
from ..http.exceptions import ConfigurationError
from .events import RecordedEvent
from .store import EventStore, Poller, lock_key, take_turns

if TYPE_CHECKING:
    from ..app import App

__all__ = ["Projection", "Projector"]

logger = logging.getLogger("cello.patterns")

Handler = Callable[[Any, RecordedEvent, Connection], Awaitable[None]]


class Projection:
    """A read model's handlers, by event class or type name, and what clears it for a rebuild."""

    def __init__(self, name: str) -> None:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigurationError(f"a projection's name is letters, digits, '_' and '-', not {name!r}")
        self.name = name
        self.handlers: dict[type | str, list[Handler]] = {}
        self._reset: Callable[[Connection], Awaitable[None]] | None = None

    def on(self, *kinds: type | str) -> Callable[[Handler], Handler]:
        """Register a handler for events of these classes (or stored type names)."""
        if not kinds:
            raise ConfigurationError("on() needs the event classes (or type names) the handler takes")

        def register(handler: Handler) -> Handler:
            for kind in kinds:
                self.handlers.setdefault(kind, []).append(handler)
            return handler

        return register

    def reset(self, handler: Callable[[Connection], Awaitable[None]]) -> Callable[[Connection], Awaitable[None]]:
        """Register what clears the read model before a rebuild."""
        self._reset = handler
        return handler

    async def handle(self, recorded: RecordedEvent, conn: Connection) -> None:
        """Run the handlers of ``recorded``'s event, by its class, then by its type name."""
        for handler in [*self.handlers.get(type(recorded.data), ()), *self.handlers.get(recorded.type, ())]:
            await handler(recorded.data, recorded, conn)

    async def clear(self, conn: Connection) -> None:
        if self._reset is None:
            raise ConfigurationError(f"projection {self.name!r} has no reset handler: it cannot be rebuilt")
        await self._reset(conn)


class Projector:
    """Catches asynchronous projections up with the store; see the module."""

    def __init__(self, store: EventStore, *projections: Projection, batch: int = 500, interval: float = 0.5) -> None:
        names = [projection.name for projection in projections]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"projection names must differ: {names}")
        if batch < 1 or interval <= 0:
            raise ConfigurationError("batch is >= 1 and interval (seconds between polls) above 0")
        self.store = store
        self.projections = {projection.name: projection for projection in projections}
        self.batch = batch
        self.interval = interval
        self._poller = Poller(self.catch_up, interval, _catch_up_failed)

    def attach(self, app: App) -> Projector:
        """Catch up in the background in every worker, from startup to shutdown; ``cello projections`` finds it."""
        app.startup_hooks.append(self.start)
        app.drain_hooks.append(self.stop)
        app.state.setdefault("projectors", []).append(self)
        return self

    async def start(self) -> None:
        """Catch up in the background until ``stop()``: again at once while events were applied, else after
        ``interval`` seconds; a failing batch is logged and tried again on the next poll."""
        self._poller.start()

    async def stop(self) -> None:
        await self._poller.stop()

    async def catch_up(self, name: str | None = None) -> int:
        """Apply every event past the checkpoints (of one projection, or all); returns how many were applied."""
        total = 0
        for projection in self._chosen(name):
            while applied := await self._batch(projection):
                total += applied
        return total

    async def rebuild(self, name: str) -> int:
        """Clear the projection's read model, move its checkpoint back to 0, and catch up from the first event."""
        [projection] = self._chosen(name)
        async with self.store.db.transaction(immediate=True) as conn:
            await take_turns(self.store.db, conn, lock_key(f"projection:{projection.name}"))
            await projection.clear(conn)
            await self.store.save_checkpoint(projection.name, 0)
        return await self.catch_up(name)

    async def position(self, name: str) -> int:
        """The projection's checkpoint: the position of the last event it applied."""
        return await self.store.load_checkpoint(name)

    def _chosen(self, name: str | None) -> list[Projection]:
        if name is None:
            return list(self.projections.values())
        if name not in self.projections:
            raise ConfigurationError(f"no projection {name!r} here: {sorted(self.projections)}")
        return [self.projections[name]]

    async def _batch(self, projection: Projection) -> int:
        """One batch: the events after the checkpoint applied and the checkpoint moved, in one transaction."""
        async with self.store.db.transaction(immediate=True) as conn:
            await take_turns(self.store.db, conn, lock_key(f"projection:{projection.name}"))
            after = await self.store.load_checkpoint(projection.name)
            events = await self.store.read_all(after=after, limit=self.batch)
            for recorded in events:
                await projection.handle(recorded, conn)
            if events:
                await self.store.save_checkpoint(projection.name, events[-1].position)
        return len(events)


def _catch_up_failed(exc: Exception) -> None:
    logger.exception("a projection failed to catch up; it resumes from its checkpoint")
