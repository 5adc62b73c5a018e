"""Errors of the data layer."""

from __future__ import annotations

from ..http.exceptions import ServiceUnavailable

__all__ = ["DatabaseUnavailable", "where"]


class DatabaseUnavailable(ServiceUnavailable):
    """The database did not answer, or no pooled connection came free in time: unhandled, a 503 problem+json
    with ``Retry-After`` (the cause goes to the log, never to the client)."""


def where(url: str) -> str:
    """``host:port/database`` of a connection URL, without credentials or options: what errors and logs name."""
    rest = url.partition("://")[2]
    return rest.rpartition("@")[2].partition("?")[0]
