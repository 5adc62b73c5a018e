"""Typed events: what the event store writes and reads back.

An event is an instance of a ``msgspec.Struct`` or a dataclass; it is stored as JSON under a type name — the
class's own name unless registered under another (``EventTypes.register(OrderPlaced, name="order-placed")``). Read
back, an event of a registered type is an instance of its class again; one of a type the store does not know (an
event another service wrote, or a class since removed) is read as its JSON document, a dict, so nothing is lost.

**Upcasting.** When an event's shape changes, its class is registered with the next ``version`` and a function
per step turns the document an older version stored into the next one's (``@types.upcaster("OrderPlaced", 1)``:
version 1 to 2). Stored events keep the version they were written with (metadata ``event_version``, absent for
1); reading applies the steps in order, so events written years ago come back as today's class.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from ..http.exceptions import ConfigurationError

__all__ = ["EventTypes", "RecordedEvent"]

_encoder = msgspec.json.Encoder()


class RecordedEvent(msgspec.Struct, frozen=True):
    """An event as the store holds it: its stream and version there (from 1), its global ``position`` (increasing
    in commit order across all streams), its id, type name, the event itself (``data``: an instance of its class,
    or a dict when its type is not registered), its ``metadata`` (correlation and causation ids, user, …) and when
    it was recorded (UTC)."""

    stream_id: str
    version: int
    position: int
    event_id: str
    type: str
    data: Any
    metadata: dict[str, Any]
    recorded_at: dt.datetime


class EventTypes:
    """The event classes a store knows, by type name, both ways."""

    def __init__(self, classes: Iterable[type] = ()) -> None:
        self._by_name: dict[str, type] = {}
        self._names: dict[type, str] = {}
        self._versions: dict[str, int] = {}  # type name -> the version its class writes
        self._upcasters: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}
        for cls in classes:
            self.register(cls)

    def register(self, cls: type, *, name: str | None = None, version: int = 1) -> type:
        """Store ``cls``'s events under ``name`` (default: the class's name), as ``version`` of that type's shape;
        usable as a class decorator."""
        if not (isinstance(cls, type) and (issubclass(cls, msgspec.Struct) or dataclasses.is_dataclass(cls))):
            raise ConfigurationError(f"an event type is a msgspec.Struct or a dataclass, not {cls!r}")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ConfigurationError(f"an event type's version is a whole number >= 1, not {version!r}")
        name = name or cls.__name__
        known = self._by_name.get(name)
        if known is not None and known is not cls:
            raise ConfigurationError(f"event type name {name!r} is taken by {known.__qualname__}")
        self._by_name[name] = cls
        self._names[cls] = name
        self._versions[name] = version
        return cls

    def upcaster(self, name: str, from_version: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register ``function(document) -> document``, turning version ``from_version`` of type ``name`` into
        the next version."""

        def register(function: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[..., Any]:
            self._upcasters[(name, from_version)] = function
            return function

        return register

    def version_of(self, name: str) -> int:
        """The version of ``name``'s shape that its class writes now."""
        return self._versions.get(name, 1)

    def name_of(self, event: Any) -> str:
        """The type name of ``event``, registering its class on first sight."""
        cls = type(event)
        name = self._names.get(cls)
        return name if name is not None else self._names[self.register(cls)]

    def encode(self, event: Any) -> bytes:
        return _encoder.encode(event)

    def decode(self, name: str, data: bytes | str, version: int = 1) -> Any:
        """The event stored as ``version`` of ``name``: an instance of its class, brought up to the class's version
        by the registered upcasters, or the document itself for an unknown type."""
        cls = self._by_name.get(name)
        current = self._versions.get(name, 1)
        if version == current:
            return msgspec.json.decode(data) if cls is None else msgspec.json.decode(data, type=cls)
        document = msgspec.json.decode(data)
        while version < current:
            step = self._upcasters.get((name, version))
            if step is None:
                raise ConfigurationError(f"no upcaster takes {name!r} from version {version} to {version + 1}")
            document = step(document)
            version += 1
        return document if cls is None else msgspec.convert(document, type=cls)
