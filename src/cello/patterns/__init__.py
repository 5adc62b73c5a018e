"""Patterns on the app's own database: an event store with typed events and optimistic concurrency
(``cello.patterns.store``)."""

from .events import EventTypes, RecordedEvent
from .store import ANY, ConcurrencyError, EventStore

__all__ = ["ANY", "ConcurrencyError", "EventStore", "EventTypes", "RecordedEvent"]
