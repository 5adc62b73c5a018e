"""Patterns on the app's own database: an event store with typed events and optimistic concurrency
(``cello.patterns.store``), aggregate roots kept in it, with snapshots (``cello.patterns.aggregates``),
projections fed by it, inline or caught up in the background (``cello.patterns.projections``), command and query
buses (``cello.patterns.cqrs``), a transactional outbox to the brokers and an inbox (``cello.patterns.outbox``),
and orchestrated sagas that survive crashes (``cello.patterns.sagas``)."""

from .aggregates import Aggregate, Repository
from .cqrs import CommandBus, QueryBus, transactional
from .events import EventTypes, RecordedEvent
from .outbox import Inbox, Outbox
from .projections import Projection, Projector
from .sagas import Saga, SagaContext, Sagas, SagaState
from .store import ANY, ConcurrencyError, EventStore, StreamDeleted

__all__ = [
    "ANY",
    "Aggregate",
    "CommandBus",
    "ConcurrencyError",
    "EventStore",
    "EventTypes",
    "Inbox",
    "Outbox",
    "Projection",
    "Projector",
    "QueryBus",
    "RecordedEvent",
    "Repository",
    "Saga",
    "SagaContext",
    "SagaState",
    "Sagas",
    "StreamDeleted",
    "transactional",
]
