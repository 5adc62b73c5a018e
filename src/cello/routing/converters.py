"""Typed path-parameter converters: ``{id:int}``, ``{x:float}``, ``{u:uuid}``, ``{p:path}`` and plain ``{name}``.

A converter takes one path segment and returns the typed value or raises ValueError, in which case the route
does not match that segment and the router keeps looking (ending in 404 if nothing else matches).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from ..http.exceptions import ConfigurationError

Converter = Callable[[str], Any]

_FLOAT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?\Z")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


def _to_str(segment: str) -> str:
    return segment


def _to_int(segment: str) -> int:
    # NOTE: int() alone would accept "+1", " 1", "1_000" and non-ASCII digits; a path id should not.
    if not (segment.isascii() and segment.isdigit()):
        raise ValueError(segment)
    return int(segment)


def _to_float(segment: str) -> float:
    if not _FLOAT.match(segment):
        raise ValueError(segment)
    return float(segment)


def _to_uuid(segment: str) -> uuid.UUID:
    if not _UUID.match(segment):
        raise ValueError(segment)
    return uuid.UUID(segment)


CONVERTERS: dict[str, Converter] = {
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
    "uuid": _to_uuid,
}
# "path" is not a per-segment converter: the router gives it the rest of the path.
PATH = "path"


def register_converter(name: str, converter: Converter) -> None:
    """Add a converter usable as ``{param:name}`` in every route registered afterwards."""
    if not name.isidentifier() or name == PATH:
        raise ConfigurationError(f"invalid converter name {name!r}")
    CONVERTERS[name] = converter


def get_converter(name: str) -> Converter:
    try:
        return CONVERTERS[name]
    except KeyError:
        raise ConfigurationError(f"unknown path converter {name!r}; known: {sorted(CONVERTERS)}") from None
