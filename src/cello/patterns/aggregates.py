"""Aggregate roots kept as event streams, with snapshots.

    class Order(Aggregate):
        placed: bool = False
        items: list[str] = []

        def apply(self, event):                     # how each event changes the state
            match event:
                case OrderPlaced():
                    self.placed = True
                case ItemAdded(sku=sku):
                    self.items.append(sku)

        def add(self, sku):                         # a command: checks, then records what happened
            if not self.placed:
                raise HTTPException(409, "The order is not placed.")
            self.record(ItemAdded(sku, 1))

    orders = Repository(store, Order, snapshot_every=50)
    order = Order.new("42")                         # version 0
    order.record(OrderPlaced("42", 250))
    await orders.save(order)                        # appended after version 0: ConcurrencyError if not
    order = await orders.load("42")                 # 404 when there is no such order

An aggregate is a ``msgspec.Struct``: its fields are its state — what a snapshot stores, typed — and ``id``,
``version`` (the last event's version in its stream) and ``pending`` (recorded, not yet saved) ride beside them.
Its stream is ``<prefix>-<id>`` (the prefix defaults to the class's name in lower case).

**Snapshots.** With ``snapshot_every=N``, saving an aggregate whose version crossed a multiple of N also writes
its state in the same transaction, and loading starts from the latest snapshot and applies only the events after
it. A class whose state changed shape raises its ``snapshot_version``: older snapshots are then ignored (the
aggregate is rebuilt from its events, and snapshotted again on its next save past the interval).
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

import msgspec

from ..http.exceptions import ConfigurationError, NotFound
from .events import RecordedEvent
from .store import EventStore

__all__ = ["Aggregate", "Repository"]

A = TypeVar("A", bound="Aggregate")


class Aggregate(msgspec.Struct, kw_only=True, dict=True):
    """An aggregate root; see the module. Subclasses declare their state as fields with defaults, define
    ``apply(event)``, and record events from their commands with ``record``."""

    snapshot_version: ClassVar[int] = 1

    @classmethod
    def new(cls: type[A], id: str, **state: Any) -> A:
        """A new aggregate, before its first event (version 0)."""
        aggregate = cls(**state)
        aggregate._begin(str(id), 0)
        return aggregate

    def _begin(self, id: str, version: int) -> None:
        self.id = id
        self.version = version
        self.pending: list[Any] = []

    def apply(self, event: Any) -> None:
        """Change the state as ``event`` says; called for recorded events and for every event loaded."""
        raise NotImplementedError(f"{type(self).__name__} does not say how events change it (apply)")

    def record(self, *events: Any) -> None:
        """Apply ``events`` and keep them for the next ``Repository.save``."""
        for event in events:
            self.apply(event)
            self.pending.append(event)


class Repository(Generic[A]):
    """Loads and saves aggregates of one class through an event store; see the module."""

    def __init__(self, store: EventStore, aggregate: type[A], *, prefix: str | None = None,
                 snapshot_every: int | None = None) -> None:  # fmt: skip
        if not (isinstance(aggregate, type) and issubclass(aggregate, Aggregate)):
            raise ConfigurationError(f"a Repository keeps Aggregate subclasses, not {aggregate!r}")
        if snapshot_every is not None and (isinstance(snapshot_every, bool) or snapshot_every < 1):
            raise ConfigurationError(f"snapshot_every is a number of events >= 1 or None, not {snapshot_every!r}")
        self.store = store
        self.aggregate = aggregate
        self.prefix = prefix or aggregate.__name__.lower()
        self.snapshot_every = snapshot_every

    def stream_id(self, id: str) -> str:
        return f"{self.prefix}-{id}"

    async def get(self, id: str) -> A | None:
        """The aggregate as its events (after its latest usable snapshot) make it; None when it has none."""
        stream_id = self.stream_id(id)
        aggregate, after = None, 0
        if self.snapshot_every is not None:
            aggregate, after = await self._snapshot(stream_id, str(id))
        events = await self.store.read_stream(stream_id, from_version=after + 1)
        if aggregate is None:
            if not events:
                return None
            aggregate = self.aggregate.new(str(id))
        for event in events:
            aggregate.apply(event.data)
        aggregate.version = events[-1].version if events else after
        return aggregate

    async def load(self, id: str) -> A:
        """The aggregate; ``NotFound`` (a 404) when it has no events."""
        aggregate = await self.get(id)
        if aggregate is None:
            raise NotFound(f"No {self.prefix} has this id.")
        return aggregate

    async def save(self, aggregate: A, **options: Any) -> list[RecordedEvent]:
        """Append the aggregate's pending events after its version (``ConcurrencyError`` when another save got
        there first), with a snapshot when its version crossed the interval; ``options`` go to ``append``
        (``event_ids``, ``metadata``, ``causation_id``, ``user``)."""
        if not aggregate.pending:
            return []
        stream_id = self.stream_id(aggregate.id)
        before = aggregate.version
        async with self.store.db.transaction(immediate=True):
            recorded = await self.store.append(stream_id, aggregate.pending, expected_version=before, **options)
            after = recorded[-1].version
            every = self.snapshot_every
            if every is not None and after // every > before // every:
                await self.store.save_snapshot(stream_id, after, self.aggregate.snapshot_version,
                                               msgspec.json.encode(aggregate).decode())  # fmt: skip
        aggregate.version = after
        aggregate.pending = []
        return recorded

    async def _snapshot(self, stream_id: str, id: str) -> tuple[A | None, int]:
        found = await self.store.load_snapshot(stream_id)
        if found is None or found[1] != self.aggregate.snapshot_version:
            return None, 0
        version, _, state = found
        aggregate = msgspec.json.decode(state, type=self.aggregate)
        aggregate._begin(id, version)
        return aggregate, version
