"""Patterns on the app's own database: an event store with typed events and optimistic concurrency
(``cello.patterns.store``), aggregate roots kept in it, with snapshots (``cello.patterns.aggregates``), and
projections fed by it, inline or caught up in the background (``cello.patterns.projections``)."""

from .aggregates import Aggregate, Repository
from .events import EventTypes, RecordedEvent
from .projections import Projection, Projector
from .store import ANY, ConcurrencyError, EventStore

__all__ = [
    "ANY",
    "Aggregate",
    "ConcurrencyError",
    "EventStore",
    "EventTypes",
    "Projection",
    "Projector",
    "RecordedEvent",
    "Repository",
]
