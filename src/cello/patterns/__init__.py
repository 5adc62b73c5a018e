"""Patterns on the app's own database: an event store with typed events and optimistic concurrency
(``cello.patterns.store``), and aggregate roots kept in it, with snapshots (``cello.patterns.aggregates``)."""

from .aggregates import Aggregate, Repository
from .events import EventTypes, RecordedEvent
from .store import ANY, ConcurrencyError, EventStore

__all__ = ["ANY", "Aggregate", "ConcurrencyError", "EventStore", "EventTypes", "RecordedEvent", "Repository"]
